"""The sliding window: keyframe poses + voxels in a fixed-capacity WorldModel.

A keyframe brings its odometry pose ``T_odom_body`` and its cloud (body frame).
Its pose is predicted from the odometry increment, registered to the map
(``mapping.registration``), and its cloud cut into the map's voxels under that
pose (``mapping.association``).  It becomes a ``pose_se3`` variable linked to the
previous keyframe by an ``odom_se3`` factor and to each voxel it sees by a
``pose_voxel_surface`` factor: the centroid of its points in the cell, placed in
the map, against the voxel's point, whitened by the voxel's surface information
(``mapping.voxel_map``: stiff across the surface, soft along it), with a Cauchy
kernel.  Every observation of a voxel shares its information shape, which keeps
the point Schur solve exact (``optimization.point_schur``); a voxel's shape is
recomputed from its statistics (``mapping.local_map``: frozen points plus the
window's, under the current poses) whenever a keyframe observes it.

Keyframes leaving the window are *frozen*, not marginalised: their last estimate
is kept for the trajectory, their points are added to the voxel map's statistics
at that pose (the frozen map), and the new oldest keyframe is anchored by a
prior at its estimate.
An active voxel whose statistics include frozen points gets a prior toward the
frozen mean, weighted as ``frozen_weight`` observations of its surface: the
window stays registered to the map it built without locking the voxels in place.
Freezing keeps every batch's shape, so the jitted solver compiles once (twice
with ``cfg.prefix_fraction``: the same solve on the packed used part of the
capacities, compiled after the warm-up, ``prefix_warm_up``, and run whenever the
used slots fit in it).

Planar mode (2D lasers, ground robots): each odometry pose is split into its
planar part (x, y, yaw) and a levelling ``L`` (z, roll, pitch); the window
estimates planar poses (z, roll, pitch components fixed in the solver) of the
levelled cloud ``L p``, and reports ``T_map_body = P L``: z, roll and pitch stay
exactly the odometry's.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dsg_jit_ros.mapping.active_voxels import ActiveVoxels
from dsg_jit_ros.mapping.association import CellObservations, associate, recell
from dsg_jit_ros.mapping.local_map import LocalMap
from dsg_jit_ros.mapping.odometry_scale import OdometryScale
from dsg_jit_ros.mapping.planar import PLANAR_FIXED
from dsg_jit_ros.mapping.registration import RegistrationResult, register
from dsg_jit_ros.mapping.window_config import WindowConfig
from dsg_jit_ros.optimization import prefix
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.covariance import pose_covariance
from dsg_jit_ros.optimization.solvers import solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_surface_residual, prior_residual
from dsg_jit_ros.geometry.poses import pose_matrices, pose_values, split_planar
from dsg_jit_ros.world.model import WorldModel


PRE_ASSOCIATION_ITERS = 1  # LM iterations of a solve that a re-association follows
REBASE_ITERATIONS = 10  # LM iterations after a re-base (when the configured cap is 1)
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass
class _Keyframe:
    stamp: float
    var: int
    t_odom_body: np.ndarray  # (planar part in planar mode)
    level: np.ndarray  # T_planar_body (identity unless planar)
    odom: int | None  # odometry factor from the previous keyframe (None for the oldest)
    obs: np.ndarray  # ids of its pose_voxel_surface factors
    cells: CellObservations | None  # what those factors observe (same order)
    t_key: np.ndarray = field(default_factory=lambda: np.eye(4))  # the pose its cells were keyed under


@dataclass(frozen=True)
class FrozenKeyframe:
    """A keyframe that left the window: its final estimate and its voxel observations."""

    stamp: float
    t_map_body: np.ndarray  # the window's pose (planar part in planar mode)
    level: np.ndarray  # T_map_body of the body = t_map_body @ level
    cells: CellObservations | None  # body frame
    t_key: np.ndarray  # the pose the cells were keyed under (association), same frame as t_map_body


@dataclass(frozen=True)
class SolveStats:
    """What one keyframe's update did (for the node's status message)."""

    solve_ms: float
    iterations: int
    initial_cost: float
    final_cost: float
    keyframes_in_window: int
    active_voxels: int
    frozen_voxels: int
    factors: int
    compilations: int
    dropped_capacity: int
    registration: RegistrationResult | None = None


class SlidingWindow:
    """Keyframes + voxels, optimised with the jitted LM on fixed capacities."""

    def __init__(self, cfg: WindowConfig, planar: bool = False):
        self.cfg = cfg
        self.planar = bool(planar)
        # compiled with room for a re-base's longer solve; the configured cap is passed as data.
        # A keyframe's solve is one or two iterations: linearising in each iteration beats
        # carrying every factor's Jacobians through the loop (LMConfig.keep_linearization);
        # the solve keeps its last reduced pose system's factor for the covariance
        self._lm = dataclasses.replace(cfg.lm, max_iters=max(cfg.lm.max_iters, REBASE_ITERATIONS),
                                       keep_linearization=False, keep_factor=cfg.lm.linear_solver == "schur")
        self._factor = None  # Cholesky factor of the last solve's reduced pose system
        # set once the solve on the graph's prefix is compiled (``prefix_warm_up``; None: never)
        self.prefix_ready: threading.Event | None = None
        self._plan: prefix.PrefixPlan | None = None  # the cut, once ready (capacities are fixed)
        self.solves = self.prefix_solves = 0  # solves, and those that ran on the prefix
        n = cfg.size
        self.wm = WorldModel(
            var_capacity={"pose_se3": n + 1, "voxel_cell3d": cfg.max_voxels},
            # the anchor is a prior of its own type so that its batch has 2 slots, not max_voxels
            factor_capacity={"odom_se3": n + 1, "pose_voxel_surface": cfg.max_observations, "prior": cfg.max_voxels,
                             "anchor": 2},
        )
        for f_type, fn in (("prior", prior_residual), ("anchor", prior_residual), ("odom_se3", odom_se3_residual),
                           ("pose_voxel_surface", pose_voxel_surface_residual)):
            self.wm.register_residual(f_type, fn)
        self.wm.declare_factor_type("anchor", ("pose_se3",), {"target": np.zeros(6)})
        self.wm.declare_factor_type("prior", ("voxel_cell3d",), {"target": np.zeros(3)})
        self.wm.declare_factor_type("odom_se3", ("pose_se3", "pose_se3"), {"measurement": np.zeros(6)})
        self.wm.declare_factor_type("pose_voxel_surface", ("pose_se3", "voxel_cell3d"), {"point_body": np.zeros(3)})
        self.local = LocalMap(cfg.voxel.size, cfg.surface)
        self._placed = True  # the local map's window observations are at the current poses
        self._keyframes: list[_Keyframe] = []
        self.voxels = ActiveVoxels(self.wm, self.local, cfg)
        self.trajectory: list[tuple[float, np.ndarray]] = []  # frozen keyframes: (stamp, T_map_body)
        self._anchor: int | None = None
        self.dropped_points = 0
        # registration outcomes: "matched" (used), "degenerate" (used, some directions from odometry),
        # "rejected" (correction beyond max_correction_sigma), "few_matches" (prediction kept)
        self.registrations: Counter[str] = Counter()
        self.leaving: list[FrozenKeyframe] = []  # frozen since the owner last took them (global graph)
        self.grow_map = True  # False (localization): leaving keyframes do not join the frozen map
        self._initial: tuple[np.ndarray, np.ndarray] | None = None  # (T_map_body, sigmas) of the first keyframe
        self._parked = np.eye(4)  # T_map_odom while the window is empty after freeze_all
        self.odometry_scale = OdometryScale(cfg.odom_scale_memory, cfg.odom_scale_limit)

    def set_initial_pose(self, t_map_body: np.ndarray, sigmas: np.ndarray) -> None:
        """Where the first keyframe is (4x4, on a loaded map) and how well that is known
        ((6,) sigmas [rho m, phi rad]): its registration starts there with that prior."""
        if self._keyframes:
            raise RuntimeError("the initial pose applies before the first keyframe")
        self._initial = (np.asarray(t_map_body, dtype=np.float64), np.asarray(sigmas, dtype=np.float64))

    def keyframe_records(self) -> list[FrozenKeyframe]:
        """The window's keyframes as they stand (poses, observations), oldest first."""
        if not self._keyframes:
            return []
        poses = pose_matrices(self.wm.get_variable_values([k.var for k in self._keyframes]))
        return [FrozenKeyframe(k.stamp, p, k.level, k.cells, k.t_key) for k, p in zip(self._keyframes, poses)]

    def set_planar(self, planar: bool) -> None:
        """Choose planar mode before the first keyframe (see the module doc)."""
        if self._keyframes or self.trajectory:
            raise RuntimeError("planar mode can only be chosen before the first keyframe")
        self.planar = bool(planar)

    # ---- queries --------------------------------------------------------
    @property
    def keyframe_poses(self) -> list[tuple[float, np.ndarray]]:
        """All keyframes so far, (stamp, T_map_body): frozen ones, then the window's."""
        if not self._keyframes:
            return list(self.trajectory)
        mats = pose_matrices(self.wm.get_variable_values([k.var for k in self._keyframes]))
        return self.trajectory + [(k.stamp, m @ k.level) for k, m in zip(self._keyframes, mats)]

    @property
    def t_map_odom(self) -> np.ndarray:
        """The correction map <- odom from the newest keyframe (identity before any; the
        last one's after ``freeze_all``)."""
        if not self._keyframes:
            return self._parked
        k = self._keyframes[-1]
        return self._pose(k.var) @ np.linalg.inv(k.t_odom_body)

    @property
    def newest_level(self) -> np.ndarray:
        """Levelling ``L`` of the newest keyframe (``T_map_body = P L``; identity unless planar)."""
        return self._keyframes[-1].level if self._keyframes else np.eye(4)

    @property
    def newest_keyframe_var(self) -> int | None:
        """Variable id of the newest keyframe (None before the first)."""
        return self._keyframes[-1].var if self._keyframes else None

    def voxel_centres(self, frozen_map=None) -> np.ndarray:
        """(M, 3) map points: active voxels' estimates, then the other means (m) of
        ``frozen_map`` (a ``VoxelMap``; default: the frozen map the window tracks against)."""
        return self.voxels.centres(self.local.frozen if frozen_map is None else frozen_map)

    @property
    def dropped_capacity(self) -> int:
        """Voxel observations left out by the capacities so far."""
        return self.voxels.dropped_capacity

    def newest_covariance(self) -> np.ndarray | None:
        """(6, 6) covariance of the newest keyframe's pose (the planar part in planar mode),
        tangent ``[rho (m), phi (rad)]``, body frame, right perturbation: from the last
        solve's reduced pose system (its last linearisation point, damped by its ``lam``),
        so nothing is linearised again.  None before the first solve or without a Schur
        solver (``optimization.covariance.marginal_covariance`` then)."""
        if self._factor is None or not self._keyframes:
            return None
        graph = self.wm.host_graph  # only its layout is read
        pos = graph.layout.position("pose_se3")
        return np.array(pose_covariance(graph, self._factor, pos, self.wm.variable_slot(self._keyframes[-1].var)))

    def _pose(self, var: int) -> np.ndarray:
        """T_map_body of a keyframe variable (planar part in planar mode)."""
        return pose_matrices(self.wm.get_variable_value(var)[None])[0]

    # ---- update ---------------------------------------------------------
    def add_keyframe(self, stamp: float, t_odom_body: np.ndarray, points_body: np.ndarray) -> SolveStats:
        """Insert a keyframe with its (N, 3) body-frame cloud, slide, and re-solve."""
        pts, t_odom, level = self._levelled(t_odom_body, points_body)
        if self._keyframes:
            raw, increment, t_pred = self._predict(t_odom)
        else:
            raw = increment = np.eye(4)
            t_pred = self.t_map_odom @ t_odom
        sigmas = self.cfg.odom_sigmas(raw)
        if not self._keyframes and self._initial is not None:  # the first keyframe on a loaded map
            t_pred, sigmas = self._initial
            t_pred = split_planar(t_pred)[0] if self.planar else t_pred
            self._initial = None
        reg = self._register(pts, t_pred, sigmas)
        if reg is not None:
            self.registrations["rejected" if reg.rejected else "few_matches" if not reg.used
                               else "degenerate" if reg.degenerate else "matched"] += 1
        t_map_body = reg.t_map_body if reg is not None else t_pred
        var = int(self.wm.add_variables("pose_se3", pose_values(t_map_body[None]))[0])
        if self.planar:
            self.wm.set_fixed_dofs([var], PLANAR_FIXED)
        kf = _Keyframe(stamp, var, t_odom.copy(), level, None, _EMPTY, None)
        if self._keyframes:
            kf.odom = self.wm.add_factor("odom_se3", (self._keyframes[-1].var, var), {
                "measurement": pose_values(increment[None])[0], "sigma": self.cfg.odom_sigmas(increment)})
        else:
            self._anchor = self.wm.add_factor("anchor", (var,), {"target": pose_values(t_map_body[None])[0],
                                                                  "sigma": self.cfg.anchor_sigma})
        self._keyframes.append(kf)
        drops_before = (self.dropped_capacity, self.dropped_points)
        self._observe(kf, t_map_body, pts)
        frozen_keys = [self._drop_oldest() for _ in range(len(self._keyframes) - self.cfg.size)]
        self._refresh(kf.cells.keys, np.concatenate([_EMPTY] + frozen_keys))
        # a solve followed by a re-association only has to move the new pose close
        # enough for voxelising: its LM iterations are capped (PRE_ASSOCIATION_ITERS)
        stats = self._solve(PRE_ASSOCIATION_ITERS if self.cfg.reassociations else self.cfg.lm.max_iters, reg)
        for i in range(self.cfg.reassociations):
            self._forget_observations(kf)
            self.voxels.dropped_capacity, self.dropped_points = drops_before  # count the final association only
            self._observe(kf, self._pose(kf.var), pts)
            self._refresh(kf.cells.keys, _EMPTY)
            stats = self._solve(PRE_ASSOCIATION_ITERS if i + 1 < self.cfg.reassociations else self.cfg.lm.max_iters,
                                reg)
        return stats

    def track(self, t_odom_body: np.ndarray, points_body: np.ndarray) -> tuple[float, np.ndarray] | None:
        """A cloud between keyframes registered to the window's map from the odometry
        prediction: ``(newest keyframe's stamp, T_keyframe^-1 T_map_body)`` (full poses,
        levelled as keyframes are), or None (no keyframe yet, registration off, rejected or
        too few matches).  The window is left as it was (the map placement cache aside):
        the pose serves the final trajectory only (``export.poses_at(final=True)``)."""
        if not self._keyframes:
            return None
        pts, t_odom, level = self._levelled(t_odom_body, points_body)
        kf = self._keyframes[-1]
        raw, _, t_pred = self._predict(t_odom)
        reg = self._register(pts, t_pred, self.cfg.odom_sigmas(raw))
        if reg is None or reg.rejected or not reg.used:
            return None
        return kf.stamp, np.linalg.inv(self._pose(kf.var) @ kf.level) @ reg.t_map_body @ level

    def _predict(self, t_odom: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From the newest keyframe to the (levelled) odometry pose ``t_odom``: (the odometry
        increment, that increment at the estimated odometry scale (the same when the scale is
        off), the predicted T_map_body)."""
        kf = self._keyframes[-1]
        raw = np.linalg.inv(kf.t_odom_body) @ t_odom
        if not self.odometry_scale.memory:
            return raw, raw, self.t_map_odom @ t_odom
        scaled = self.odometry_scale.apply(raw)
        return raw, scaled, self._pose(kf.var) @ scaled

    def _levelled(self, t_odom_body: np.ndarray, points_body) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points levelled (N, 3), odometry pose the window estimates, levelling ``L``):
        in planar mode the planar part of the odometry and the cloud under ``L``."""
        pts = np.asarray(points_body, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
        t_odom, level = (split_planar(t_odom_body) if self.planar
                         else (np.asarray(t_odom_body, dtype=np.float64), np.eye(4)))
        return pts @ level[:3, :3].T + level[:3, 3], t_odom, level

    def _register(self, pts: np.ndarray, t_pred: np.ndarray, sigmas: np.ndarray) -> RegistrationResult | None:
        """Scan-to-map registration from ``t_pred`` (None when off or the map is empty)."""
        if not (self.cfg.registration.enabled and (len(self.voxels) or len(self.local.frozen))):
            return None
        self._place()
        target = self.local.target(t_pred[:3, 3], self.cfg.voxel.max_range)
        return register(pts, t_pred, target, sigmas, self.cfg.registration, planar=self.planar)

    def rebase(self, correction: np.ndarray, frozen: list[tuple[CellObservations | None, np.ndarray, np.ndarray]],
               trajectory: list[tuple[float, np.ndarray]], rekey: bool = True, base=None) -> None:
        """After the global graph moved: move the window rigidly by ``correction`` (4x4,
        map frame, ``T <- C T``), rebuild the frozen map from ``frozen`` (cells,
        T_map_body, keying pose: ``local_map.placed_map``) on top of ``base`` (a
        ``VoxelMap``, e.g. retired submaps) and replace the frozen
        keyframes' poses by ``trajectory``.  The window's observations are re-keyed under
        their keying poses moved by the correction (``rekey``; else they keep their
        voxels), new voxel variables at the means of all their points, then a full solve."""
        c = np.asarray(correction, dtype=np.float64)
        self.trajectory = list(trajectory)
        self.local.rebuild(frozen, base)
        if not self._keyframes:
            self._parked = c @ self._parked
            return
        poses = c @ pose_matrices(self.wm.get_variable_values([k.var for k in self._keyframes]))
        for kf, value in zip(self._keyframes, pose_values(poses)):
            self.wm.set_variable_value(kf.var, value)
        self.wm.set_factors([self._anchor], {"target": pose_values(poses[:1])})
        for kf, pose in zip(self._keyframes, poses):
            cells, t_key = kf.cells, (c @ kf.t_key if rekey else kf.t_key)
            self._forget_observations(kf)
            if cells is not None:
                self._insert(kf, recell(cells, t_key, self.cfg.voxel.size), t_key)
        keys = self.voxels.keys()
        self._refresh(keys, keys)
        # every voxel at the mean of all its points (frozen and window), then a full solve:
        # the window's warm start is gone
        means = self.local.means(keys, self.local.stats(keys))
        for k, value in zip(keys.tolist(), means):
            self.wm.set_variable_value(self.voxels.ids[k], value)
        self._solve(max(self.cfg.lm.max_iters, REBASE_ITERATIONS), None, capped=False)

    def forget_frozen(self, frozen: list[tuple[CellObservations | None, np.ndarray]]) -> None:
        """Take keyframes out of the frozen map the window tracks, each exactly as it went
        in ((cells, T_map_body): ``LocalMap.freeze``), e.g. those older than a tracking
        horizon; the active voxels they touched get new surfaces and priors (none when no
        frozen point is left)."""
        touched = [cells.keys for cells, _ in frozen if cells is not None and len(cells)]
        for cells, pose in frozen:
            self.local.unfreeze(cells, pose)
        if not touched or not len(self.voxels):
            return
        keys = np.unique(np.concatenate(touched))
        keys = keys[np.isin(keys, self.voxels.keys())]
        self.voxels.drop_orphan_priors(keys)
        self._refresh(keys, keys)

    def prepare_registration(self) -> None:
        """What the next registration needs first, done now (a no-op when done): the
        window's observations placed in the local map at the current poses, and the
        target's rows of the window's voxels (``LocalMap.prepare_target``).  Nothing with
        registration off: no registration would use them."""
        if not self.cfg.registration.enabled:
            return
        self._place()
        self.local.prepare_target()

    def _place(self) -> None:
        """Put the window's observations into the local map at the current poses."""
        if self._placed:
            return
        poses = pose_matrices(self.wm.get_variable_values([k.var for k in self._keyframes]))
        self.local.place([(k.cells, p) for k, p in zip(self._keyframes, poses)])
        self._placed = True

    def _refresh(self, observed: np.ndarray, frozen: np.ndarray) -> None:
        """New surface shapes for the voxels the new keyframe ``observed`` (all their
        observations and their prior take it: one shape per voxel), and new priors for
        the active voxels a leaving keyframe added ``frozen`` points to."""
        self._placed = False
        self._place()
        observed = np.unique(observed)
        self.voxels.reshape(observed, [(k.obs, k.cells) for k in self._keyframes])
        still_active = np.array([k for k in np.unique(frozen).tolist() if k in self.voxels.ids], dtype=np.int64)
        self.voxels.refresh_priors(np.union1d(observed, still_active))

    def _observe(self, kf: _Keyframe, t_map_body: np.ndarray, pts: np.ndarray) -> None:
        cells = associate(pts, t_map_body, self.cfg.voxel)
        self.dropped_points += cells.dropped_nonfinite + cells.dropped_range
        self._insert(kf, cells, t_map_body)

    def _insert(self, kf: _Keyframe, cells: CellObservations, t_map_body: np.ndarray) -> None:
        """Observations of ``cells`` (keyed in the map under ``t_map_body``) by ``kf``."""
        kf.t_key = np.asarray(t_map_body, dtype=np.float64)
        kf.cells, kf.obs = self.voxels.insert(kf.var, cells, kf.t_key)

    def _forget_observations(self, kf: _Keyframe) -> None:
        """Remove a keyframe's voxel factors (keeping its odometry factor)."""
        self.wm.remove_factors(kf.obs)
        keys = kf.cells.keys if kf.cells is not None else _EMPTY
        kf.obs, kf.cells = _EMPTY, None
        self.voxels.release(keys)

    def freeze_all(self) -> None:
        """Freeze every keyframe (end of a trajectory, before a final global solve): each
        joins the frozen map, the trajectory and ``leaving``.  The window is empty
        afterwards; a next keyframe starts a new one, predicted with the last correction."""
        if self._keyframes:
            self._parked = self.t_map_odom
        while self._keyframes:
            self._drop_oldest()

    def _drop_oldest(self) -> np.ndarray:
        """Freeze the oldest keyframe; returns the voxel keys it added frozen points to."""
        old = self._keyframes.pop(0)
        pose = self._pose(old.var)
        if self._keyframes and self.odometry_scale.memory:  # its interval to the next one, solved as far as it will be
            nxt = self._keyframes[0]
            self.odometry_scale.update(np.linalg.inv(old.t_odom_body) @ nxt.t_odom_body,
                                       np.linalg.inv(pose) @ self._pose(nxt.var))
        self.trajectory.append((old.stamp, pose @ old.level))
        if self.grow_map:
            self.local.freeze(old.cells, pose)
            self.leaving.append(FrozenKeyframe(old.stamp, pose, old.level, old.cells, old.t_key))
        # the odom factor from `old` to the new oldest keyframe is owned by the latter
        new_first = self._keyframes[0] if self._keyframes else None
        edits = [old.obs] + [np.array([f], dtype=np.int64) for f in (
            old.odom, new_first.odom if new_first else None, self._anchor) if f is not None]
        self.wm.remove_factors(np.concatenate(edits))
        self._anchor = None
        if new_first is not None:
            new_first.odom = None
            self._anchor = self.wm.add_factor("anchor", (new_first.var,), {
                "target": self.wm.get_variable_value(new_first.var), "sigma": self.cfg.anchor_sigma})
        self.wm.remove_variable(old.var)
        keys = old.cells.keys if old.cells is not None else _EMPTY
        self.voxels.release(keys)
        self._placed = False
        return keys

    def prefix_warm_up(self) -> Callable[[], float] | None:
        """The compile of the solve on the graph's prefix (``cfg.prefix_fraction``) as a
        job to run later, in any thread: it solves a copy of the current graph (any graph
        of the window's capacities has the same shapes) once on the prefix and returns
        the seconds it took; None without a cut.  Until ``prefix_ready`` is set the
        window solves on its whole capacity."""
        graph = self.wm.host_graph
        plan = prefix.prefix_plan(graph, self.cfg.prefix_fraction)
        if plan is None:
            return None
        x0, lm = self.wm.values.flat(self.wm.layout).copy(), self._lm

        def job() -> float:
            start = time.perf_counter()
            prefix.solve_prefix(graph, x0, plan, cfg=lm, max_iters=1)  # x is on the host: the run is complete
            return time.perf_counter() - start

        return job

    def _prefix_plan(self, graph) -> prefix.PrefixPlan | None:
        """The cut to solve ``graph`` on: None until the small program is ready (or
        without one) and when a used slot lies past it."""
        if self.prefix_ready is None or not self.prefix_ready.is_set():
            return None
        if self._plan is None:
            self._plan = prefix.prefix_plan(graph, self.cfg.prefix_fraction)
        return self._plan if self._plan is not None and prefix.prefix_fits(graph, self._plan) else None

    def _solve(self, max_iters: int, reg: RegistrationResult | None, capped: bool = True) -> SolveStats:
        start = time.perf_counter()
        graph, x0 = self.wm.host_graph, self.wm.values.flat(self.wm.layout)
        plan = self._prefix_plan(graph)
        # the iteration cap is data: both solves of a keyframe share one executable
        cap = min(max_iters, self.cfg.lm.max_iters) if capped else max_iters
        if plan is not None:
            result = prefix.solve_prefix(graph, x0, plan, cfg=self._lm, max_iters=cap)
        else:
            result = solve(graph, x0, cfg=self._lm, max_iters=cap)
            result.x.block_until_ready()
        self.solves += 1
        self.prefix_solves += plan is not None
        elapsed = (time.perf_counter() - start) * 1000.0
        self.wm.update_from_state(result.x)
        self._factor = result.factor
        self._placed = False
        return SolveStats(
            solve_ms=elapsed,
            iterations=int(result.iterations),
            initial_cost=float(result.initial_cost),
            final_cost=float(result.cost),
            keyframes_in_window=len(self._keyframes),
            active_voxels=len(self.voxels),
            frozen_voxels=len(self.local.frozen),
            factors=self.wm.num_factors,
            compilations=compile_count("levenberg_marquardt"),
            dropped_capacity=self.dropped_capacity,
            registration=reg,
        )
