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

from dsg_jit_ros.mapping.voxelize import VoxelConfig, voxelize
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.slam.pose_graph import pose_matrices, pose_values
from dsg_jit_ros.world.model import WorldModel


@dataclass(frozen=True)
class WindowConfig:
    """Window size, capacities and noise model (metres, radians)."""

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


@dataclass
class _Keyframe:
    stamp: float
    var: int
    t_odom_body: np.ndarray
    factors: list[int]
    voxels: set[tuple]


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
        self._voxels: dict[tuple, int] = {}  # world key -> active voxel variable
        self._voxel_priors: dict[tuple, int] = {}  # world key -> prior factor of a re-entered voxel
        self._voxel_users: dict[tuple, int] = {}  # world key -> window keyframes seeing it
        self.frozen_voxels: dict[tuple, np.ndarray] = {}  # world key -> position (m, map frame)
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
        active = [self.wm.get_variable_value(v) for v in self._voxels.values()]
        return np.array(active + list(self.frozen_voxels.values())).reshape(-1, 3)

    def _pose(self, var: int) -> np.ndarray:
        """T_map_body of a keyframe variable."""
        return pose_matrices(self.wm.get_variable_value(var)[None])[0]

    # ---- update ---------------------------------------------------------
    def add_keyframe(self, stamp: float, t_odom_body: np.ndarray, points_body: np.ndarray) -> SolveStats:
        """Insert a keyframe with its (N, 3) body-frame cloud, slide, and re-solve."""
        t_map_body = self.t_map_odom @ t_odom_body
        var = self.wm.add_variable("pose_se3", pose_values(t_map_body[None])[0])
        kf = _Keyframe(stamp, var, np.asarray(t_odom_body, dtype=np.float64).copy(), [], set())
        if self._keyframes:
            prev = self._keyframes[-1]
            increment = np.linalg.inv(prev.t_odom_body) @ t_odom_body
            sig = [self.cfg.odom_sigma_translation] * 3 + [self.cfg.odom_sigma_rotation] * 3
            kf.factors.append(self.wm.add_factor(
                "odom_se3", (prev.var, var), {"measurement": pose_values(increment[None])[0], "sigma": np.array(sig)}))
        else:
            self._anchor = self.wm.add_factor("anchor", (var,), {"target": pose_values(t_map_body[None])[0],
                                                                  "sigma": self.cfg.anchor_sigma})
        self._keyframes.append(kf)
        drops_before = (self.dropped_capacity, self.dropped_points)
        self._observe(kf, t_map_body, points_body)
        while len(self._keyframes) > self.cfg.window_size:
            self._drop_oldest()
        stats = self._solve()
        for _ in range(self.cfg.reassociations):
            # re-voxelise the new cloud under the refined pose (ICP-like): the cells'
            # contents were conditioned on the predicted pose
            self._forget_observations(kf)
            self.dropped_capacity, self.dropped_points = drops_before  # count the final association only
            self._observe(kf, self._pose(kf.var), points_body)
            stats = self._solve()
        return stats

    def _forget_observations(self, kf: _Keyframe) -> None:
        """Remove a keyframe's voxel factors (keeping its odometry factor)."""
        n_odom = 1 if self._keyframes.index(kf) > 0 else 0
        for f in kf.factors[n_odom:]:
            self.wm.remove_factor(f)
        del kf.factors[n_odom:]
        for key in kf.voxels:
            self._voxel_users[key] -= 1
            if self._voxel_users[key] == 0:
                self._retire_voxel(key, freeze=False)
        kf.voxels.clear()

    def _observe(self, kf: _Keyframe, t_map_body: np.ndarray, points_body: np.ndarray) -> None:
        pts = np.asarray(points_body, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
        # voxelise in the map frame; the range band is still measured from the sensor
        world_pts = pts @ t_map_body[:3, :3].T + t_map_body[:3, 3]
        cells = voxelize(world_pts, self.cfg.voxel, origin=t_map_body[:3, 3])
        self.dropped_points += cells.dropped_nonfinite + cells.dropped_range
        if len(cells) == 0:
            return
        keys = [tuple(k) for k in cells.keys]
        world = cells.centroids
        body = (world - t_map_body[:3, 3]) @ t_map_body[:3, :3]
        order = np.argsort(-cells.counts, kind="stable")  # most-supported voxels first
        pairs, points, sigmas = [], [], []
        free_obs = self.cfg.max_observations - self._observation_count()
        for i in order:
            key = keys[i]
            if key in kf.voxels:
                continue  # two cells of one cloud fall in one map voxel: keep the better supported
            if len(pairs) >= free_obs or (key not in self._voxels and len(self._voxels) >= self.cfg.max_voxels):
                self.dropped_capacity += 1
                continue
            vox = self._voxels.get(key)
            if vox is None:
                vox = self._activate_voxel(key, world[i])
            kf.voxels.add(key)
            self._voxel_users[key] = self._voxel_users.get(key, 0) + 1
            pairs.append((kf.var, vox))
            points.append(body[i])
            sigmas.append(self.cfg.point_sigma / np.sqrt(cells.counts[i]))
        if pairs:
            fids = self.wm.add_factors("pose_voxel_point", pairs, {"point_body": np.array(points), "sigma": np.array(sigmas)})
            kf.factors.extend(int(f) for f in fids)

    def _observation_count(self) -> int:
        return sum(len(k.voxels) for k in self._keyframes)

    def _activate_voxel(self, key: tuple, guess: np.ndarray) -> int:
        frozen = self.frozen_voxels.pop(key, None)
        vox = self.wm.add_variable("voxel_cell3d", guess if frozen is None else frozen)
        self._voxels[key] = vox
        if frozen is not None:
            self._voxel_priors[key] = self.wm.add_factor(
                "prior", (vox,), {"target": frozen, "sigma": self.cfg.frozen_voxel_sigma})
        return vox

    def _drop_oldest(self) -> None:
        old = self._keyframes.pop(0)
        self.trajectory.append((old.stamp, self._pose(old.var)))
        for f in old.factors:
            self.wm.remove_factor(f)
        # the odom factor from `old` to the new oldest keyframe is owned by the latter
        new_first = self._keyframes[0]
        link = new_first.factors.pop(0)
        self.wm.remove_factor(link)
        if self._anchor is not None:
            self.wm.remove_factor(self._anchor)
        self._anchor = self.wm.add_factor("anchor", (new_first.var,), {
            "target": self.wm.get_variable_value(new_first.var), "sigma": self.cfg.anchor_sigma})
        self.wm.remove_variable(old.var)
        for key in old.voxels:
            self._voxel_users[key] -= 1
            if self._voxel_users[key] == 0:
                self._retire_voxel(key, freeze=True)

    def _retire_voxel(self, key: tuple, freeze: bool) -> None:
        """Remove an active voxel no window keyframe sees any more.

        ``freeze``: keep its position in the frozen map (it left the window).
        Otherwise (its only observations were re-associated away) it is dropped,
        except that a voxel which came from the frozen map goes back there.
        """
        vox = self._voxels.pop(key)
        del self._voxel_users[key]
        prior = self._voxel_priors.pop(key, None)
        if prior is not None:
            self.wm.remove_factor(prior)
        if freeze or prior is not None:
            self.frozen_voxels[key] = self.wm.get_variable_value(vox)
        self.wm.remove_variable(vox)

    def _solve(self) -> SolveStats:
        x0, _ = self.wm.pack_state()
        start = time.perf_counter()
        result = solve(self.wm.fg, x0, cfg=self.cfg.lm)
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
