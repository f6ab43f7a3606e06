"""A planar laser scanner, people walking, and wheel odometry with turn-dependent heading drift.

- ``raycast_2d`` intersects a fan of rays with line segments and circles, all rays
  x all primitives at once in numpy (no loop over beams).
- ``planar_scan`` is one scan of a 2D laser mounted ``x_offset`` metres ahead of the
  ``base_link`` origin, looking forward (defaults as in the real Radish/Freiburg logs:
  361 beams over -90..+90 degrees); returns points in ``base_link`` (z = 0, float32).
  Effects: gaussian range noise, random dropouts, no point when nothing lies within
  the maximum range (as the real bags drop "no return" readings), glass returning
  only near normal incidence, people (circles) occluding the scene and returning points.
  The scan is instantaneous (no motion distortion).
- ``simulate_wheel_odometry``: dead reckoning from corrupted ground-truth increments.
  Unlike ``demo_world.simulate_odometry`` (left unchanged for the courtyard), the heading
  error grows with the angle turned (turns in place included) and nothing drifts while
  the robot stands still.

Random numbers come only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_matrices, yaw_of
from dsg_jit_ros.tools.office_world import FURNITURE, GLASS, WALL, FloorPlan

__all__ = [
    "People",
    "PlanarLaserConfig",
    "WheelOdometryNoise",
    "beam_angles",
    "planar_scan",
    "raycast_2d",
    "simulate_wheel_odometry",
    "walking_people",
]

_EPS = 1e-9  # [m] hits closer than this to the ray origin are ignored
PERSON = 3  # kind of a person hit (for intensities)
_INTENSITY = np.zeros(4, dtype=np.float32)
_INTENSITY[[WALL, FURNITURE, GLASS, PERSON]] = [50.0, 70.0, 90.0, 30.0]


@dataclass(frozen=True)
class PlanarLaserConfig:
    """A 2D laser scanner (defaults like the SICK units of the real logs, 1 cm noise).

    Attributes:
        n_beams, fov_min_deg, fov_max_deg: beams evenly spaced over ``[fov_min, fov_max]`` [deg].
        min_range, max_range: returns outside ``[min_range, max_range]`` [m] give no point.
        range_noise: standard deviation of the gaussian range noise [m].
        dropout: probability that a beam gives no return although it hits something.
        x_offset: laser origin ahead of the ``base_link`` origin [m] (points are given in ``base_link``).
        glass_max_incidence_deg: glass returns a beam only within this angle of its normal.
        rate_hz: scans per second.
    """

    n_beams: int = 361
    fov_min_deg: float = -90.0
    fov_max_deg: float = 90.0
    min_range: float = 0.05
    max_range: float = 30.0
    range_noise: float = 0.01
    dropout: float = 0.02
    x_offset: float = 0.10
    glass_max_incidence_deg: float = 25.0
    rate_hz: float = 10.0


def beam_angles(cfg: PlanarLaserConfig) -> np.ndarray:
    """(n_beams,) beam angles in the laser frame [rad], counter-clockwise from +x."""
    return np.deg2rad(np.linspace(cfg.fov_min_deg, cfg.fov_max_deg, cfg.n_beams))


def raycast_2d(origin: np.ndarray, dirs: np.ndarray, segments: np.ndarray, circles: np.ndarray | None = None,
               max_range: float = np.inf, transparent: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First hits of planar rays from one origin.

    Args:
        origin: (2,) ray origin [m].
        dirs: (N, 2) unit ray directions.
        segments: (M, 2, 2) segments ``[[x0, y0], [x1, y1]]`` [m].
        circles: (P, 3) circles ``cx, cy, radius`` [m]; a circle containing the origin is not seen.
        max_range: hits farther than this [m] count as no return.
        transparent: optional (N, M) bool, True where a ray passes through a segment.

    Returns:
        ``(ranges (N,) [m], ids (N,) int)``: distance to the first hit (``inf`` without
        a return) and what was hit: ``0..M-1`` a segment, ``M..M+P-1`` a circle, -1 nothing.
    """
    o = np.asarray(origin, dtype=float).reshape(2)
    d = np.asarray(dirs, dtype=float).reshape(-1, 2)
    seg = np.asarray(segments, dtype=float).reshape(-1, 2, 2)
    a, e = seg[:, 0] - o, seg[:, 1] - seg[:, 0]  # (M, 2)
    dx, dy = d[:, 0:1], d[:, 1:2]  # (N, 1)
    denom = dx * e[:, 1] - dy * e[:, 0]  # cross(d, e), (N, M)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a[:, 0] * e[:, 1] - a[:, 1] * e[:, 0]) / denom  # cross(a, e) / cross(d, e)
        u = (a[:, 0] * dy - a[:, 1] * dx) / denom  # cross(a, d) / cross(d, e)
    ok = (np.abs(denom) > 1e-12) & (t > _EPS) & (u >= 0.0) & (u <= 1.0)
    if transparent is not None:
        ok &= ~transparent
    cand = [np.where(ok, t, np.inf)]
    if circles is not None and len(circles):
        c = np.asarray(circles, dtype=float)
        oc = o - c[:, :2]  # (P, 2)
        b = dx * oc[:, 0] + dy * oc[:, 1]  # (N, P)
        disc = b**2 - (np.sum(oc**2, axis=1) - c[:, 2] ** 2)
        tc = -b - np.sqrt(np.maximum(disc, 0.0))
        cand.append(np.where((disc >= 0) & (tc > _EPS), tc, np.inf))
    all_t = np.concatenate(cand, axis=1)
    ids = np.argmin(all_t, axis=1)
    ranges = all_t[np.arange(len(d)), ids]
    hit = np.isfinite(ranges) & (ranges <= max_range)
    return np.where(hit, ranges, np.inf), np.where(hit, ids, -1)


@dataclass(frozen=True, eq=False)
class People:
    """People walking back and forth along straight lanes at constant speed.

    Attributes:
        lanes: (P, 2, 2) ``[start, end]`` in ``map`` [m].
        speeds: (P,) walking speeds [m/s].
        phases: (P,) distance [m] along the back-and-forth cycle at ``t = 0``.
        radius: radius of the circle standing for a person [m].
    """

    lanes: np.ndarray
    speeds: np.ndarray
    phases: np.ndarray
    radius: float = 0.25

    def positions(self, t: float) -> np.ndarray:
        """(P, 2) centres in ``map`` [m] at time ``t`` [s] since the start of the recording."""
        start, end = self.lanes[:, 0], self.lanes[:, 1]
        length = np.linalg.norm(end - start, axis=1)
        s = np.mod(self.phases + self.speeds * t, 2.0 * length)
        along = np.where(s < length, s, 2.0 * length - s)
        return start + (end - start) * (along / length)[:, None]

    def circles(self, t: float) -> np.ndarray:
        """(P, 3) ``cx, cy, radius`` at time ``t`` [s]."""
        return np.column_stack([self.positions(t), np.full(len(self.lanes), self.radius)])


def walking_people(lanes: np.ndarray, seed: int, radius: float = 0.25, speed_range=(0.8, 1.4)) -> People:
    """One person per lane with speed and starting point drawn from ``seed`` (own generator,
    so the people do not change the laser's or the odometry's random numbers)."""
    lanes = np.asarray(lanes, dtype=float).reshape(-1, 2, 2)
    rng = np.random.default_rng([int(seed), 0x9E0])
    length = np.linalg.norm(lanes[:, 1] - lanes[:, 0], axis=1)
    return People(lanes=lanes, speeds=rng.uniform(*speed_range, size=len(lanes)),
                  phases=rng.uniform(0.0, 2.0 * length), radius=radius)


def planar_scan(plan: FloorPlan, T_map_base: np.ndarray, cfg: PlanarLaserConfig, rng: np.random.Generator,
                circles: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One scan from pose ``T_map_base`` (4x4, metres; only x, y and yaw are used).

    Args:
        plan: the floor plan.
        T_map_base: robot pose; the laser sits at ``(x_offset, 0, 0)`` in ``base_link``.
        cfg: laser model.
        rng: random generator (dropouts, then range noise).
        circles: (P, 3) people ``cx, cy, radius`` in ``map`` [m] at the scan time.

    Returns:
        ``(points (n, 3) float32 in base_link [m], intensity (n,) float32)``: one point per
        beam with a return (true range plus ``N(0, range_noise^2)``, along the beam), z = 0.
        Intensity: 50 walls, 70 furniture, 90 glass, 30 people.
    """
    T = np.asarray(T_map_base, dtype=float)
    R = T[:2, :2]
    origin = T[:2, 3] + R[:, 0] * cfg.x_offset
    ang = beam_angles(cfg)
    d_laser = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    d_map = d_laser @ R.T
    glass = plan.kinds == GLASS
    transparent = None
    if np.any(glass):
        e = plan.segments[glass, 1] - plan.segments[glass, 0]
        cos_incidence = np.abs(d_map[:, :1] * e[:, 1] - d_map[:, 1:] * e[:, 0]) / np.linalg.norm(e, axis=1)
        transparent = np.zeros((len(ang), len(plan.segments)), dtype=bool)
        transparent[:, glass] = cos_incidence < np.cos(np.deg2rad(cfg.glass_max_incidence_deg))
    ranges, ids = raycast_2d(origin, d_map, plan.segments, circles, cfg.max_range, transparent)
    keep = np.isfinite(ranges) & (ranges >= cfg.min_range) & (rng.random(len(ang)) >= cfg.dropout)
    noisy = ranges[keep] + rng.normal(0.0, cfg.range_noise, size=int(keep.sum()))
    points = np.zeros((len(noisy), 3), dtype=np.float32)
    points[:, :2] = d_laser[keep] * noisy[:, None] + [cfg.x_offset, 0.0]
    kind = np.concatenate([plan.kinds, np.full(0 if circles is None else len(circles), PERSON)])[ids[keep]]
    return points, _INTENSITY[kind]


@dataclass(frozen=True)
class WheelOdometryNoise:
    """Wheel-odometry error model of a differential-drive base (errors only while the wheels turn).

    Attributes:
        scale_bias: relative translation error (0.015: the wheels report 1.5 % too far).
        yaw_scale: relative yaw error, signed with the turn (effective wheel base off by this).
        turn_bias: yaw error per radian turned in either direction [rad/rad] (0.011: 0.5 deg/s
            at 0.8 rad/s); a turn in place of angle a is off by about ``(turn_bias +- yaw_scale) a``.
        yaw_rate_bias: constant yaw-rate error while moving [rad/s].
        translation_sigma: white noise per axis per square root of the distance [m/sqrt(m)].
        yaw_sigma_per_m, yaw_sigma_per_rad: white yaw noise [rad/sqrt(m)] and [rad/sqrt(rad)].
    """

    scale_bias: float = 0.015
    yaw_scale: float = 0.005
    turn_bias: float = 0.011
    yaw_rate_bias: float = 2e-4
    translation_sigma: float = 0.005
    yaw_sigma_per_m: float = 0.002
    yaw_sigma_per_rad: float = 0.005


def simulate_wheel_odometry(T_map_base: np.ndarray, dt: float, noise: WheelOdometryNoise,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate corrupted increments of a planar trajectory (z = 0, roll = pitch = 0).

    Args:
        T_map_base: (n, 4, 4) true poses sampled every ``dt`` [s].
        dt: sample period [s].
        noise: error model.
        rng: random generator.

    Returns:
        ``(T_odom_base (n, 4, 4), linear (n, 3) [m/s], angular (n, 3) [rad/s])``: odometry
        poses (the first the identity) and the body-frame twist the odometry reports (the
        corrupted increment over the previous period; the first sample repeats the second).
    """
    T = np.asarray(T_map_base, dtype=float)
    n = T.shape[0]
    yaw = np.unwrap(yaw_of(T))
    dp = np.einsum("kji,kj->ki", T[:-1, :3, :3], T[1:, :3, 3] - T[:-1, :3, 3])[:, :2]  # R_{k-1}^T dp
    step, dyaw = np.linalg.norm(dp, axis=1), np.diff(yaw)
    moving = (step > 1e-9) | (np.abs(dyaw) > 1e-9)
    dp_meas = (1.0 + noise.scale_bias) * dp + rng.normal(size=dp.shape) * noise.translation_sigma * np.sqrt(step)[:, None]
    yaw_sigma = np.sqrt(noise.yaw_sigma_per_m**2 * step + noise.yaw_sigma_per_rad**2 * np.abs(dyaw))
    dyaw_meas = ((1.0 + noise.yaw_scale) * dyaw + noise.turn_bias * np.abs(dyaw) + noise.yaw_rate_bias * dt * moving
                 + rng.normal(size=n - 1) * yaw_sigma)
    yaw_odom = np.concatenate([[0.0], np.cumsum(dyaw_meas)])
    R_odom = yaw_matrices(yaw_odom)
    p = np.concatenate([np.zeros((1, 2)), np.cumsum(np.einsum("kij,kj->ki", R_odom[:-1, :2, :2], dp_meas), axis=0)])
    out = np.zeros((n, 4, 4))
    out[:, :3, :3], out[:, :2, 3], out[:, 3, 3] = R_odom, p, 1.0
    linear = np.zeros((n, 3))
    linear[:, :2] = np.concatenate([dp_meas[:1], dp_meas]) / dt
    angular = np.zeros((n, 3))
    angular[:, 2] = np.concatenate([dyaw_meas[:1], dyaw_meas]) / dt
    return out, linear, angular
