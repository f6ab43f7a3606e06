"""The pipeline's map as a ``MapState`` (``io.map_file``) and back.

``capture``: every keyframe the pipeline holds, in time order: the global graph's
nodes (keyframes that left the window, at their graph poses) and the window's
keyframes (at their current estimates), each with its voxel observations (the
submaps of retired nodes, folded into one voxel map, are written as the
observations of the newest retired node), and the graph's loop edges (with their
square-root informations) between those keyframes.
``restore``: a fresh pipeline takes a saved map as its frozen map (and its graph's
nodes and loop edges, so loops can close against it and a later solve keeps the
loops already found); in localization mode it tracks against the map without adding
to it.
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.io.map_file import MapState
from dsg_jit_ros.mapping.association import CellObservations
from dsg_jit_ros.mapping.voxel_map import voxel_centres

_EMPTY_CELLS = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3, 3)))


def capture(pipeline) -> MapState:
    """The map of ``pipeline`` (a ``SlamPipeline``) as a ``MapState``.  Keyframes queued for
    the loop-closure thread are flushed into the graph first."""
    pipeline.flush_loops()
    graph, window = pipeline.graph, pipeline.window
    with pipeline.loop_lock:
        poses = graph.all_poses()
        records = [(n.stamp, p, n.level, n.cells, p @ n.key_offset) for n, p in zip(graph.nodes, poses)]
        loops = [(e.older, e.newer, e.t_older_newer, e.sqrt_info) for e in graph.loops]
        if graph.first and len(graph.retired_map):  # retired nodes' submaps, held by the newest retired one
            i = graph.first - 1
            records[i] = (graph.nodes[i].stamp, poses[i], graph.nodes[i].level,
                          cells_in_frame(graph.retired_map, poses[i]), poses[i])
    if window.grow_map:  # localization does not extend the map it was given
        records += [(k.stamp, k.t_map_body, k.level, k.cells, k.t_key) for k in window.keyframe_records()]
    cells = [r[3] for r in records]
    sizes = [len(c) if c is not None else 0 for c in cells]
    parts = [(c.keys, c.count, c.mean_body, c.scatter_body) if c is not None else _EMPTY_CELLS for c in cells]
    stack = lambda i, empty: np.concatenate([p[i] for p in parts]) if parts else empty  # noqa: E731
    return MapState(
        voxel_size=pipeline.cfg.window.voxel.size, planar=bool(pipeline.planar),
        stamps=np.array([r[0] for r in records], dtype=np.float64),
        poses=np.array([r[1] for r in records]).reshape(-1, 4, 4),
        levels=np.array([r[2] for r in records]).reshape(-1, 4, 4),
        key_poses=np.array([r[4] for r in records]).reshape(-1, 4, 4),
        cell_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        keys=stack(0, _EMPTY_CELLS[0]).astype(np.int64), count=stack(1, _EMPTY_CELLS[1]),
        mean_body=stack(2, _EMPTY_CELLS[2]), scatter_body=stack(3, _EMPTY_CELLS[3]),
        loop_nodes=np.array([e[:2] for e in loops], dtype=np.int64).reshape(-1, 2),
        loop_poses=np.array([e[2] for e in loops]).reshape(-1, 4, 4),
        loop_sqrt_info=np.array([e[3] for e in loops]).reshape(-1, 6, 6))


def cells_in_frame(vmap, t_map_body: np.ndarray) -> CellObservations:
    """A ``VoxelMap``'s statistics as observations made from ``t_map_body`` (4x4): placed
    back at that pose they give the same statistics (up to rounding)."""
    st = vmap.all_stats()
    n = st.count
    mu = st.mean_offset()
    mean_map = voxel_centres(vmap.keys, vmap.voxel_size) + mu
    scatter_map = st.second - n[:, None, None] * mu[:, :, None] * mu[:, None, :]
    rot = t_map_body[:3, :3]
    mean_body = (mean_map - t_map_body[:3, 3]) @ rot
    scatter_body = np.einsum("ji,njk,kl->nil", rot, scatter_map, rot)
    return CellObservations(vmap.keys.copy(), n.copy(), mean_body, scatter_body, 0, 0, 0)


def cells_of(state: MapState, i: int) -> CellObservations:
    """Keyframe ``i``'s observations."""
    r = state.rows(i)
    return CellObservations(state.keys[r], state.count[r], state.mean_body[r], state.scatter_body[r], 0, 0, 0)


def restore(pipeline, state: MapState) -> list:
    """Load ``state`` into ``pipeline`` (before its first keyframe): the frozen map and the
    global graph's nodes and loop edges (those onto nodes the graph still holds); returns the keyframes' (cells, T_map_body, keying pose).
    ValueError if the map does not fit the configuration."""
    if pipeline.keyframes:
        raise ValueError("a map can only be loaded before the first keyframe")
    voxel = pipeline.cfg.window.voxel.size
    if abs(state.voxel_size - voxel) > 1e-9 * voxel:
        raise ValueError(f"the map has {state.voxel_size} m voxels, the node is configured for {voxel} m")
    if pipeline.planar is not None and pipeline.planar != state.planar:
        raise ValueError(f"the map is {'planar' if state.planar else '3D'}, the node's planar mode says otherwise")
    pipeline.set_planar(state.planar)
    frozen = []
    for i in range(len(state)):
        cells = cells_of(state, i)
        pipeline.graph.add(float(state.stamps[i]), state.poses[i], state.levels[i], cells, state.key_poses[i])
        frozen.append((cells, state.poses[i], state.key_poses[i]))
    graph = pipeline.graph
    for (older, newer), t, w in zip(state.loop_nodes.tolist(), state.loop_poses, state.loop_sqrt_info):
        if older >= graph.first:
            graph.add_loop(older, newer, t, w)
    pipeline.window.local.rebuild(frozen)
    return frozen
