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
the point Schur solve exact (``optimization.point_schur``); shapes are
recomputed from the voxels' statistics under the current poses at every keyframe.

Keyframes leaving the window are *frozen*, not marginalised: their last estimate
is kept for the trajectory, their points are added to the voxel map's statistics
at that pose, and the new oldest keyframe is anchored by a prior at its estimate.
An active voxel whose statistics include frozen points gets a prior toward the
frozen mean, weighted as ``frozen_weight`` observations of its surface: the
window stays registered to the map it built without locking the voxels in place.
Freezing keeps every batch's shape, so the jitted solver compiles once.

Planar mode (2D lasers, ground robots): each odometry pose is split into its
planar part (x, y, yaw) and a levelling ``L`` (z, roll, pitch); the window
estimates planar poses (z, roll, pitch components fixed in the solver) of the
levelled cloud ``L p``, and reports ``T_map_body = P L``: z, roll and pitch stay
exactly the odometry's.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.mapping.association import CellObservations, associate
from dsg_jit_ros.mapping.planar import PLANAR_FIXED, split_planar
from dsg_jit_ros.mapping.registration import RegistrationConfig, RegistrationResult, SurfaceTarget, register
from dsg_jit_ros.mapping.voxel_map import (SurfaceConfig, VoxelMap, VoxelStats, observation_stats,
                                           observation_weights, surface_sqrt_information, voxel_centres)
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_surface_residual, prior_residual
from dsg_jit_ros.slam.pose_graph import pose_matrices, pose_values
from dsg_jit_ros.world.model import WorldModel


@dataclass(frozen=True)
class WindowConfig:
    """Window size, capacities and noise model (metres, radians).

    ``reassociations``: after the solve, cut the new cloud into voxels again under
    the refined pose and solve again (a second solve per keyframe).
    ``frozen_weight``: observation-equivalents of the prior that ties an active
    voxel to its frozen statistics (0: no such prior).
    ``kernel_scale``: Cauchy scale of the whitened voxel observations.
    Odometry increments between keyframes have sigmas ``odom_sigma_translation +
    odom_translation_scale * |travel|`` (m) and ``odom_sigma_rotation +
    odom_rotation_scale * |turn|`` (rad): wheel odometry errs in proportion to the
    motion (a turn in place of 60 degrees is not known to 0.02 rad).
    """

    window_size: int = 20
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    max_voxels: int = 4096
    max_observations: int = 32768
    odom_sigma_translation: float = 0.05
    odom_sigma_rotation: float = 0.02
    odom_translation_scale: float = 0.0
    odom_rotation_scale: float = 0.0
    anchor_sigma: float = 1e-3
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    frozen_weight: float = 2.0
    kernel_scale: float = 3.0
    reassociations: int = 0
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    lm: LMConfig = field(default_factory=lambda: LMConfig(linear_solver="schur", max_iters=15, rel_tol=1e-6))

    def __post_init__(self) -> None:
        if self.window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {self.window_size}")
        for name in ("odom_sigma_translation", "odom_sigma_rotation", "anchor_sigma", "kernel_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_voxels < 1 or self.max_observations < 1:
            raise ValueError("max_voxels and max_observations must be >= 1")
        if min(self.frozen_weight, self.reassociations, self.odom_translation_scale, self.odom_rotation_scale) < 0:
            raise ValueError("frozen_weight, reassociations and the odometry scales must be >= 0")

    def odom_sigmas(self, increment: np.ndarray) -> np.ndarray:
        """(6,) sigmas of the odometry increment ``T_i^-1 T_j`` (4x4), tangent order
        [rho (m), phi (rad)]."""
        travel = float(np.linalg.norm(increment[:3, 3]))
        turn = float(np.linalg.norm(pose_values(increment[None])[0, 3:]))
        return np.array([self.odom_sigma_translation + self.odom_translation_scale * travel] * 3
                        + [self.odom_sigma_rotation + self.odom_rotation_scale * turn] * 3)


PRE_ASSOCIATION_ITERS = 1  # LM iterations of a solve that a re-association follows
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
        n = cfg.window_size
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
        self.map = VoxelMap(cfg.voxel.voxel_size)
        self._keyframes: list[_Keyframe] = []
        self._voxels: dict[int, int] = {}  # packed key -> active voxel variable
        self._voxel_priors: dict[int, int] = {}  # packed key -> prior factor toward its frozen statistics
        self._voxel_users: dict[int, int] = {}  # packed key -> window keyframes seeing it
        self._n_obs = 0  # pose_voxel_surface factors in the window
        self.trajectory: list[tuple[float, np.ndarray]] = []  # frozen keyframes: (stamp, T_map_body)
        self._anchor: int | None = None
        self.dropped_capacity = 0
        self.dropped_points = 0

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
        """The correction map <- odom from the newest keyframe (identity before any)."""
        if not self._keyframes:
            return np.eye(4)
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

    def voxel_centres(self) -> np.ndarray:
        """(M, 3) map points: active voxels' estimates, then the frozen map's other means (m)."""
        keys = np.fromiter(self._voxels.keys(), dtype=np.int64, count=len(self._voxels))
        active = self.wm.get_variable_values(list(self._voxels.values())).reshape(-1, 3)
        frozen = self.map.keys[~np.isin(self.map.keys, keys)]
        return np.concatenate([active, self.map.means(frozen).reshape(-1, 3)])

    def _pose(self, var: int) -> np.ndarray:
        """T_map_body of a keyframe variable (planar part in planar mode)."""
        return pose_matrices(self.wm.get_variable_value(var)[None])[0]

    # ---- update ---------------------------------------------------------
    def add_keyframe(self, stamp: float, t_odom_body: np.ndarray, points_body: np.ndarray) -> SolveStats:
        """Insert a keyframe with its (N, 3) body-frame cloud, slide, and re-solve."""
        pts = np.asarray(points_body, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
        t_odom, level = (split_planar(t_odom_body) if self.planar
                         else (np.asarray(t_odom_body, dtype=np.float64), np.eye(4)))
        pts = pts @ level[:3, :3].T + level[:3, 3]
        t_pred = self.t_map_odom @ t_odom
        increment = np.linalg.inv(self._keyframes[-1].t_odom_body) @ t_odom if self._keyframes else np.eye(4)
        reg = None
        if self.cfg.registration.enabled and (self._voxels or len(self.map)):
            reg = register(pts, t_pred, self._surface_target(t_pred), self.cfg.odom_sigmas(increment),
                           self.cfg.registration, planar=self.planar)
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
        while len(self._keyframes) > self.cfg.window_size:
            self._drop_oldest()
        self._refresh_weights()
        # a solve followed by a re-association only has to move the new pose close
        # enough for voxelising: its LM iterations are capped (PRE_ASSOCIATION_ITERS)
        stats = self._solve(PRE_ASSOCIATION_ITERS if self.cfg.reassociations else self.cfg.lm.max_iters, reg)
        for i in range(self.cfg.reassociations):
            self._forget_observations(kf)
            self.dropped_capacity, self.dropped_points = drops_before  # count the final association only
            self._observe(kf, self._pose(kf.var), pts)
            self._refresh_weights()
            stats = self._solve(PRE_ASSOCIATION_ITERS if i + 1 < self.cfg.reassociations else self.cfg.lm.max_iters,
                                reg)
        return stats

    def _surface_target(self, t_pred: np.ndarray) -> SurfaceTarget:
        """The voxels within sensor range of the predicted pose, with the registration's
        surface model: active voxels from all their points under the current poses,
        the others from the frozen map."""
        keys = self.map.keys
        centres = voxel_centres(keys, self.map.voxel_size)
        near = np.linalg.norm(centres - t_pred[:3, 3], axis=1) <= self.cfg.voxel.max_range + self.map.voxel_size
        keys = np.union1d(keys[near], np.fromiter(self._voxels.keys(), dtype=np.int64, count=len(self._voxels)))
        stats = self._combined_stats(keys)
        keep = stats.count > 0
        keys, stats = keys[keep], VoxelStats(stats.count[keep], stats.first[keep], stats.second[keep])
        plane = dataclasses.replace(self.cfg.surface, slide=np.inf)  # point-to-plane: nothing along walls
        sqrt = surface_sqrt_information(stats, self.map.voxel_size, plane)
        means = voxel_centres(keys, self.map.voxel_size) + stats.mean_offset()
        return SurfaceTarget.build(keys, means, sqrt, self.map.voxel_size)

    def _window_observations(self):
        """All window observations: (factor ids, CellObservations fields, T_map_body per row)."""
        kfs = [k for k in self._keyframes if k.cells is not None and len(k.cells)]
        if not kfs:
            return None
        poses = pose_matrices(self.wm.get_variable_values([k.var for k in kfs]))
        n = [len(k.cells) for k in kfs]
        return (np.concatenate([k.obs for k in kfs]), np.concatenate([k.cells.keys for k in kfs]),
                np.concatenate([k.cells.count for k in kfs]), np.concatenate([k.cells.mean_body for k in kfs]),
                np.concatenate([k.cells.scatter_body for k in kfs]), np.repeat(poses, n, axis=0))

    def _combined_stats(self, keys: np.ndarray) -> VoxelStats:
        """Statistics of ``keys`` (sorted, unique): frozen ones plus the window's observations."""
        stats = self.map.stats(keys)
        obs = self._window_observations()
        if obs is None or not len(keys):
            return stats
        _, okeys, count, mean, scatter, poses = obs
        pos = np.minimum(np.searchsorted(keys, okeys), len(keys) - 1)
        hit = keys[pos] == okeys
        part = observation_stats(count[hit], mean[hit], scatter[hit], poses[hit],
                                 voxel_centres(okeys[hit], self.map.voxel_size))
        np.add.at(stats.count, pos[hit], part.count)
        np.add.at(stats.first, pos[hit], part.first)
        np.add.at(stats.second, pos[hit], part.second)
        return stats

    def _refresh_weights(self) -> None:
        """Whiten every observation by its voxel's surface information under the current
        poses, and tie voxels with frozen statistics to them by a prior."""
        obs = self._window_observations()
        if obs is None:
            return
        fids, okeys, count, _, _, _ = obs
        keys = np.unique(okeys)
        stats = self._combined_stats(keys)
        sqrt = surface_sqrt_information(stats, self.map.voxel_size, self.cfg.surface)  # W_l, map frame
        row = np.searchsorted(keys, okeys)
        weight = np.sqrt(observation_weights(count, self.cfg.surface))
        self.wm.set_factors(fids, {"sqrt_info": weight[:, None, None] * sqrt[row]})
        self._refresh_priors(keys, sqrt)

    def _refresh_priors(self, keys: np.ndarray, sqrt: np.ndarray) -> None:
        """Priors toward the frozen means of active voxels that have frozen points."""
        if self.cfg.frozen_weight <= 0:
            return
        frozen = self.map.stats(keys)
        has = frozen.count > 0
        if not has.any():
            return
        keys, sqrt, frozen = keys[has], sqrt[has], VoxelStats(frozen.count[has], frozen.first[has], frozen.second[has])
        target = voxel_centres(keys, self.map.voxel_size) + frozen.mean_offset()
        w = np.sqrt(self.cfg.frozen_weight * observation_weights(frozen.count, self.cfg.surface))
        params = {"target": target, "sqrt_info": w[:, None, None] * sqrt}
        fids = np.array([self._voxel_priors.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        old = fids >= 0
        if old.any():
            self.wm.set_factors(fids[old], {k: v[old] for k, v in params.items()})
        if (~old).any():
            vids = np.array([self._voxels[k] for k in keys[~old].tolist()], dtype=np.int64)
            new = self.wm.add_factors("prior", vids[:, None], {k: v[~old] for k, v in params.items()})
            self._voxel_priors.update(zip(keys[~old].tolist(), new.tolist()))

    def _observe(self, kf: _Keyframe, t_map_body: np.ndarray, pts: np.ndarray) -> None:
        cells = associate(pts, t_map_body, self.cfg.voxel)
        self.dropped_points += cells.dropped_nonfinite + cells.dropped_range
        if len(cells) == 0:
            kf.cells = cells
            return
        order = np.argsort(-cells.count, kind="stable")  # most-supported voxels first
        keys = cells.keys[order]
        found = np.array([self._voxels.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        is_new = found < 0
        # capacities: new voxels while max_voxels allows, then observations while
        # max_observations allows (in support order)
        keep = ~is_new | (np.cumsum(is_new) <= self.cfg.max_voxels - len(self._voxels))
        keep &= np.cumsum(keep) <= self.cfg.max_observations - self._n_obs
        self.dropped_capacity += int((~keep).sum())
        cells = cells.select(order[keep])
        found, is_new = found[keep], is_new[keep]
        kf.cells = cells
        if not len(cells):
            return
        world = cells.mean_body @ t_map_body[:3, :3].T + t_map_body[:3, 3]
        if is_new.any():
            found[is_new] = self._activate_voxels(cells.keys[is_new], world[is_new])
        pairs = np.stack([np.full(len(found), kf.var), found], axis=1)
        kf.obs = np.asarray(self.wm.add_factors("pose_voxel_surface", pairs, {
            "point_body": cells.mean_body, "robust": ("cauchy", self.cfg.kernel_scale)}))
        self._n_obs += len(cells)
        users = self._voxel_users
        for k in cells.keys.tolist():
            users[k] = users.get(k, 0) + 1

    def _activate_voxels(self, keys: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """New active voxels, at their frozen mean when the map has one, else at ``guess``."""
        frozen = self.map.means(keys)
        values = np.where(np.isnan(frozen), guess, frozen)
        vids = self.wm.add_variables("voxel_cell3d", values)
        self._voxels.update(zip(keys.tolist(), vids.tolist()))
        return vids

    def _release_keys(self, keys: np.ndarray) -> None:
        """One observation fewer of each key; retire the voxels nobody sees any more."""
        users = self._voxel_users
        gone = []
        for k in keys.tolist():
            n = users[k] - 1
            if n:
                users[k] = n
            else:
                del users[k]
                gone.append(k)
        self._n_obs -= len(keys)
        if gone:
            vids = np.array([self._voxels.pop(k) for k in gone], dtype=np.int64)
            priors = [p for p in (self._voxel_priors.pop(k, None) for k in gone) if p is not None]
            self.wm.remove_factors(priors)
            self.wm.remove_variables(vids)

    def _forget_observations(self, kf: _Keyframe) -> None:
        """Remove a keyframe's voxel factors (keeping its odometry factor)."""
        self.wm.remove_factors(kf.obs)
        keys = kf.cells.keys if kf.cells is not None else _EMPTY
        kf.obs, kf.cells = _EMPTY, None
        self._release_keys(keys)

    def _drop_oldest(self) -> None:
        old = self._keyframes.pop(0)
        pose = self._pose(old.var)
        self.trajectory.append((old.stamp, pose @ old.level))
        if old.cells is not None and len(old.cells):
            keys = old.cells.keys
            self.map.add(keys, observation_stats(old.cells.count, old.cells.mean_body, old.cells.scatter_body,
                                                 np.repeat(pose[None], len(keys), axis=0),
                                                 voxel_centres(keys, self.map.voxel_size)))
        # the odom factor from `old` to the new oldest keyframe is owned by the latter
        new_first = self._keyframes[0]
        edits = [old.obs] + [np.array([f], dtype=np.int64) for f in (old.odom, new_first.odom, self._anchor)
                             if f is not None]
        self.wm.remove_factors(np.concatenate(edits))
        new_first.odom = None
        self._anchor = self.wm.add_factor("anchor", (new_first.var,), {
            "target": self.wm.get_variable_value(new_first.var), "sigma": self.cfg.anchor_sigma})
        self.wm.remove_variable(old.var)
        self._release_keys(old.cells.keys if old.cells is not None else _EMPTY)

    def _solve(self, max_iters: int, reg: RegistrationResult | None) -> SolveStats:
        x0 = self.wm.state_vector()
        start = time.perf_counter()
        # the iteration cap is data: both solves of a keyframe share one executable
        result = solve(self.wm.fg, x0, cfg=self.cfg.lm, max_iters=min(max_iters, self.cfg.lm.max_iters))
        result.x.block_until_ready()
        elapsed = (time.perf_counter() - start) * 1000.0
        self.wm.update_from_state(result.x)
        return SolveStats(
            solve_ms=elapsed,
            iterations=int(result.iterations),
            initial_cost=float(result.initial_cost),
            final_cost=float(result.cost),
            keyframes_in_window=len(self._keyframes),
            active_voxels=len(self._voxels),
            frozen_voxels=len(self.map),
            factors=self.wm.num_factors,
            compilations=compile_count("levenberg_marquardt"),
            dropped_capacity=self.dropped_capacity,
            registration=reg,
        )
