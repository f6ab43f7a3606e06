"""A synthetic courtyard, a closed-loop trajectory, a 3D LiDAR and drifting wheel odometry.

Everything is analytic so that ray casting is exact and vectorised:

- the world (frame ``map``, metres, z up) is the ground plane ``z = 0``, the
  outer walls of a 30 m x 20 m courtyard (the inner faces of its rectangle), a
  few crates as axis-aligned boxes and vertical cylinders (pillars);
- the trajectory is a smooth, convex, rounded-rectangle-like loop
  ``x = A cos(phi) - C cos(3 phi)``, ``y = B sin(phi) + C sin(3 phi)`` travelled at
  constant speed, yaw along the direction of travel, zero roll and pitch, and a
  small periodic wobble of z around the sensor height; the body frame
  ``base_link`` is the LiDAR frame (x forward, y left, z up);
- the LiDAR casts a fixed fan of rays from the body origin (one origin per scan:
  motion distortion is ignored) and returns body-frame points with gaussian
  range noise; rays without a return within the maximum range are dropped;
- wheel odometry integrates the ground-truth body-frame increments corrupted by a
  scale bias, a yaw-rate bias and white noise; it starts at the identity
  (``T_odom_base(0) = I``, so ``T_map_odom = T_map_base(0)`` at the start).

Random numbers come only from the ``numpy.random.Generator`` passed in, so a
seed fixes every output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_matrices, yaw_of

__all__ = [
    "LidarConfig",
    "LoopTrajectory",
    "OdometryNoise",
    "World",
    "default_world",
    "lidar_directions",
    "raycast",
    "scan",
    "simulate_odometry",
]

_EPS = 1e-9  # [m] a hit closer than this to the ray origin is ignored


@dataclass(frozen=True, eq=False)
class World:
    """Analytic scene in the ``map`` frame [m].

    Attributes:
        courtyard: (2, 2) ``[[x_min, y_min], [x_max, y_max]]`` inner faces of the
            outer walls, which stand on the ground up to ``wall_height``.
        wall_height: height of the outer walls [m].
        boxes: (K, 2, 3) axis-aligned boxes inside the courtyard, ``[min corner, max corner]``.
        box_reflectivity: (K,) reflectivity in [0, 1] of each box.
        cylinders: (C, 5) vertical cylinders ``cx, cy, radius, z_min, z_max``.
        cylinder_reflectivity: (C,) reflectivity of each cylinder.
        ground_z: height of the ground plane.
        ground_reflectivity, wall_reflectivity: reflectivity of the ground and the walls.

    Primitive ids (as returned by ``raycast``): 0 the ground, 1 the outer walls,
    ``2..K+1`` the boxes, ``K+2..K+C+1`` the cylinders, -1 no return.
    """

    courtyard: np.ndarray
    wall_height: float
    boxes: np.ndarray
    box_reflectivity: np.ndarray
    cylinders: np.ndarray
    cylinder_reflectivity: np.ndarray
    ground_z: float = 0.0
    ground_reflectivity: float = 0.15
    wall_reflectivity: float = 0.5

    @property
    def reflectivity(self) -> np.ndarray:
        """(2 + K + C,) reflectivity indexed by primitive id."""
        return np.concatenate([[self.ground_reflectivity, self.wall_reflectivity], self.box_reflectivity,
                               self.cylinder_reflectivity])


def _box(center_xy: tuple[float, float], size_xyz: tuple[float, float, float]) -> np.ndarray:
    """A (2, 3) box standing on the ground, centred at ``center_xy`` [m]."""
    cx, cy = center_xy
    sx, sy, sz = size_xyz
    return np.array([[cx - sx / 2, cy - sy / 2, 0.0], [cx + sx / 2, cy + sy / 2, sz]])


def default_world(half_x: float = 15.0, half_y: float = 10.0, wall_height: float = 4.0) -> World:
    """The demo courtyard: interior ``|x| <= half_x``, ``|y| <= half_y`` [m] inside walls
    ``wall_height`` high, five crates and five pillars, all more than 1 m from
    ``LoopTrajectory()``."""
    crates = [
        _box((0.0, 0.0), (4.0, 2.0, 1.5)),
        _box((-6.0, 1.5), (1.5, 1.5, 2.5)),
        _box((5.5, -1.5), (2.0, 1.0, 1.0)),
        _box((0.0, 8.0), (3.0, 1.2, 2.0)),
        _box((12.5, -6.0), (1.5, 3.0, 3.0)),
    ]
    cylinders = np.array([
        [6.0, 2.0, 0.4, 0.0, 3.5],
        [-3.0, -2.5, 0.3, 0.0, 3.0],
        [12.5, 5.0, 0.5, 0.0, 4.0],
        [-12.5, 3.0, 0.5, 0.0, 2.5],
        [-5.0, 7.5, 0.3, 0.0, 3.5],
    ])
    return World(
        courtyard=np.array([[-half_x, -half_y], [half_x, half_y]]), wall_height=wall_height,
        boxes=np.asarray(crates), box_reflectivity=np.full(len(crates), 0.7),
        cylinders=cylinders, cylinder_reflectivity=np.full(len(cylinders), 0.9),
    )


def raycast(world: World, origin: np.ndarray, dirs: np.ndarray, max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """First hits of rays from one origin.

    Args:
        world: the scene.
        origin: (3,) ray origin in ``map`` [m]; must lie inside the courtyard, above
            the ground and outside every box and cylinder.
        dirs: (N, 3) unit ray directions in ``map``.
        max_range: hits farther than this [m] count as no return.

    Returns:
        ``(ranges (N,) [m], ids (N,) int)``: distance to the first hit along each
        ray (``inf`` without a return) and the hit primitive's id (see ``World``).
    """
    o = np.asarray(origin, dtype=float).reshape(3)
    d = np.asarray(dirs, dtype=float).reshape(-1, 3)
    n = d.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d  # +-inf for axis-parallel rays

        # ground plane, seen from above
        t_ground = (world.ground_z - o[2]) * inv[:, 2]
        candidates = [np.where(t_ground > _EPS, t_ground, np.inf)]

        # outer walls: leave the courtyard's x-y rectangle below the wall top
        t_exit = np.full(n, np.inf)
        for axis in range(2):
            bound = np.where(d[:, axis] > 0, world.courtyard[1, axis], world.courtyard[0, axis])
            t_axis = (bound - o[axis]) * inv[:, axis]
            t_exit = np.minimum(t_exit, np.where(d[:, axis] != 0, t_axis, np.inf))
        z_exit = o[2] + t_exit * d[:, 2]
        candidates.append(np.where((z_exit <= world.wall_height) & (t_exit > _EPS), t_exit, np.inf))

        # boxes: slab method over (N, K), one axis at a time; fmin/fmax skip the NaN of 0 * inf
        if len(world.boxes):
            lo, hi = world.boxes[:, 0, :] - o, world.boxes[:, 1, :] - o  # (K, 3)
            t_near = t_far = None
            for axis in range(3):
                t1 = lo[None, :, axis] * inv[:, axis:axis + 1]
                t2 = hi[None, :, axis] * inv[:, axis:axis + 1]
                near, far = np.fmin(t1, t2), np.fmax(t1, t2)
                t_near = near if t_near is None else np.fmax(t_near, near)
                t_far = far if t_far is None else np.fmin(t_far, far)
            candidates.append(np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf))

        # vertical cylinders: side wall (quadratic in x, y) and the caps, (N, C)
        if len(world.cylinders):
            cx, cy, r, z0, z1 = (world.cylinders[:, i] for i in range(5))
            ox, oy = o[0] - cx, o[1] - cy  # (C,)
            dx, dy, dz = d[:, 0:1], d[:, 1:2], d[:, 2:3]  # (N, 1)
            a = dx**2 + dy**2
            b = 2.0 * (ox * dx + oy * dy)
            c = ox**2 + oy**2 - r**2
            disc = b**2 - 4.0 * a * c
            t_side = (-b - np.sqrt(np.where(disc >= 0, disc, np.nan))) / (2.0 * a)
            z_side = o[2] + t_side * dz
            side_ok = (disc >= 0) & (a > 0) & (t_side > _EPS) & (z_side >= z0) & (z_side <= z1)
            t_cyl = np.where(side_ok, t_side, np.inf)
            # a cap can be the first hit only when the origin is beyond its plane
            for zc, seen in ((z0, o[2] < z0), (z1, o[2] > z1)):
                if not np.any(seen):
                    continue
                t_cap = (zc[seen] - o[2]) * inv[:, 2:3]
                rx, ry = ox[seen] + t_cap * dx, oy[seen] + t_cap * dy
                cap_ok = (t_cap > _EPS) & (rx**2 + ry**2 <= r[seen] ** 2)
                t_cyl[:, seen] = np.fmin(t_cyl[:, seen], np.where(cap_ok, t_cap, np.inf))
            candidates.append(t_cyl)

    all_t = np.concatenate([c.reshape(n, -1) for c in candidates], axis=1)  # (N, 2 + K + C)
    ids = np.argmin(all_t, axis=1)
    ranges = np.take_along_axis(all_t, ids[:, None], axis=1)[:, 0]
    ok = ranges <= max_range
    return np.where(ok, ranges, np.inf), np.where(ok, ids, -1)


@dataclass(frozen=True)
class LidarConfig:
    """A spinning multi-beam LiDAR (defaults: a 16-beam unit at 1 degree azimuth steps).

    Attributes:
        n_beams: number of elevation beams, evenly spaced.
        elevation_min_deg, elevation_max_deg: beam elevations [degrees].
        azimuth_steps: rays per beam over 360 degrees.
        min_range, max_range: returns outside ``[min_range, max_range]`` [m] are dropped.
        range_noise: standard deviation of the gaussian range noise [m].
        rate_hz: scans per second.
    """

    n_beams: int = 16
    elevation_min_deg: float = -15.0
    elevation_max_deg: float = 15.0
    azimuth_steps: int = 360
    min_range: float = 0.5
    max_range: float = 30.0
    range_noise: float = 0.02
    rate_hz: float = 10.0


def lidar_directions(cfg: LidarConfig) -> np.ndarray:
    """(n_beams * azimuth_steps, 3) unit ray directions in the body frame, beam-major."""
    elev = np.deg2rad(np.linspace(cfg.elevation_min_deg, cfg.elevation_max_deg, cfg.n_beams))
    azim = np.arange(cfg.azimuth_steps) * (2.0 * np.pi / cfg.azimuth_steps)
    el, az = np.meshgrid(elev, azim, indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)


def scan(world: World, T_world_body: np.ndarray, cfg: LidarConfig, rng: np.random.Generator,
         dirs_body: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One LiDAR scan from pose ``T_world_body`` (4x4, metres).

    Returns:
        ``(points (n, 3) float32 in the body frame [m], intensity (n,) float32)``
        for the rays with a return in ``[min_range, max_range]``; the measured
        range is the true range plus ``N(0, range_noise^2)``, along the ray.
        Intensity is 100 x the hit primitive's reflectivity.
    """
    d_body = lidar_directions(cfg) if dirs_body is None else dirs_body
    T = np.asarray(T_world_body, dtype=float)
    ranges, ids = raycast(world, T[:3, 3], d_body @ T[:3, :3].T, cfg.max_range)
    keep = np.isfinite(ranges) & (ranges >= cfg.min_range)
    noisy = ranges[keep] + rng.normal(0.0, cfg.range_noise, size=int(keep.sum()))
    points = (d_body[keep] * noisy[:, None]).astype(np.float32)
    intensity = (100.0 * world.reflectivity[ids[keep]]).astype(np.float32)
    return points, intensity


@dataclass(frozen=True)
class LoopTrajectory:
    """Closed loop ``x = A cos(phi) - C cos(3 phi)``, ``y = B sin(phi) + C sin(3 phi)`` in ``map``.

    Travelled at constant speed (``length / loop_period_s``, about 0.88 m/s with the
    defaults), counter-clockwise from ``(A - C, 0)``, yaw along the velocity, roll
    and pitch zero, ``z = height + z_amplitude sin(2 pi z_cycles s / length)``
    (``s`` arc length).  Periodic in time with period ``loop_period_s`` [s].
    """

    a: float = 10.6
    b: float = 5.6
    c: float = 0.6
    loop_period_s: float = 60.0
    height: float = 1.0
    z_amplitude: float = 0.03
    z_cycles: int = 3
    table_size: int = 20001

    def _xy(self, phi: np.ndarray) -> tuple[np.ndarray, ...]:
        """Position, first and second derivatives with respect to phi."""
        a, b, c = self.a, self.b, self.c
        cos1, sin1, cos3, sin3 = np.cos(phi), np.sin(phi), np.cos(3 * phi), np.sin(3 * phi)
        return (a * cos1 - c * cos3, b * sin1 + c * sin3,
                -a * sin1 + 3 * c * sin3, b * cos1 + 3 * c * cos3,
                -a * cos1 + 9 * c * cos3, -b * sin1 - 9 * c * sin3)

    @cached_property
    def _arc_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(phi grid, cumulative arc length) over one loop, trapezoidal on |dp/dphi|."""
        phi = np.linspace(0.0, 2.0 * np.pi, self.table_size)
        _, _, dx, dy, _, _ = self._xy(phi)
        speed = np.hypot(dx, dy)
        s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(phi))])
        return phi, s

    @property
    def length(self) -> float:
        """Loop length [m]."""
        return float(self._arc_table[1][-1])

    @property
    def speed(self) -> float:
        """Constant speed along the loop [m/s]."""
        return self.length / self.loop_period_s

    def _phi(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        phi_grid, s_grid = self._arc_table
        s = np.mod(np.asarray(t, dtype=float) * self.speed, self.length)
        return np.interp(s, s_grid, phi_grid), s

    def poses(self, t: np.ndarray) -> np.ndarray:
        """(n, 4, 4) ``T_map_base`` at times ``t`` [s] (t = 0 is the loop start)."""
        phi, s = self._phi(np.atleast_1d(t))
        x, y, dx, dy, _, _ = self._xy(phi)
        out = np.zeros(phi.shape + (4, 4))
        out[:, :3, :3] = yaw_matrices(np.arctan2(dy, dx))
        out[:, 0, 3], out[:, 1, 3] = x, y
        out[:, 2, 3] = self.height + self.z_amplitude * np.sin(2.0 * np.pi * self.z_cycles * s / self.length)
        out[:, 3, 3] = 1.0
        return out

    def twists(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame ``(linear (n, 3) [m/s], angular (n, 3) [rad/s])`` at times ``t`` [s]."""
        phi, s = self._phi(np.atleast_1d(t))
        _, _, dx, dy, ddx, ddy = self._xy(phi)
        v = self.speed
        curvature = (dx * ddy - dy * ddx) / np.hypot(dx, dy) ** 3
        k = 2.0 * np.pi * self.z_cycles / self.length
        vz = self.z_amplitude * k * v * np.cos(k * s)
        linear = np.stack([np.full_like(phi, v), np.zeros_like(phi), vz], axis=1)
        angular = np.stack([np.zeros_like(phi), np.zeros_like(phi), curvature * v], axis=1)
        return linear, angular


@dataclass(frozen=True)
class OdometryNoise:
    """Wheel-odometry error model, applied to each body-frame increment.

    Attributes:
        scale_bias: relative translation error (0.02 = the wheels report 2 % too far).
        yaw_rate_bias: constant yaw-rate error [rad/s].
        translation_sigma: white noise per metre travelled, per axis [m/sqrt(m)].
        yaw_sigma: white yaw noise per second [rad/sqrt(s)].
    """

    scale_bias: float = 0.02
    yaw_rate_bias: float = 0.01
    translation_sigma: float = 0.01
    yaw_sigma: float = 0.002


def simulate_odometry(T_world_body: np.ndarray, dt: float, noise: OdometryNoise,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate corrupted increments of a zero-roll, zero-pitch trajectory.

    Args:
        T_world_body: (n, 4, 4) true poses sampled every ``dt`` [s].
        dt: sample period [s].
        noise: error model.
        rng: random generator.

    Returns:
        ``(T_odom_body (n, 4, 4), linear (n, 3) [m/s], angular (n, 3) [rad/s])``:
        the odometry poses (first one the identity) and the body-frame twist
        the odometry reports (the corrupted increment over the previous period;
        the first sample repeats the second).
    """
    T = np.asarray(T_world_body, dtype=float)
    n = T.shape[0]
    yaw = np.unwrap(yaw_of(T))
    dp_body = np.einsum("kji,kj->ki", T[:-1, :3, :3], T[1:, :3, 3] - T[:-1, :3, 3])  # R_{k-1}^T dp
    step = np.linalg.norm(dp_body, axis=1, keepdims=True)
    dp_meas = (1.0 + noise.scale_bias) * dp_body + rng.normal(size=dp_body.shape) * noise.translation_sigma * np.sqrt(step)
    dyaw_meas = np.diff(yaw) + noise.yaw_rate_bias * dt + rng.normal(size=n - 1) * noise.yaw_sigma * np.sqrt(dt)
    yaw_odom = np.concatenate([[0.0], np.cumsum(dyaw_meas)])
    R_odom = yaw_matrices(yaw_odom)
    p_odom = np.concatenate([np.zeros((1, 3)), np.cumsum(np.einsum("kij,kj->ki", R_odom[:-1], dp_meas), axis=0)])
    out = np.zeros((n, 4, 4))
    out[:, :3, :3], out[:, :3, 3], out[:, 3, 3] = R_odom, p_odom, 1.0
    linear = np.concatenate([dp_meas[:1], dp_meas]) / dt
    angular = np.zeros((n, 3))
    angular[:, 2] = np.concatenate([dyaw_meas[:1], dyaw_meas]) / dt
    return out, linear, angular

