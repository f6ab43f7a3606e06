"""The window's side of loop closure: what leaves it goes to the global graph, what the
graph finds comes back as a re-based window and map.

``GlobalMapping`` (one per map, beside a ``SlidingWindow``) hands the keyframes that
left the window to the ``LoopWorker`` (global graph, loop search, global solve; in a
thread of its own or inline) and applies a finished ``GraphUpdate``: the window and the
frozen map are re-based, keyframes frozen after the solve's snapshot move rigidly with
the newest node it covered.

Tracking horizon (loop closure on, mapping mode): the window tracks against the
keyframes of the last ``loop.min_interval`` seconds or ``loop.horizon_travel`` metres
of travel only (older ones are taken out of its frozen map one by one, exactly as they
went in), so a revisit after a loop is found by loop closure and spread over the loop,
not snapped onto the old map by the window; a robot wandering in one room for minutes
keeps tracking the room (its drift over a few metres is small: nothing to spread).
The whole map is kept apart (``full_map``) for outputs.  Stamps in seconds, poses
``T_map_body``, travel in metres along the keyframes that left the window.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from dsg_jit_ros.mapping.association import recell
from dsg_jit_ros.mapping.global_graph import GlobalGraph
from dsg_jit_ros.mapping.local_map import LocalMap
from dsg_jit_ros.mapping.loop_closure import LoopCloser
from dsg_jit_ros.mapping.loop_worker import GraphUpdate, LoopWorker

class GlobalMapping:
    """Global graph + loop closure for one window (see the module doc)."""

    def __init__(self, cfg, window, planar: bool, background: bool, ready=None):
        """``cfg``: the ``PipelineConfig``; ``window``: the ``SlidingWindow`` to re-base;
        ``ready``: a ``threading.Event`` set once the graph's solve is compiled (warm-up)."""
        w = cfg.window
        self.window = window
        self.worker = LoopWorker(GlobalGraph(cfg.loop, planar=planar, voxel_size=w.voxel.size),
                                 LoopCloser(cfg.loop, w.voxel.size, w.surface, w.registration),
                                 w.voxel.size, w.voxel.max_range, background=background, ready=ready)
        self._generation = 0  # map-frame generation: loop updates applied
        self._unplaced: list = []  # keyframes sent to the graph that no applied update covers yet
        self._unplaced_base = 0  # node index of _unplaced[0]
        self.loop_edges: tuple[np.ndarray, tuple[tuple[int, int], ...]] = (np.zeros((0, 3)), ())  # after an update
        self.loops_closed = 0  # accepted loops applied to the map
        self.horizon = cfg.loop.min_interval if cfg.loop.enabled and cfg.mode == "mapping" else None
        self.full_map = LocalMap(w.voxel.size, w.surface) if self.horizon is not None else None
        self._recent: deque = deque()  # (stamp, cells, T_map_body, keying pose, travel) as in the tracked map
        self._travel = 0.0  # m: travel along the keyframes that left the window, up to the newest
        self._last_left: np.ndarray | None = None  # T_map_body of the newest keyframe that left
        self._horizon_travel = cfg.loop.horizon_travel
        self._stamp: float | None = None  # the newest keyframe's stamp (s)
        self._voxel = w.voxel.size

    @property
    def graph(self) -> GlobalGraph:
        return self.worker.graph

    def loaded(self, frozen: list, stamps: np.ndarray) -> None:
        """A loaded map's keyframes ((cells, T_map_body, keying pose), their stamps) are the
        graph's first nodes and the frozen map."""
        self.worker.loaded = self._unplaced_base = len(frozen)
        if self.full_map is not None:
            self.full_map.rebuild(frozen)
            self._recent = self._tracked(np.asarray(stamps, dtype=np.float64), frozen, -np.inf, np.inf)

    def counts(self) -> dict[str, float]:
        """Global graph and loop-closure counters (for ``~/status``)."""
        w = self.worker
        return {"graph_nodes": len(w.graph), "loop_closures": len(w.graph.loops), "loop_attempts": w.attempts,
                "loops_rejected": w.attempts - w.reasons["accepted"] + w.graph.rejected_loops,
                "loops_in_place": w.in_place, "global_solves": w.solves, "global_solve_ms": w.last_solve_ms}

    def after_keyframe(self, stamp: float) -> None:
        """Keyframes that left the window go to the global graph (and, with a tracking
        horizon, into the whole map and the tracked list).  ``stamp``: the newest
        keyframe's.  The rest of the upkeep is ``maintain`` (a node runs it after
        publishing, off the keyframe's latency)."""
        window = self.window
        leaving, window.leaving = window.leaving, []
        self._unplaced += leaving
        self.worker.submit(leaving, self._generation)
        if self.horizon is not None:
            for k in leaving:  # the window froze them (cells, pose) into its tracked map
                self.full_map.freeze(k.cells, k.t_map_body)
                if self._last_left is not None:
                    self._travel += float(np.linalg.norm(k.t_map_body[:3, 3] - self._last_left[:3, 3]))
                self._last_left = k.t_map_body
                self._recent.append((k.stamp, k.cells, k.t_map_body, k.t_key, self._travel))
        self._stamp = stamp

    def maintain(self) -> tuple[str, ...]:
        """The map's upkeep after a keyframe (``after_keyframe``), or whenever a global
        solve may have finished (a robot standing still makes no keyframes): apply it,
        trim the tracked map to the horizon of the newest keyframe.  Returns notices."""
        stamp = self._stamp
        if stamp is None:
            return ()
        update = self.worker.poll()
        notices = self._apply(update, stamp) if update is not None else ()
        # a future update covers at least the nodes in the graph now: those need no rigid move
        done = len(self.graph.nodes)
        if done > self._unplaced_base:
            del self._unplaced[:done - self._unplaced_base]
            self._unplaced_base = done
        self._retrack(stamp)
        return notices

    def flush(self) -> tuple[str, ...]:
        """Wait for the loop worker and apply what it finished; returns the notices."""
        notices = self.maintain()
        while (update := self.worker.flush()) is not None:
            notices += self._apply(update)
        return notices

    def map_centres(self) -> np.ndarray:
        """(M, 3) the whole map's points (m): the window's voxels, then every frozen
        keyframe's (beyond the tracking horizon too)."""
        return self.window.voxel_centres(self.full_map.frozen if self.full_map is not None else None)

    def _retrack(self, stamp: float) -> None:
        """Keyframes beyond the horizon (older than it in time and in travel) leave the
        tracked map (``window.forget_frozen``), oldest first."""
        if self.horizon is None:
            return
        cut, travel_cut, old = stamp - self.horizon, self._travel - self._horizon_travel, []
        while self._recent and self._recent[0][0] < cut and self._recent[0][4] <= travel_cut:
            old.append(self._recent.popleft()[1:3])
        if old:
            self.window.forget_frozen(old)

    def _tracked(self, stamps: np.ndarray, placed: list, cut: float, span: float) -> deque:
        """(stamp, cells keyed as the map keys them, T_map_body, keying pose, travel) of the
        ``placed`` keyframes ((cells, T_map_body, keying pose), oldest first) stamped ``cut``
        or later or less than ``span`` metres of travel before the newest; sets the travel up to it."""
        xyz = np.array([p[:3, 3] for _, p, _ in placed]).reshape(-1, 3)
        travel = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xyz, axis=0), axis=1))])[:len(placed)]
        if len(placed):
            self._travel, self._last_left = float(travel[-1]), placed[-1][1]
        return deque((t, recell(c, k, self._voxel), p, k, d)
                     for t, (c, p, k), d in zip(stamps.tolist(), placed, travel.tolist())
                     if (t >= cut or d > self._travel - span) and c is not None)

    def _apply(self, update: GraphUpdate, stamp: float | None = None) -> tuple[str, ...]:
        """Re-base the window and the frozen map on a global solve.  With a tracking horizon
        the window tracks the keyframes within it of ``stamp`` (s; default: all)."""
        start = time.perf_counter()
        c = update.correction
        extra = self._unplaced[update.nodes - self._unplaced_base:]
        placed = update.placed + [(k.cells, c @ k.t_map_body, c @ k.t_key) for k in extra]
        stamps = np.concatenate([update.stamps, [k.stamp for k in extra]])
        trajectory = update.trajectory + [(k.stamp, c @ k.t_map_body @ k.level) for k in extra]
        if self.horizon is not None:
            self.full_map.rebuild(placed, update.retired_map)
            cut = -np.inf if stamp is None else stamp - self.horizon
            self._recent = self._tracked(stamps, placed, cut, self._horizon_travel)
            self.window.rebase(c, [e[1:4] for e in self._recent], trajectory, rekey=update.rekey)
        else:
            self.window.rebase(c, placed, trajectory, rekey=update.rekey, base=update.retired_map)
        self._unplaced, self._unplaced_base = list(extra), update.nodes
        self._generation = update.generation
        self.loop_edges = (update.positions, update.loops)
        self.loops_closed += len(update.accepted)
        ms = 1e3 * (time.perf_counter() - start)
        moved = float(np.linalg.norm(c[:3, 3]))
        nodes = self.graph.nodes
        return tuple(f"loop closed: keyframe at {nodes[a.newer].stamp:.2f} s sees the one at "
                     f"{nodes[a.older].stamp:.2f} s (overlap {a.overlap:.0%}); graph solved in "
                     f"{update.solve_ms:.0f} ms, map re-based in {ms:.0f} ms, the window moved {moved:.3f} m"
                     for a in update.accepted)
