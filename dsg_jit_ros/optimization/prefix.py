"""Solving a graph's used prefix at a smaller compiled capacity.

A fixed-capacity graph (the online window) is sized for its largest map, and most
of its point slots and observation rows are unused most of the time (mit-csail:
~530 of 2,048 voxel slots and ~2,700 of 6,144 observation rows in use at the median
keyframe).  Linearisation, the cost and the point blocks of the Schur system run
over every row and slot, used or not.  ``PrefixPlan`` cuts the large point types and
the factor batches on them to a fraction of their capacity; the cut graph is an
ordinary graph of smaller static shapes, so the jitted solve compiles a second,
smaller executable for it.  ``prefix_fits`` says whether every used slot and row lies
inside the cut (rows are taken lowest free first, ``world.slots``, so they stay
packed); the slots and rows past the cut are then unused and the cut graph is the
same problem: the same solution, up to the rounding of sums over fewer zero terms.

Everything here works on the host graph (NumPy): the cut is a few slices before the
upload, not a branch inside the compiled program (a branch would compile both
programs at once; the window compiles the small one after the first, a node in the
background once active, ``mapping.warm_up``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from dsg_jit_ros.optimization.solvers import LMConfig, LMResult, solve
from dsg_jit_ros.world.graph import FactorGraph, StateLayout

MIN_CUT = 256  # capacities below this are left whole (the gain would not pay for the second program)


@dataclasses.dataclass(frozen=True)
class PrefixPlan:
    """New capacity of each layout type and of each factor batch (static)."""

    type_caps: tuple[int, ...]
    batch_caps: tuple[int, ...]


def check_fraction(fraction: float) -> None:
    """ValueError unless ``fraction`` is in [0, 1) (0: no cut)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prefix_fraction must be in [0, 1), got {fraction}")


def prefix_plan(graph: FactorGraph, fraction: float) -> PrefixPlan | None:
    """The cut of ``graph``: every Euclidean type (points: what a Schur solve
    eliminates; poses, whose reduced system the solve factorises, stay whole) of at
    least ``MIN_CUT`` slots to ``ceil(fraction * capacity)``, and every batch with an
    argument of a cut type likewise.  None when nothing would be cut (``fraction`` 0
    included)."""
    check_fraction(fraction)
    if not fraction:
        return None
    layout = graph.layout
    type_caps = tuple(
        math.ceil(fraction * c) if t.manifold == "euclidean" and c >= MIN_CUT else c
        for t, c in zip(layout.types, layout.capacities))
    cut = {p for p, (c, n) in enumerate(zip(layout.capacities, type_caps)) if n < c}
    if not cut:
        return None
    batch_caps = tuple(
        math.ceil(fraction * b.capacity) if cut.intersection(b.arg_positions) else b.capacity
        for b in graph.batches)
    return PrefixPlan(type_caps, batch_caps)


def prefix_fits(graph: FactorGraph, plan: PrefixPlan) -> bool:
    """True when no used slot or row of the host graph lies past the cut and every used
    row's arguments lie inside it."""
    for m, n in zip(graph.var_masks, plan.type_caps):
        if m[n:].any():
            return False
    for b, n in zip(graph.batches, plan.batch_caps):
        if b.mask[n:].any():
            return False
        limits = np.array([plan.type_caps[p] for p in b.arg_positions], dtype=b.slots.dtype)
        if (b.mask[:n, None] & (b.slots[:n] >= limits)).any():
            return False
    return True


def graph_prefix(graph: FactorGraph, plan: PrefixPlan) -> FactorGraph:
    """The host graph cut to ``plan``'s capacities (views where nothing changes).
    Unused rows inside the cut may name slots past it (stale): they are clamped into it
    (those rows contribute zeros)."""
    batches = []
    for b, n in zip(graph.batches, plan.batch_caps):
        if n < b.capacity:
            b = jax.tree_util.tree_map(lambda v, n=n: v[:n], b)  # NumPy leaves stay NumPy
        limits = np.array([plan.type_caps[p] - 1 for p in b.arg_positions], dtype=b.slots.dtype)
        batches.append(dataclasses.replace(b, slots=np.minimum(b.slots, limits)))
    return FactorGraph(
        batches=tuple(batches),
        var_masks=tuple(m[:n] for m, n in zip(graph.var_masks, plan.type_caps)),
        dof_masks=tuple(m[:n] for m, n in zip(graph.dof_masks, plan.type_caps)),
        layout=StateLayout(graph.layout.types, plan.type_caps),
    )


def state_prefix(layout: StateLayout, plan: PrefixPlan, x: np.ndarray) -> np.ndarray:
    """The flat state of the cut graph: each type's first slots."""
    return np.concatenate([blk[:n].reshape(-1) for blk, n in zip(layout.split(x), plan.type_caps)])


def state_restore(layout: StateLayout, plan: PrefixPlan, x_small: np.ndarray, x_full: np.ndarray) -> np.ndarray:
    """``x_full`` with each type's first slots replaced by the cut graph's ``x_small``."""
    small = StateLayout(layout.types, plan.type_caps).split(x_small)
    return np.concatenate([np.concatenate([s, blk[n:]]).reshape(-1)
                           for s, blk, n in zip(small, layout.split(x_full), plan.type_caps)])


def solve_prefix(graph: FactorGraph, x0: np.ndarray, plan: PrefixPlan, cfg: LMConfig = LMConfig(),
                 max_iters=None) -> LMResult:
    """``solvers.solve`` of ``graph`` cut to ``plan``, its state put back in the whole
    one (``x`` a NumPy array of ``graph.state_size``).  The caller checks ``prefix_fits``
    first: past the cut the result is that of another problem (any graph of the right
    capacities compiles the program, e.g. in a warm-up)."""
    x0 = np.asarray(x0, dtype=np.float64)
    result = solve(graph_prefix(graph, plan), state_prefix(graph.layout, plan, x0), cfg=cfg, max_iters=max_iters)
    return dataclasses.replace(result, x=state_restore(graph.layout, plan, np.asarray(result.x), x0))
