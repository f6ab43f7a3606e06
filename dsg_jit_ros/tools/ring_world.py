"""A small ring corridor for loop-closure tests and benchmarks (planar laser, wheel odometry).

The corridor (frame ``map``, metres, z up) is 2.4 m wide around the centre-line
rectangle ``[0, length] x [0, width]``; pillars and alcoves, placed irregularly on
both walls, keep every stretch registrable.  The robot drives the centre line
counter-clockwise at constant speed from ``(start_x, 0)`` facing +x, corners as
quarter circles, for ``laps`` laps: after one lap it is back where it started,
having seen nothing of the start for a lap's time, which is what a loop closure
has to find.  ``simulate_ring`` returns ground truth, drifting wheel odometry
(``planar_laser.simulate_wheel_odometry``) and laser scans (``planar_scan``).
Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_matrices
from dsg_jit_ros.tools.office_world import FURNITURE, WALL, FloorPlan
from dsg_jit_ros.tools.planar_laser import (PlanarLaserConfig, WheelOdometryNoise, planar_scan,
                                            simulate_wheel_odometry)


@dataclass(frozen=True)
class RingConfig:
    """Corridor and drive (m, m/s, s, Hz)."""

    length: float = 24.0
    width: float = 10.0
    corridor: float = 2.4
    corner_radius: float = 1.0
    start_x: float = 4.0
    speed: float = 1.0
    laps: float = 1.3
    rate_hz: float = 10.0
    seed: int = 0
    alcove_spacing: float = 6.0  # about one alcove per this many metres of wall
    pillars: int = 4  # per long wall (half as many per short wall)
    bare_north: bool = False  # no alcove or pillar along the north stretch: a corridor that drifts


def ring_floor_plan(cfg: RingConfig = RingConfig()) -> FloorPlan:
    """Outer and inner walls of the ring with pillars (0.3 m boxes) and alcoves (0.5 m deep)."""
    h = cfg.corridor / 2
    x0, y0, x1, y1 = -h, -h, cfg.length + h, cfg.width + h  # outer walls
    i0, j0, i1, j1 = h, h, cfg.length - h, cfg.width - h  # inner block
    rng = np.random.default_rng(1234)  # the layout is fixed, whatever the run's seed
    segs: list = []
    kinds: list = []

    def wall(a, b, features, bare=False):
        """A straight wall from a to b with alcoves (gaps backed 0.5 m behind) at ``features``."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        features = [] if bare else features
        d = (b - a) / np.linalg.norm(b - a)
        out = np.array([-d[1], d[0]])  # left of a->b: away from the corridor (walls run clockwise)
        cuts = [0.0]
        for c in sorted(features):
            cuts += [c - 0.4, c + 0.4]
        cuts.append(float(np.linalg.norm(b - a)))
        for lo, hi in zip(cuts[::2], cuts[1::2]):
            segs.append((a + lo * d, a + hi * d))
            kinds.append(WALL)
        for c in features:
            p, q = a + (c - 0.4) * d, a + (c + 0.4) * d
            segs.extend([(p, p + 0.5 * out), (p + 0.5 * out, q + 0.5 * out), (q + 0.5 * out, q)])
            kinds.extend([WALL] * 3)

    def alcoves(n_len):
        return sorted(rng.uniform(1.0, n_len - 1.0, size=max(1, int(n_len // cfg.alcove_spacing))).tolist())

    # outer walls clockwise (alcoves outward), inner walls counter-clockwise (alcoves into the block)
    for a, b in (((x0, y0), (x0, y1)), ((x0, y1), (x1, y1)), ((x1, y1), (x1, y0)), ((x1, y0), (x0, y0))):
        wall(a, b, alcoves(float(np.hypot(b[0] - a[0], b[1] - a[1]))), bare=cfg.bare_north and a[1] == b[1] == y1)
    for a, b in (((i0, j0), (i1, j0)), ((i1, j0), (i1, j1)), ((i1, j1), (i0, j1)), ((i0, j1), (i0, j0))):
        wall(a, b, alcoves(float(np.hypot(b[0] - a[0], b[1] - a[1]))), bare=cfg.bare_north and a[1] == b[1] == j1)
    # pillars against the walls, irregularly spaced
    for x in rng.uniform(1.0, cfg.length - 1.0, size=cfg.pillars):
        for y, side in ((y0, 1), (y1, -1)):
            if cfg.bare_north and y == y1:
                continue
            segs.extend(_box(x, y + side * 0.15, 0.15))
            kinds.extend([FURNITURE] * 4)
    for y in rng.uniform(1.0, cfg.width - 1.0, size=max(1, cfg.pillars // 2)):
        for x, side in ((x0, 1), (x1, -1)):
            segs.extend(_box(x + side * 0.15, y, 0.15))
            kinds.extend([FURNITURE] * 4)
    return FloorPlan(segments=np.array(segs, dtype=np.float64).reshape(-1, 2, 2),
                     kinds=np.array(kinds, dtype=np.int64), person_lanes=np.zeros((0, 2, 2)), rooms={})


def _box(cx: float, cy: float, h: float) -> list:
    c = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    return [(np.array(c[k]), np.array(c[(k + 1) % 4])) for k in range(4)]


def ring_poses(cfg: RingConfig, t: np.ndarray) -> np.ndarray:
    """(n, 4, 4) true ``T_map_base`` at times ``t`` (s) along the rounded centre line."""
    r = cfg.corner_radius
    straights = [cfg.length - 2 * r, cfg.width - 2 * r] * 2
    arc = 0.5 * np.pi * r
    lap = sum(straights) + 4 * arc
    # arc length from the start of the first straight (at (r, 0), heading +x)
    s = (np.asarray(t, dtype=np.float64) * cfg.speed + (cfg.start_x - r)) % lap
    corners = [(cfg.length - r, r), (cfg.length - r, cfg.width - r), (r, cfg.width - r), (r, r)]
    xy = np.zeros((len(s), 2))
    yaw = np.zeros(len(s))
    offset = 0.0
    for k in range(4):
        heading = 0.5 * np.pi * k
        d = np.array([np.cos(heading), np.sin(heading)])
        cx, cy = corners[(k - 1) % 4]
        begin = np.array([cx, cy]) + r * np.array([np.sin(heading), -np.cos(heading)])
        on = (s >= offset) & (s < offset + straights[k])
        xy[on] = begin + (s[on] - offset)[:, None] * d
        yaw[on] = heading
        offset += straights[k]
        on = (s >= offset) & (s < offset + arc)
        phi = (s[on] - offset) / r
        centre = np.array(corners[k])
        a0 = heading - 0.5 * np.pi
        xy[on] = centre + r * np.stack([np.cos(a0 + phi), np.sin(a0 + phi)], axis=1)
        yaw[on] = heading + phi
        offset += arc
    out = np.zeros((len(s), 4, 4))
    out[:, :3, :3], out[:, :2, 3], out[:, 3, 3] = yaw_matrices(yaw), xy, 1.0
    return out


def simulate_ring(cfg: RingConfig = RingConfig(), noise: WheelOdometryNoise = WheelOdometryNoise(),
                  laser: PlanarLaserConfig = PlanarLaserConfig(max_range=20.0)):
    """(stamps (n,) s, truth (n, 4, 4) T_map_base, odometry (n, 4, 4) T_odom_base, scans: list of
    (m, 3) float32 base_link points) at ``rate_hz`` for ``laps`` laps."""
    lap = 2 * (cfg.length + cfg.width) - (8 - 2 * np.pi) * cfg.corner_radius
    n = int(cfg.laps * lap / cfg.speed * cfg.rate_hz) + 1
    stamps = np.arange(n) / cfg.rate_hz
    truth = ring_poses(cfg, stamps)
    rng = np.random.default_rng(cfg.seed)
    odom, _, _ = simulate_wheel_odometry(truth, 1.0 / cfg.rate_hz, noise, rng)
    plan = ring_floor_plan(cfg)
    scans = [planar_scan(plan, t, laser, rng)[0] for t in truth]
    return stamps, truth, odom, scans
