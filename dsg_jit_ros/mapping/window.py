"""The sliding window: keyframe poses + voxels in a fixed-capacity WorldModel.

Each keyframe brings its odometry pose ``T_odom_body`` and its cloud (body
frame).  It becomes a ``pose_se3`` variable linked to the previous keyframe by
an ``odom_se3`` factor (the odometry increment) and to every voxel it sees by a
``pose_voxel_point`` factor.  The cloud is voxelised in the *map* frame under
the current estimate, so the same world cell seen from two keyframes collects
the same patch of surface; each cell's centroid, taken back to the body frame,
is the measurement (sigma shrinking with the point count), and the cell's key
associates it with the map's voxel.

Keyframes leaving the window are *frozen*, not marginalised: their last
estimate is kept for the trajectory, voxels no longer seen by any window
keyframe are moved into a fixed map (and re-enter with a prior at their frozen
position when seen again), and the new oldest keyframe is anchored by a prior
at its estimate.  Marginalising would put a dense prior on everything the
dropped keyframe saw, changing the factor structure every keyframe; freezing
keeps every batch's shape, so the jitted solver compiles once (at the first
keyframe) and never again.  The price is that the window forgets the
uncertainty of what it froze.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.mapping.voxelize import VoxelConfig, pack_keys, voxelize
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.slam.pose_graph import pose_matrices, pose_values
from dsg_jit_ros.world.model import WorldModel


@dataclass(frozen=True)
class WindowConfig:
    """Window size, capacities and noise model (metres, radians).

    ``reassociations``: after the solve, re-voxelise the new cloud under the
    refined pose and solve again (a second solve per keyframe).
    ``registration_iterations``: scan-to-map steps on the new keyframe's predicted
    pose before its cloud is associated (host, pose-only Gauss-Newton against the
    active voxels with the window's noise model).  Measured: on the test_window
    simulation (large odometry yaw errors) 3 steps without re-association give a
    lower ATE than one re-association; on the LiDAR bench (bench/node_latency.py)
    re-association is clearly better, so the default stays re-association.
    """

    window_size: int = 20
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    max_voxels: int = 4096
    max_observations: int = 32768
    odom_sigma_translation: float = 0.05
    odom_sigma_rotation: float = 0.02
    point_sigma: float = 0.1
    anchor_sigma: float = 1e-3
    frozen_voxel_sigma: float = 0.05
    reassociations: int = 1
    registration_iterations: int = 0
    lm: LMConfig = field(default_factory=lambda: LMConfig(linear_solver="schur", max_iters=15, rel_tol=1e-6))

    def __post_init__(self) -> None:
        if self.window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {self.window_size}")
        positive = ("odom_sigma_translation", "odom_sigma_rotation", "point_sigma",
                    "anchor_sigma", "frozen_voxel_sigma")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_voxels < 1 or self.max_observations < 1:
            raise ValueError("max_voxels and max_observations must be >= 1")


PRE_ASSOCIATION_ITERS = 1  # LM iterations of a solve that a re-association follows
_MIN_REGISTRATION_MATCHES = 20  # fewer matched voxels: keep the predicted pose


def _hat(v: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


@dataclass
class _Keyframe:
    stamp: float
    var: int
    t_odom_body: np.ndarray
    odom: int | None  # odometry factor from the previous keyframe (None for the oldest)
    obs: np.ndarray  # ids of its pose_voxel_point factors
    keys: np.ndarray  # voxel keys (see _voxel_keys) it observes, one factor each


_EMPTY = np.zeros(0, dtype=np.int64)


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


class SlidingWindow:
    """Keyframes + voxels, optimised with the jitted LM on fixed capacities."""

    def __init__(self, cfg: WindowConfig):
        self.cfg = cfg
        n = cfg.window_size
        self.wm = WorldModel(
            var_capacity={"pose_se3": n + 1, "voxel_cell3d": cfg.max_voxels},
            # the anchor is a prior of its own type so that its batch has 2 slots, not max_voxels
            factor_capacity={"odom_se3": n + 1, "pose_voxel_point": cfg.max_observations, "prior": cfg.max_voxels,
                             "anchor": 2},
        )
        for f_type, fn in (("prior", prior_residual), ("anchor", prior_residual), ("odom_se3", odom_se3_residual),
                           ("pose_voxel_point", pose_voxel_point_residual)):
            self.wm.register_residual(f_type, fn)
        # voxel factors have scalar sigmas (isotropic): the Schur solver's moment fast path
        self.wm.declare_factor_type("anchor", ("pose_se3",), {"target": np.zeros(6)})
        self.wm.declare_factor_type("prior", ("voxel_cell3d",), {"target": np.zeros(3)}, isotropic=True)
        self.wm.declare_factor_type("odom_se3", ("pose_se3", "pose_se3"), {"measurement": np.zeros(6)})
        self.wm.declare_factor_type("pose_voxel_point", ("pose_se3", "voxel_cell3d"), {"point_body": np.zeros(3)},
                                    isotropic=True)
        self._keyframes: list[_Keyframe] = []
        # voxel keys are int64 (``_voxel_keys``: the packed integer cell index)
        self._voxels: dict[int, int] = {}  # key -> active voxel variable
        self._voxel_priors: dict[int, int] = {}  # key -> prior factor of a re-entered voxel
        self._voxel_users: dict[int, int] = {}  # key -> window keyframes seeing it
        self._far_keys: dict[tuple, int] = {}  # cells beyond pack_keys' range -> their negative key
        self._n_obs = 0  # pose_voxel_point factors in the window
        self.frozen_voxels: dict[int, np.ndarray] = {}  # key -> position (m, map frame)
        self.trajectory: list[tuple[float, np.ndarray]] = []  # frozen keyframes: (stamp, T_map_body)
        self._anchor: int | None = None
        self.dropped_capacity = 0
        self.dropped_points = 0

    # ---- queries --------------------------------------------------------
    @property
    def keyframe_poses(self) -> list[tuple[float, np.ndarray]]:
        """All keyframes so far, (stamp, T_map_body): frozen ones, then the window's."""
        if not self._keyframes:
            return list(self.trajectory)
        mats = pose_matrices(np.stack([self.wm.get_variable_value(k.var) for k in self._keyframes]))
        return self.trajectory + [(k.stamp, m) for k, m in zip(self._keyframes, mats)]

    @property
    def t_map_odom(self) -> np.ndarray:
        """The correction map <- odom from the newest keyframe (identity before any)."""
        if not self._keyframes:
            return np.eye(4)
        k = self._keyframes[-1]
        return self._pose(k.var) @ np.linalg.inv(k.t_odom_body)

    @property
    def newest_keyframe_var(self) -> int | None:
        """Variable id of the newest keyframe (None before the first)."""
        return self._keyframes[-1].var if self._keyframes else None

    def voxel_centres(self) -> np.ndarray:
        """(M, 3) positions of active and frozen voxels (m, map frame)."""
        active = self.wm.get_variable_values(list(self._voxels.values())).reshape(-1, 3)
        return np.concatenate([active, np.array(list(self.frozen_voxels.values())).reshape(-1, 3)])

    def _pose(self, var: int) -> np.ndarray:
        """T_map_body of a keyframe variable."""
        return pose_matrices(self.wm.get_variable_value(var)[None])[0]

    # ---- update ---------------------------------------------------------
    def add_keyframe(self, stamp: float, t_odom_body: np.ndarray, points_body: np.ndarray) -> SolveStats:
        """Insert a keyframe with its (N, 3) body-frame cloud, slide, and re-solve."""
        pts = np.asarray(points_body, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
        t_pred = self.t_map_odom @ t_odom_body
        t_map_body = t_pred
        for _ in range(self.cfg.registration_iterations if self._voxels else 0):
            t_map_body = self._register(t_map_body, t_pred, pts)
        var = self.wm.add_variable("pose_se3", pose_values(t_map_body[None])[0])
        kf = _Keyframe(stamp, var, np.asarray(t_odom_body, dtype=np.float64).copy(), None, _EMPTY, _EMPTY)
        if self._keyframes:
            prev = self._keyframes[-1]
            increment = np.linalg.inv(prev.t_odom_body) @ t_odom_body
            sig = [self.cfg.odom_sigma_translation] * 3 + [self.cfg.odom_sigma_rotation] * 3
            kf.odom = self.wm.add_factor(
                "odom_se3", (prev.var, var), {"measurement": pose_values(increment[None])[0], "sigma": np.array(sig)})
        else:
            self._anchor = self.wm.add_factor("anchor", (var,), {"target": pose_values(t_map_body[None])[0],
                                                                  "sigma": self.cfg.anchor_sigma})
        self._keyframes.append(kf)
        drops_before = (self.dropped_capacity, self.dropped_points)
        self._observe(kf, t_map_body, pts)
        while len(self._keyframes) > self.cfg.window_size:
            self._drop_oldest()
        # a solve followed by a re-association only has to move the new pose close
        # enough for voxelising: its LM iterations are capped (PRE_ASSOCIATION_ITERS)
        stats = self._solve(PRE_ASSOCIATION_ITERS if self.cfg.reassociations else self.cfg.lm.max_iters)
        for i in range(self.cfg.reassociations):
            # re-voxelise the new cloud under the refined pose (ICP-like): the cells'
            # contents were conditioned on the predicted pose
            self._forget_observations(kf)
            self.dropped_capacity, self.dropped_points = drops_before  # count the final association only
            self._observe(kf, self._pose(kf.var), pts)
            stats = self._solve(PRE_ASSOCIATION_ITERS if i + 1 < self.cfg.reassociations else self.cfg.lm.max_iters)
        return stats

    def _cells(self, t_map_body: np.ndarray, pts: np.ndarray):
        """The cloud's voxels in the map frame under ``t_map_body``: (cells, keys)."""
        # voxelise in the map frame; the range band is still measured from the sensor
        world_pts = pts @ t_map_body[:3, :3].T + t_map_body[:3, 3]
        cells = voxelize(world_pts, self.cfg.voxel, origin=t_map_body[:3, 3])
        return cells, self._voxel_keys(cells.keys)

    def _voxel_keys(self, keys: np.ndarray) -> np.ndarray:
        """One int64 per voxel key: the packed key, or (far from the origin) a
        negative id handed out once per key."""
        packed = pack_keys(keys)
        if packed is not None:
            return packed
        ids = [self._far_keys.setdefault(k, -1 - len(self._far_keys)) for k in map(tuple, keys.tolist())]
        return np.array(ids, dtype=np.int64)

    def _register(self, t_map_body: np.ndarray, t_pred: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """One scan-to-map step for the new keyframe: voxelise under ``t_map_body``,
        match cells to active voxels by key, and take one Gauss-Newton step on the
        keyframe's pose alone (voxels held at their estimates) with the window's own
        noise model: the matched cell centroids (sigma ``point_sigma / sqrt(count)``)
        and the odometry prediction ``t_pred`` (the odometry sigmas)."""
        cells, keys = self._cells(t_map_body, pts)
        found = np.array([self._voxels.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        hit = found >= 0
        if hit.sum() < _MIN_REGISTRATION_MATCHES:
            return t_map_body
        rot, trans = t_map_body[:3, :3], t_map_body[:3, 3]
        q = (self.wm.get_variable_values(found[hit]) - trans) @ rot  # voxels in the body frame
        err = q - (cells.centroids[hit] - trans) @ rot  # predicted - measured (body)
        w = cells.counts[hit] / self.cfg.point_sigma ** 2
        # J = [-I, [q]x] (right perturbation [rho, phi]); J^T J = [[I, -[q]x], [[q]x, -[q]x^2]]
        qx = _hat(q)
        h = np.zeros((6, 6))
        h[:3, :3] = w.sum() * np.eye(3)
        h[:3, 3:] = -np.einsum("n,nij->ij", w, qx)
        h[3:, :3] = h[:3, 3:].T
        h[3:, 3:] = -np.einsum("n,nij,njk->ik", w, qx, qx)
        g = np.concatenate([-(w @ err), np.einsum("n,nji,nj->i", w, qx, err)])
        # odometry prior: the tangent of T_pred^-1 T (first order)
        rel = np.linalg.inv(t_pred) @ t_map_body
        xi = pose_values(rel[None])[0]
        odom_w = 1.0 / np.array([self.cfg.odom_sigma_translation] * 3 + [self.cfg.odom_sigma_rotation] * 3) ** 2
        h += np.diag(odom_w)
        g += odom_w * xi
        step = np.linalg.solve(h, -g)
        return t_map_body @ pose_matrices(step[None])[0]

    def _observe(self, kf: _Keyframe, t_map_body: np.ndarray, pts: np.ndarray) -> None:
        cells, keys = self._cells(t_map_body, pts)
        self.dropped_points += cells.dropped_nonfinite + cells.dropped_range
        if len(cells) == 0:
            return
        order = np.argsort(-cells.counts, kind="stable")  # most-supported voxels first
        keys = keys[order]
        found = np.array([self._voxels.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        is_new = found < 0
        # capacities: new voxels while max_voxels allows, then observations while
        # max_observations allows (in support order)
        keep = ~is_new | (np.cumsum(is_new) <= self.cfg.max_voxels - len(self._voxels))
        keep &= np.cumsum(keep) <= self.cfg.max_observations - self._n_obs
        self.dropped_capacity += int((~keep).sum())
        if not keep.any():
            return
        sel = order[keep]
        keys, found, is_new = keys[keep], found[keep], is_new[keep]
        world = cells.centroids[sel]
        if is_new.any():
            found[is_new] = self._activate_voxels(keys[is_new], world[is_new])
        body = (world - t_map_body[:3, 3]) @ t_map_body[:3, :3]
        pairs = np.stack([np.full(len(found), kf.var), found], axis=1)
        sigma = self.cfg.point_sigma / np.sqrt(cells.counts[sel])
        kf.obs = np.asarray(self.wm.add_factors("pose_voxel_point", pairs, {"point_body": body, "sigma": sigma}))
        kf.keys = keys
        self._n_obs += len(keys)
        users = self._voxel_users
        for k in keys.tolist():
            users[k] = users.get(k, 0) + 1

    def _activate_voxels(self, keys: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """New active voxels (frozen ones re-enter at their frozen position with a prior)."""
        values = guess.copy()
        frozen = [self.frozen_voxels.pop(k, None) for k in keys.tolist()]
        back = [i for i, f in enumerate(frozen) if f is not None]
        for i in back:
            values[i] = frozen[i]
        vids = self.wm.add_variables("voxel_cell3d", values)
        self._voxels.update(zip(keys.tolist(), vids.tolist()))
        if back:
            fids = self.wm.add_factors("prior", vids[back][:, None],
                                       {"target": values[back], "sigma": self.cfg.frozen_voxel_sigma})
            self._voxel_priors.update(zip(keys[back].tolist(), fids.tolist()))
        return vids

    def _release_keys(self, keys: np.ndarray, freeze: bool) -> None:
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
            self._retire_voxels(gone, freeze)

    def _forget_observations(self, kf: _Keyframe) -> None:
        """Remove a keyframe's voxel factors (keeping its odometry factor)."""
        self.wm.remove_factors(kf.obs)
        keys = kf.keys
        kf.obs, kf.keys = _EMPTY, _EMPTY
        self._release_keys(keys, freeze=False)

    def _drop_oldest(self) -> None:
        old = self._keyframes.pop(0)
        self.trajectory.append((old.stamp, self._pose(old.var)))
        # the odom factor from `old` to the new oldest keyframe is owned by the latter
        new_first = self._keyframes[0]
        edits = [old.obs] + [np.array([f], dtype=np.int64) for f in (old.odom, new_first.odom, self._anchor)
                             if f is not None]
        self.wm.remove_factors(np.concatenate(edits))
        new_first.odom = None
        self._anchor = self.wm.add_factor("anchor", (new_first.var,), {
            "target": self.wm.get_variable_value(new_first.var), "sigma": self.cfg.anchor_sigma})
        self.wm.remove_variable(old.var)
        self._release_keys(old.keys, freeze=True)

    def _retire_voxels(self, keys: list, freeze: bool) -> None:
        """Remove active voxels no window keyframe sees any more.

        ``freeze``: keep their positions in the frozen map (they left the window).
        Otherwise (their only observations were re-associated away) they are
        dropped, except that a voxel which came from the frozen map goes back there.
        """
        vids = np.array([self._voxels.pop(k) for k in keys], dtype=np.int64)
        priors = [self._voxel_priors.pop(k, None) for k in keys]
        had_prior = [p is not None for p in priors]
        if any(had_prior):
            self.wm.remove_factors([p for p in priors if p is not None])
        values = self.wm.get_variable_values(vids)
        for k, v, p in zip(keys, values, had_prior):
            if freeze or p:
                self.frozen_voxels[k] = v
        self.wm.remove_variables(vids)

    def _solve(self, max_iters: int) -> SolveStats:
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
            frozen_voxels=len(self.frozen_voxels),
            factors=self.wm.num_factors,
            compilations=compile_count("levenberg_marquardt"),
            dropped_capacity=self.dropped_capacity,
        )
