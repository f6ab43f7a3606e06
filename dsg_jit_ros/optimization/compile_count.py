"""Counting compilations of the package's jitted entry points.

``counted_jit(fn, name)`` is ``jax.jit`` plus a counter that rises each time JAX
traces ``fn`` — which happens exactly when the jit cache misses and a new
executable is compiled.  Tests and the online node assert "no recompile" on it.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Callable

import jax

_COUNTS: Counter = Counter()


def counted_jit(fn: Callable, name: str | None = None, **jit_kwargs) -> Callable:
    """``jax.jit(fn)`` that counts its traces under ``name`` (default: fn's name)."""
    key = name or fn.__name__

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        _COUNTS[key] += 1
        return fn(*args, **kwargs)

    return jax.jit(traced, **jit_kwargs)


def compile_count(name: str | None = None) -> int:
    """Compilations so far of entry ``name``, or of all counted entries."""
    return _COUNTS[name] if name is not None else sum(_COUNTS.values())


def compile_counts() -> dict[str, int]:
    """A snapshot of the compilations so far per entry name."""
    return dict(_COUNTS)
