"""Solving a graph's used prefix at a smaller compiled capacity.

A fixed-capacity graph (the online window) is sized for its largest map, and most
of its point slots and observation rows are unused most of the time (mit-csail:
the last used voxel slot is ~800 of 2,048, ~2,700 of 6,144 observation rows are
used).  Linearisation, the cost and the point blocks of the Schur system run over
every row and slot, used or not.  ``PrefixPlan`` cuts the large point types and the
factor batches on them to a fraction of their capacity (static shapes: a second
program, compiled with the first); ``prefix_fits`` says at run time whether every
used slot and row lies inside the cut, and the solver then runs the small program
(``solvers.LMConfig.prefix_fraction``).  The slots and rows past the cut are
unused, so the small program solves the same problem: the same state, up to the
rounding of sums over fewer zero terms.  Both programs are compiled together, so a
cold start-up compiles about twice as long (planar node: 9.8 -> 20.4 s cold, 6.2 ->
7.7 s with a warm compile cache): the node's parameter ``solver.prefix_fraction``
is 0 (off) by default.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from dsg_jit_ros.world.graph import FactorGraph, StateLayout

MIN_CUT = 256  # capacities below this are left whole (the gain would not pay for the second program)


@dataclasses.dataclass(frozen=True)
class PrefixPlan:
    """New capacity of each layout type and of each factor batch (static)."""

    type_caps: tuple[int, ...]
    batch_caps: tuple[int, ...]


def prefix_plan(graph: FactorGraph, fraction: float) -> PrefixPlan | None:
    """The cut of ``graph``: every Euclidean type (points: what a Schur solve
    eliminates; poses, whose reduced system the solve factorises, stay whole) of at
    least ``MIN_CUT`` slots to ``ceil(fraction * capacity)``, and every batch with an
    argument of a cut type likewise.  None when nothing would be cut."""
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


def prefix_fits(graph: FactorGraph, plan: PrefixPlan) -> jnp.ndarray:
    """True (traced) when no used slot or row lies past the cut and every used row's
    arguments lie inside it."""
    ok = jnp.array(True)
    for m, n in zip(graph.var_masks, plan.type_caps):
        ok = ok & ~jnp.any(m[n:])
    for b, n in zip(graph.batches, plan.batch_caps):
        ok = ok & ~jnp.any(b.mask[n:])
        limits = jnp.array([plan.type_caps[p] for p in b.arg_positions], dtype=b.slots.dtype)
        ok = ok & jnp.all(~b.mask[:n, None] | (b.slots[:n] < limits))
    return ok


def graph_prefix(graph: FactorGraph, plan: PrefixPlan) -> FactorGraph:
    """``graph`` cut to ``plan``'s capacities.  Unused rows inside the cut may name
    slots past it (stale): they are clamped into it (those rows contribute zeros)."""
    batches = []
    for b, n in zip(graph.batches, plan.batch_caps):
        if n < b.capacity:
            b = jax.tree_util.tree_map(lambda v, n=n: v[:n], b)
        limits = jnp.array([plan.type_caps[p] - 1 for p in b.arg_positions], dtype=b.slots.dtype)
        batches.append(dataclasses.replace(b, slots=jnp.minimum(b.slots, limits)))
    return FactorGraph(
        batches=tuple(batches),
        var_masks=tuple(m[:n] for m, n in zip(graph.var_masks, plan.type_caps)),
        dof_masks=tuple(m[:n] for m, n in zip(graph.dof_masks, plan.type_caps)),
        layout=StateLayout(graph.layout.types, plan.type_caps),
    )


def state_prefix(layout: StateLayout, plan: PrefixPlan, x: jnp.ndarray) -> jnp.ndarray:
    """The flat state of the cut graph: each type's first slots."""
    return jnp.concatenate([blk[:n].reshape(-1) for blk, n in zip(layout.split(x), plan.type_caps)])


def state_restore(layout: StateLayout, plan: PrefixPlan, x_small: jnp.ndarray, x_full: jnp.ndarray) -> jnp.ndarray:
    """``x_full`` with each type's first slots replaced by the cut graph's ``x_small``."""
    small = StateLayout(layout.types, plan.type_caps).split(x_small)
    return jnp.concatenate([jnp.concatenate([s, blk[n:]]).reshape(-1)
                            for s, blk, n in zip(small, layout.split(x_full), plan.type_caps)])
