"""Library SLAM baselines: scan-to-map registration seeded by the wheel-odometry increment.

Every scan is registered to a map of the scans before it, starting from the prediction
``T_map_base(k) = T_map_base(k-1) @ inv(T_odom_base(k-1)) @ T_odom_base(k)`` (the
odometry increment, never a constant-velocity model: the robots of the real logs turn in
place by up to 60 deg between scans).  The result is kept when the registration has
enough inliers and moved the prediction by a plausible amount, else the prediction is
kept (a *fallback*, counted).  The scan then goes into the map at the pose kept.  The
map frame is the odometry frame at the first scan, so all trajectories start at
``T_odom_base(0)``.  No loop closure and no pose graph: this is what a good lidar
odometry does, and what a SLAM back end is to be compared against.

- ``odometry_trajectory``: the raw wheel odometry (identity correction), for comparison.
- ``small_gicp_trajectory`` (``small_gicp``): VGICP against a ``GaussianVoxelMap`` of
  0.5 m voxels that keeps every voxel (LRU horizon 10^6 insertions, so a revisited room
  is matched to its first visit), scans voxel-downsampled to 5 cm, covariances from 20
  neighbours, max correspondence 0.5 m, at most 20 iterations, one thread.
  ``registration="GICP"/"ICP"/"PLANE_ICP"`` registers to a k-d tree of the last
  ``window`` keyframes instead (measured: worse, and 3-6x slower).
- ``kiss_icp_trajectory`` (``kiss-icp``): KISS-ICP's range filter, voxel hash map (0.3 m
  voxels, points kept within 60 m), double voxel downsampling, robust point-to-point ICP
  and adaptive threshold, driven scan by scan so that the initial guess is the odometry
  prediction (``KissICP.register_frame`` would use its constant-velocity model; on these
  logs it spins on the spot).  ``min_motion_th = 0``: with the library's 0.1 m the small
  deviations of odometry seeds never update the adaptive threshold, which stays at its
  initial 2 m (correspondences up to 6 m); 0 measured slightly better on both logs.

Planar scans (every z = 0, the real logs): the covariance of a neighbourhood of a flat
scan has its smallest axis along z, so GICP / VGICP / point-to-plane take every normal
as vertical: PLANE_ICP cannot move in the plane at all and (V)GICP degrades to an
isotropic in-plane point(-to-distribution) match (GICP: the same trajectory as
point-to-point ICP).  Options measured: (a) extrude the scan: replicate each downsampled
point at ``layers`` = 5 heights 5 cm apart, so the smallest covariance axis is the
horizontal wall normal and the match is point-to-wall; (b) no extrusion; and for both
(c) project every result to SE(2) (x, y, yaw; z = roll = pitch = 0), which the
extrusion needs (it leaves z, roll and pitch unobservable).  Own 2D normals with
point-to-plane are not possible through small_gicp's Python API (``PointCloud`` has
no setter for normals or covariances).  Chosen: (a) + (c).  Without the extrusion
VGICP turns the map of fr079 by 30-40 deg halfway through (seen in the PNGs; within
5 cm: 74 % vs 81 % with it); on mit-csail it happened to score better (52 % vs 29 %),
but there every variant's figure swings by a factor of two with a 10 % change of the
downsampling resolution: a single heading slip in a turn decides it.  KISS-ICP is
point-to-point and needs no extrusion, only (c).  3D clouds are used as they are.

Choices were made with the ground-truth-free map consistency of
``dsg_jit_ros.tools.consistency`` (``bench/baseline_run.py``) on the full mit-csail and
fr079 logs and on prefixes of them (250 to 2500 scans), and on the map PNGs.  Extruded
VGICP to a persistent voxel map beat GICP / ICP / PLANE_ICP to a window of 20 or 60
keyframes (also 3-6x slower); 0.3 / 0.75 / 1 m voxels, 10 neighbours or LRU horizons of
300 / 1500 scans were no better beyond the noise.  Correspondences up to 0.75 or 1 m
(the same result: the voxel lookup bounds them) score better on the full logs (within
5 cm: mit-csail 38 % vs 29 %, fr079 86 % vs 81 %) but break the cluttered rooms at the
start of mit-csail (first 300 scans: 6 % vs 45 %; first 600: 13 % vs 40 %, odometry
22 %), so 0.5 m: its within-5 cm fraction is never below the odometry's on the
prefixes tried (first 250 scans: both 6 %; few places are revisited by then).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["BaselineRun", "KissIcpConfig", "METHODS", "SmallGicpConfig", "extrude", "is_planar",
           "kiss_icp_trajectory", "odometry_trajectory", "planar_pose", "small_gicp_trajectory"]


class BaselineRun(NamedTuple):
    """A baseline's trajectory.  ``stamps, poses, ms = run[:3]``.

    Attributes:
        stamps: (n,) scan stamps [s].
        poses: (n, 4, 4) ``T_map_base`` at those stamps [m].
        ms_per_scan: (n,) wall time of each scan's update [ms] (map update included).
        inlier_fraction: (n,) share of the registered points with a correspondence
            (NaN: not registered, e.g. the first scan or odometry).
        fallback: (n,) True where the odometry prediction was kept.
    """

    stamps: np.ndarray
    poses: np.ndarray
    ms_per_scan: np.ndarray
    inlier_fraction: np.ndarray
    fallback: np.ndarray

    @property
    def fallbacks(self) -> int:
        return int(np.sum(self.fallback))


def planar_pose(T: np.ndarray) -> np.ndarray:
    """The SE(2) part of ``T`` (x, y, yaw), as a 4x4 with z = roll = pitch = 0."""
    yaw = np.arctan2(T[1, 0], T[0, 0])
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = T[:2, 3]
    return out


def is_planar(clouds: Sequence[np.ndarray], tol: float = 1e-6) -> bool:
    """True when every finite point of every cloud has |z| <= tol (a planar laser)."""
    return all(bool(np.all(np.abs(np.nan_to_num(np.asarray(c)[:, 2], posinf=0.0, neginf=0.0)) <= tol))
               for c in clouds)


def extrude(points: np.ndarray, layers: int, step: float) -> np.ndarray:
    """(N * layers, 3): the points replicated at ``layers`` heights ``step`` apart, centred on z."""
    if layers <= 1:
        return points
    offsets = (np.arange(layers) - (layers - 1) / 2.0) * step
    return np.concatenate([points + np.array([0.0, 0.0, dz]) for dz in offsets])


def _finite(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points[np.all(np.isfinite(points), axis=1)]


def _correction_ok(pred: np.ndarray, est: np.ndarray, max_m: float, max_deg: float) -> bool:
    """Whether ``est`` is within ``max_m`` metres and ``max_deg`` degrees of ``pred``."""
    d = np.linalg.inv(pred) @ est
    angle = np.degrees(np.arccos(np.clip((np.trace(d[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
    return bool(np.linalg.norm(d[:3, 3]) <= max_m and angle <= max_deg)


def _check(stamps, odom_poses, clouds) -> tuple[np.ndarray, np.ndarray]:
    stamps = np.asarray(stamps, dtype=np.float64)
    odom = np.asarray(odom_poses, dtype=np.float64)
    if not (stamps.shape == (len(clouds),) and odom.shape == (len(clouds), 4, 4)):
        raise ValueError(f"one stamp and one (4, 4) odometry pose per cloud: {len(clouds)} clouds, "
                         f"stamps {stamps.shape}, poses {odom.shape}")
    return stamps, odom


def _loop(stamps, odom_poses, clouds, planar: bool | None, step) -> BaselineRun:
    """Run ``step(k, points, pred, planar) -> (T, inlier_fraction, fallback, untimed_s)`` over
    the scans (``pred``: the odometry prediction; ``untimed_s``: evaluation-only time to
    leave out of ``ms_per_scan``)."""
    stamps, odom = _check(stamps, odom_poses, clouds)
    n = len(stamps)
    project = is_planar(clouds) if planar is None else planar
    poses = np.zeros((n, 4, 4))
    ms = np.zeros(n)
    inl = np.full(n, np.nan)
    fb = np.zeros(n, dtype=bool)
    for k in range(n):
        t0 = time.perf_counter()
        if k == 0:
            pred = odom[0]
        else:
            pred = poses[k - 1] @ np.linalg.inv(odom[k - 1]) @ odom[k]
        pred = planar_pose(pred) if project else pred
        poses[k], inl[k], fb[k], untimed = step(k, _finite(clouds[k]), pred, project)
        ms[k] = 1e3 * (time.perf_counter() - t0 - untimed)
    return BaselineRun(stamps, poses, ms, inl, fb)


def odometry_trajectory(stamps, odom_poses, clouds=None, cfg=None) -> BaselineRun:
    """The raw wheel odometry in the same form (``T_map_base = T_odom_base``, no fallbacks)."""
    stamps, odom = _check(stamps, odom_poses, clouds if clouds is not None else [None] * len(odom_poses))
    n = len(stamps)
    return BaselineRun(stamps, odom.copy(), np.zeros(n), np.full(n, np.nan), np.zeros(n, dtype=bool))


@dataclass(frozen=True)
class SmallGicpConfig:
    """small_gicp scan-to-map registration (module docstring).

    Attributes:
        registration: "VGICP" (to a GaussianVoxelMap) or "GICP" / "ICP" / "PLANE_ICP"
            (to a k-d tree of the last ``window`` keyframes).
        downsample: voxel-grid resolution of each scan [m] (and of the window map).
        voxel: VGICP voxel size [m].
        lru_horizon: VGICP map: a voxel not updated by this many insertions is dropped.
        window, keyframe_m, keyframe_deg: k-d tree map: the last ``window`` scans that
            moved ``keyframe_m`` or turned ``keyframe_deg`` from the previous one.
        layers, layer_step: extrusion of planar scans (``layer_step`` None: ``downsample``).
        neighbours: neighbours for the covariance / normal estimates.
        max_correspondence: outlier rejection distance [m].
        max_iterations: Gauss-Newton / LM iterations per registration.
        min_inlier_fraction, min_inliers: fallback below either (inlier fraction of the
            extruded points; ``min_inliers`` counts scan points, i.e. before extrusion).
        max_correction_m, max_correction_deg: fallback when the result is farther from the
            odometry prediction (one scan of wheel odometry errs by centimetres).
        planar: project results to SE(2) and extrude the scans; None: when all z = 0.
        num_threads: small_gicp threads.
    """

    registration: str = "VGICP"
    downsample: float = 0.05
    voxel: float = 0.5
    lru_horizon: int = 1_000_000
    window: int = 20
    keyframe_m: float = 0.2
    keyframe_deg: float = 6.0
    layers: int = 5
    layer_step: float | None = None
    neighbours: int = 20
    max_correspondence: float = 0.5
    max_iterations: int = 20
    min_inlier_fraction: float = 0.3
    min_inliers: int = 20
    max_correction_m: float = 1.0
    max_correction_deg: float = 20.0
    planar: bool | None = None
    num_threads: int = 1


def small_gicp_trajectory(stamps, odom_poses, clouds, cfg: SmallGicpConfig = SmallGicpConfig()) -> BaselineRun:
    """small_gicp registration of each scan to the map, seeded by the odometry increment.

    Args:
        stamps: (n,) scan stamps [s]; odom_poses: (n, 4, 4) ``T_odom_base`` at those stamps;
        clouds: n (N_i, 3) body-frame points [m] (non-finite points are dropped).
    """
    import small_gicp

    if cfg.registration not in ("VGICP", "GICP", "ICP", "PLANE_ICP"):
        raise ValueError(f"unknown registration {cfg.registration!r}")
    nt = cfg.num_threads
    dz = cfg.layer_step or cfg.downsample
    window: deque[np.ndarray] = deque(maxlen=cfg.window)
    m: dict = {"vmap": None, "target": None, "tree": None, "last_kf": None}

    def register(src, pred: np.ndarray):
        """(T, inliers) of ``src`` against the map, or (pred, None) while the map is empty."""
        kw = dict(max_correspondence_distance=cfg.max_correspondence, num_threads=nt,
                  max_iterations=cfg.max_iterations)
        if cfg.registration == "VGICP":
            if m["vmap"] is None:
                return pred, None
            r = small_gicp.align(m["vmap"], src, pred, **kw)
        else:
            if m["target"] is None:
                return pred, None
            r = small_gicp.align(m["target"], src, m["tree"], pred, registration_type=cfg.registration, **kw)
        return r.T_target_source, r.num_inliers

    def insert(src, flat, layers, T):
        if cfg.registration == "VGICP":
            if m["vmap"] is None:
                m["vmap"] = small_gicp.GaussianVoxelMap(cfg.voxel)
                m["vmap"].set_lru(cfg.lru_horizon, 10)
            m["vmap"].insert(src, T)
        elif m["last_kf"] is None or not _correction_ok(m["last_kf"], T, cfg.keyframe_m, cfg.keyframe_deg):
            m["last_kf"] = T
            window.append(flat @ T[:3, :3].T + T[:3, 3])
            m["target"], m["tree"] = small_gicp.preprocess_points(
                extrude(np.concatenate(window), layers, dz), cfg.downsample, cfg.neighbours, nt)

    def step(k, pts, pred, planar):
        layers = cfg.layers if planar else 1
        flat = small_gicp.voxelgrid_sampling(small_gicp.PointCloud(pts), cfg.downsample, nt).points()[:, :3]
        if len(flat) == 0:
            return pred, np.nan, k > 0, 0.0
        src = small_gicp.PointCloud(extrude(flat, layers, dz))
        tree = small_gicp.KdTree(src, nt)
        if cfg.registration == "VGICP":
            small_gicp.estimate_covariances(src, tree, cfg.neighbours, nt)
        else:
            small_gicp.estimate_normals_covariances(src, tree, cfg.neighbours, nt)
        T, inliers = register(src, pred)
        frac = np.nan if inliers is None else inliers / src.size()
        fallback = inliers is not None and not (
            frac >= cfg.min_inlier_fraction and frac * len(flat) >= cfg.min_inliers and np.all(np.isfinite(T))
            and _correction_ok(pred, T, cfg.max_correction_m, cfg.max_correction_deg))
        T = pred if fallback else (planar_pose(T) if planar else T)
        insert(src, flat, layers, T)  # a fallback scan goes into the map at the prediction
        return T, frac, fallback, 0.0

    return _loop(stamps, odom_poses, clouds, cfg.planar, step)


@dataclass(frozen=True)
class KissIcpConfig:
    """KISS-ICP components driven with odometry seeds (module docstring).

    Attributes:
        voxel: voxel hash map size [m] (scans downsampled to 0.5 and 1.5 voxels, KISS-ICP's rule).
        max_range, min_range: range filter [m]; map points farther than max_range are dropped.
        max_points_per_voxel: map density.
        fixed_threshold: correspondence threshold sigma [m] (max correspondence 3 sigma);
            None: KISS-ICP's adaptive threshold.
        initial_threshold, min_motion_th: adaptive threshold settings.
        max_iterations, convergence: ICP settings.
        min_inlier_fraction, fitness_every: fallback when fewer of the source points than this
            have a map point within 3 sigma (map snapshot every ``fitness_every`` scans;
            this check is not included in ``ms_per_scan``).
        max_correction_m, max_correction_deg: fallback when farther from the prediction.
        planar: project results to SE(2); None: when all z = 0.
        num_threads: KISS-ICP threads.
    """

    voxel: float = 0.3
    max_range: float = 60.0
    min_range: float = 0.0
    max_points_per_voxel: int = 20
    fixed_threshold: float | None = None
    initial_threshold: float = 2.0
    min_motion_th: float = 0.0
    max_iterations: int = 500
    convergence: float = 1e-4
    min_inlier_fraction: float = 0.3
    fitness_every: int = 5
    max_correction_m: float = 1.0
    max_correction_deg: float = 20.0
    planar: bool | None = None
    num_threads: int = 1


def kiss_icp_trajectory(stamps, odom_poses, clouds, cfg: KissIcpConfig = KissIcpConfig()) -> BaselineRun:
    """KISS-ICP registration of each scan to its voxel map, seeded by the odometry increment
    (arguments as ``small_gicp_trajectory``)."""
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP
    from scipy.spatial import cKDTree

    kc = KISSConfig()
    kc.data.deskew = False
    kc.data.max_range, kc.data.min_range = cfg.max_range, cfg.min_range
    kc.mapping.voxel_size, kc.mapping.max_points_per_voxel = cfg.voxel, cfg.max_points_per_voxel
    kc.registration.max_num_threads = cfg.num_threads
    kc.registration.max_num_iterations, kc.registration.convergence_criterion = cfg.max_iterations, cfg.convergence
    kc.adaptive_threshold.fixed_threshold = cfg.fixed_threshold
    kc.adaptive_threshold.initial_threshold = cfg.initial_threshold
    kc.adaptive_threshold.min_motion_th = cfg.min_motion_th
    icp = KissICP(kc)
    fit: dict = {"tree": None}

    def step(k, pts, pred, planar):
        frame = icp.preprocessor.preprocess(pts, np.zeros(len(pts)), np.eye(4))  # range filter, no deskew
        source, frame_down = icp.voxelize(frame)
        sigma = icp.adaptive_threshold.get_threshold()
        if icp.local_map.empty() or len(source) == 0:
            icp.local_map.update(frame_down, pred)
            return pred, np.nan, k > 0 and len(source) == 0, 0.0
        T = icp.registration.align_points_to_map(source, icp.local_map, pred, 3.0 * sigma, sigma)
        T = planar_pose(T) if planar else T
        t0 = time.perf_counter()  # fitness: evaluation only, not timed
        if fit["tree"] is None or k % cfg.fitness_every == 0:
            fit["tree"] = cKDTree(icp.local_map.point_cloud())
        d, _ = fit["tree"].query(source @ T[:3, :3].T + T[:3, 3], distance_upper_bound=3.0 * sigma)
        frac = float(np.mean(np.isfinite(d)))
        untimed = time.perf_counter() - t0
        fallback = not (frac >= cfg.min_inlier_fraction and np.all(np.isfinite(T))
                        and _correction_ok(pred, T, cfg.max_correction_m, cfg.max_correction_deg))
        T = pred if fallback else T
        icp.adaptive_threshold.update_model_deviation(np.linalg.inv(pred) @ T)
        icp.local_map.update(frame_down, T)
        return T, frac, fallback, untimed

    return _loop(stamps, odom_poses, clouds, cfg.planar, step)


METHODS = {"odometry": odometry_trajectory, "small_gicp": small_gicp_trajectory, "kiss_icp": kiss_icp_trajectory}
