"""Manifold metadata and retractions of the flat state.

Every variable's tangent has the dimension of its value; ``retract`` applies a
tangent step per block: ``x + d`` on Euclidean blocks, the right perturbation
``T exp(d)`` on SE(3) blocks (``geometry.se3.retract``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.geometry import se3
from dsg_jit_ros.world.graph import FactorGraph, StateLayout

RETRACTIONS = {
    "euclidean": lambda v, d: v + d,
    "se3": se3.retract,
}


def build_manifold_metadata(packed_state, fg: FactorGraph):
    """(block_slices, manifold_types): var id -> slice of x, var id -> manifold name."""
    _, index = packed_state
    layout = fg.layout
    bounds = [(o, o + t.dim * c, t) for t, c, o in zip(layout.types, layout.capacities, layout.offsets)]
    block_slices, manifold_types = {}, {}
    for vid, (a, b) in index.items():
        vtype = next(t for lo, hi, t in bounds if lo <= a < hi)
        block_slices[vid] = slice(a, b)
        manifold_types[vid] = vtype.manifold
    return block_slices, manifold_types


def retract_blocks(blocks, layout: StateLayout, deltas):
    """Retract per-type blocks ((cap, dim) arrays) by per-type tangent blocks."""
    out = []
    for t, v, d in zip(layout.types, blocks, deltas):
        if t.manifold == "euclidean":
            out.append(v + d)
        else:
            out.append(jax.vmap(RETRACTIONS[t.manifold])(v, d))
    return tuple(out)


def retract_state(layout: StateLayout, x: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """Flat state after the tangent step ``delta`` (same layout as ``x``)."""
    return layout.join(retract_blocks(layout.split(x), layout, layout.split(delta)))


def retract_by_metadata(x, delta, block_slices, manifold_types):
    """Retraction of a flat state described by ``build_manifold_metadata`` output."""
    out = x + delta
    se3_ids = [v for v, m in manifold_types.items() if m == "se3"]
    if se3_ids:
        idx = np.stack([np.arange(block_slices[v].start, block_slices[v].stop) for v in se3_ids])
        poses = jax.vmap(se3.retract)(x[idx], delta[idx])
        out = out.at[idx].set(poses)
    return out
