"""Which host sparse Cholesky the ``sparse`` linear solver runs.

``cholmod``: CHOLMOD's supernodal factorisation through CVXOPT
(``cvxopt.cholmod``), symbolic analysis once per sparsity pattern, numeric
refactorisation per LM iteration.  CVXOPT is GPL-3.0 (and CHOLMOD's supernodal
module GPL-2.0+), so it is not a dependency of this Apache-2.0 package: it is used
when it is installed (``pip install cvxopt==1.3.3``).

``cholespy``: cholespy (BSD-3-Clause, a dependency): ordering, analysis and
factorisation from scratch on every solve.

The choice is ``LMConfig.sparse_backend`` (``auto``, ``cholmod`` or
``cholespy``); ``auto`` defers to the environment variable
``DSG_JIT_ROS_SPARSE_BACKEND`` (same values) and, where that is unset or
``auto``, takes ``cholmod`` when ``cvxopt`` imports, else ``cholespy``.  A backend
that is asked for by name and does not import is an error
(``SparseBackendUnavailable``), never a silent fallback.  The choice is made
when the solve is traced: a compiled solve keeps the backend it was traced with.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading

log = logging.getLogger(__name__)

BACKENDS = ("cholmod", "cholespy")
CHOICES = ("auto",) + BACKENDS
ENV_VAR = "DSG_JIT_ROS_SPARSE_BACKEND"

#: backend -> (modules it imports, in order; what to install, its licence)
_REQUIRES = {
    "cholmod": (("cvxopt", "cvxopt.cholmod"), "cvxopt (pip install cvxopt==1.3.3; GPL-3.0, not installed with this package)"),
    "cholespy": (("cholespy",), "cholespy (pip install cholespy==2.2.0; BSD-3-Clause, in requirements.txt)"),
}


class SparseBackendUnavailable(ImportError):
    """A sparse Cholesky backend that was asked for cannot be imported (the message says what to install)."""


def load(backend: str):
    """The module of ``backend`` (``cvxopt.cholmod`` or ``cholespy``); SparseBackendUnavailable if it does not import."""
    if backend not in BACKENDS:
        raise ValueError(f"sparse backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    modules, install = _REQUIRES[backend]
    module = None
    try:
        for name in modules:
            module = importlib.import_module(name)
    except ImportError as err:
        raise SparseBackendUnavailable(
            f"sparse Cholesky backend '{backend}' is not available: {err}; it needs {install}") from err
    return module


def available(backend: str) -> bool:
    """Whether ``backend`` imports."""
    try:
        load(backend)
    except SparseBackendUnavailable:
        return False
    return True


def requested(choice: str = "auto") -> tuple[str, str]:
    """(choice, where it came from): ``choice`` unless it is ``auto``, then the
    environment variable's value (``auto`` when unset or empty)."""
    if choice not in CHOICES:
        raise ValueError(f"sparse_backend must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice, "sparse_backend argument"
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "auto", "default"
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: must be one of {', '.join(CHOICES)}")
    return value, f"{ENV_VAR}"


_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def resolve(choice: str = "auto") -> str:
    """The backend the sparse solver runs for ``choice`` (see the module doc).

    Raises SparseBackendUnavailable when the backend named by ``choice`` or by the
    environment variable does not import, or when ``auto`` finds neither."""
    wanted, source = requested(choice)
    if wanted == "auto":
        backend = next((b for b in BACKENDS if available(b)), None)
        if backend is None:
            raise SparseBackendUnavailable(
                "no sparse Cholesky backend imports: install cholespy (pip install cholespy==2.2.0) "
                "or cvxopt (pip install cvxopt==1.3.3, GPL-3.0)")
        source = "auto: " + ("cvxopt imports" if backend == "cholmod" else "cvxopt does not import")
    else:
        try:
            load(wanted)
        except SparseBackendUnavailable as err:
            raise SparseBackendUnavailable(f"{err} (asked for by {source}; "
                                           f"'auto' takes whichever is installed)") from err
        backend = wanted
    with _logged_lock:
        first = (backend, source) not in _logged
        _logged.add((backend, source))
    if first:
        log.info("sparse Cholesky backend: %s (%s)", describe(backend), source)
    return backend


def describe(backend: str) -> str:
    """One line naming the backend and what it does per solve."""
    return {
        "cholmod": "cholmod (CHOLMOD through CVXOPT, analysed once per sparsity pattern)",
        "cholespy": "cholespy (factorised from scratch on every solve)",
    }[backend]
