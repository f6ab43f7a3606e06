"""Learnable factor parameters: injecting ``theta`` into a graph as data.

A *binding* names which factor parameter a key of ``theta`` replaces:
``{"odom": ("odom_se3", "measurement")}`` means ``theta["odom"][k]`` is the
measurement of the k-th ``odom_se3`` factor added to the WorldModel (insertion
order).  ``inject_params`` returns a new FactorGraph whose parameter arrays read
from ``theta``; since parameters are data, any solver (GN, LM, GD) runs on it
and gradients flow from the solution back to ``theta``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.world.graph import FactorGraph, graph_residual

Bindings = Mapping[str, tuple[str, str]]


def default_bindings(graph: FactorGraph) -> dict[str, tuple[str, str]]:
    """The seeds' bindings: "odom" -> odom_se3 measurements, "obs" -> the graph's
    observation points (``voxel_point_obs.point_world`` or
    ``pose_voxel_point.point_body``; a graph with both must bind explicitly)."""
    types = {b.f_type for b in graph.batches}
    out: dict[str, tuple[str, str]] = {}
    if "odom_se3" in types:
        out["odom"] = ("odom_se3", "measurement")
    obs = [t for t in (("voxel_point_obs", "point_world"), ("pose_voxel_point", "point_body")) if t[0] in types]
    if len(obs) > 1:
        raise ValueError("graph has both voxel_point_obs and pose_voxel_point factors: pass bindings")
    if obs:
        out["obs"] = obs[0]
    return out


def inject_params(graph: FactorGraph, theta: Mapping[str, jnp.ndarray], bindings: Bindings) -> FactorGraph:
    """Graph whose bound parameters are rows of ``theta`` (unused slots keep zeros)."""
    batches = []
    for b in graph.batches:
        params = dict(b.params)
        for key, (f_type, name) in bindings.items():
            if key not in theta or b.f_type != f_type:
                continue
            rows = jnp.asarray(theta[key])[jnp.maximum(b.rank, 0)]
            keep = (b.mask & (b.rank >= 0)).reshape((-1,) + (1,) * (rows.ndim - 1))
            params[name] = jnp.where(keep, rows, params[name])
        batches.append(dataclasses.replace(b, params=params))
    return dataclasses.replace(graph, batches=tuple(batches))


def theta_from_model(wm, bindings: Bindings | None = None) -> dict[str, jnp.ndarray]:
    """Current values of the bound parameters, one row per factor in insertion order."""
    graph = wm.fg
    bindings = default_bindings(graph) if bindings is None else bindings
    theta = {}
    for key, (f_type, name) in bindings.items():
        rows: dict[int, np.ndarray] = {}
        for b in graph.batches:
            if b.f_type != f_type:
                continue
            rank, mask, vals = np.asarray(b.rank), np.asarray(b.mask), np.asarray(b.params[name])
            rows.update({int(r): vals[i] for i, r in enumerate(rank) if mask[i]})
        if not rows:
            raise ValueError(f"no {f_type!r} factors with parameter {name!r} for theta[{key!r}]")
        n = max(rows) + 1
        shape = next(iter(rows.values())).shape
        theta[key] = jnp.asarray(np.stack([rows.get(r, np.zeros(shape)) for r in range(n)]))
    return theta


def build_param_residual(wm, bindings: Bindings | None = None):
    """``residual(x, theta)`` of the WorldModel's graph with ``theta`` injected.

    ``x`` is the packed state of ``wm.pack_state()`` (``wm.unpack_state`` reads it).
    """
    graph = wm.fg
    bindings = default_bindings(graph) if bindings is None else dict(bindings)

    def residual(x, theta):
        return graph_residual(inject_params(graph, theta, bindings), x)

    residual.graph = graph
    residual.bindings = bindings
    return residual
