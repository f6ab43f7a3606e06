"""A synthetic office floor for a planar laser: walls as 2D line segments and a closed route.

- The floor plan (frame ``map``, metres, z up, the floor at ``z = 0``) is a ring
  corridor 2.4 m wide whose centre line is the rectangle ``[0, 60] x [0, 24]``,
  rooms on both sides of it (doors are gaps in their walls), furniture as boxes
  (four short segments each) and a glass front (a meeting room) that returns a
  laser beam only near normal incidence.  Two stretches of the corridor (the south
  one for x in [20, 50], the north one for x in [24, 58.8]) have no door or object
  on either wall: along them a scan pins down little in the along-corridor direction.
- The route (``OfficeRoute``) starts at rest at ``(4, 0)`` facing +x, drives the
  ring counter-clockwise, visits an office (south side: in, turns in place, out) and a
  meeting room (north side: once around its table) and stops where it started,
  facing the same way.  Straight stretches use a trapezoidal speed profile, corridor
  corners are circular arcs at constant speed, and at "spin" corners the robot stops
  and turns in place with a trapezoidal yaw-rate profile.  Poses are ``T_map_base``
  (4x4, z = 0, roll = pitch = 0), exact for every time.

Nothing here is random: the layout and the route are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_matrices

__all__ = ["FURNITURE", "GLASS", "WALL", "FloorPlan", "OfficeRoute", "office_floor_plan"]

WALL, FURNITURE, GLASS = 0, 1, 2

# name: ((x0, y0, x1, y1), {side: [(door centre along the wall, width)]}, glass sides); metres
_ROOMS = {
    "office R1": ((-1.2, -7.2, 10.0, -1.2), {"N": [(5.0, 1.0)]}, ""),
    "office R2": ((10.0, -7.2, 20.0, -1.2), {"N": [(15.0, 1.2)]}, ""),
    "archive": ((20.0, -7.2, 50.0, -1.2), {}, ""),
    "office R3": ((50.0, -7.2, 61.2, -1.2), {"N": [(55.0, 1.0)]}, ""),
    "office N1": ((-1.2, 25.2, 12.0, 31.2), {"S": [(6.0, 1.0)]}, ""),
    "meeting N2": ((12.0, 25.2, 24.0, 31.2), {"S": [(18.0, 1.2)]}, "S"),
    "storage": ((24.0, 25.2, 61.2, 31.2), {}, ""),
    "lab": ((1.2, 1.2, 20.0, 22.8), {"W": [(8.0, 1.2), (16.0, 1.2)], "S": [(6.0, 1.2)], "N": [(8.0, 1.2)]}, ""),
    "services": ((20.0, 1.2, 40.0, 22.8), {}, ""),
    "office C3": ((40.0, 1.2, 58.8, 22.8), {"E": [(6.0, 1.0), (18.0, 1.0)], "S": [(54.0, 1.0)]}, ""),
}
# the two ends of the ring corridor (west and east walls of the building)
_OUTER_WALLS = [((-1.2, -1.2), (-1.2, 25.2)), ((61.2, -1.2), (61.2, 25.2))]
# axis-aligned boxes (x0, y0, x1, y1): desks, cabinets, a table and chairs, benches, a pillar, a bin
_BOXES = [
    (0.0, -7.0, 3.0, -6.2), (4.0, -7.0, 7.0, -6.2), (9.2, -5.0, 9.9, -2.5),                      # R1
    (11.0, -7.0, 14.0, -6.3), (16.0, -7.0, 19.0, -6.3), (19.3, -6.0, 19.9, -3.6),                 # R2
    (10.1, -5.2, 10.6, -2.6), (13.4, -2.0, 13.9, -1.5),
    (51.0, -7.0, 54.0, -6.2), (56.0, -7.0, 59.0, -6.2), (60.4, -5.0, 61.0, -2.0),                 # R3
    (0.0, 30.4, 3.0, 31.0), (4.0, 30.4, 7.0, 31.0), (9.0, 27.0, 10.5, 29.0),                      # N1
    (15.0, 27.6, 21.0, 29.0), (16.0, 27.05, 16.5, 27.45), (19.5, 27.05, 20.0, 27.45),             # N2
    (16.0, 29.15, 16.5, 29.55), (19.5, 29.15, 20.0, 29.55), (23.5, 27.0, 23.9, 29.5),
    (4.0, 5.0, 16.0, 6.0), (4.0, 11.0, 16.0, 12.0), (4.0, 17.0, 16.0, 18.0),                      # lab
    (10.0, 14.0, 10.4, 14.4), (18.8, 3.0, 19.6, 8.0),
    (44.0, 4.0, 52.0, 5.0), (44.0, 12.0, 52.0, 13.0), (44.0, 18.0, 52.0, 19.0),                   # C3
    (-1.2, 11.0, -0.7, 12.5), (60.8, 10.0, 61.2, 10.6), (8.0, -1.2, 8.4, -0.85),                  # corridor
]
# straight lanes people walk back and forth on, >= 0.7 m from the route
_LANES = [((3.0, 0.7), (57.0, 0.7)), ((59.3, 3.0), (59.3, 21.0)), ((57.0, 23.3), (3.0, 23.3)),
          ((11.0, -5.5), (18.8, -5.5))]


@dataclass(frozen=True, eq=False)
class FloorPlan:
    """A planar scene in ``map`` [m].

    Attributes:
        segments: (M, 2, 2) line segments ``[[x0, y0], [x1, y1]]``.
        kinds: (M,) int, ``WALL``, ``FURNITURE`` or ``GLASS`` per segment.
        person_lanes: (P, 2, 2) straight lanes ``[start, end]`` on which people may walk.
        rooms: name -> ``(x0, y0, x1, y1)`` room rectangles (for plots and checks).
    """

    segments: np.ndarray
    kinds: np.ndarray
    person_lanes: np.ndarray
    rooms: dict


def _wall(a, b, doors=(), extend: float = 0.0) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Axis-aligned wall from ``a`` to ``b`` [m] minus door gaps ``(centre, width)``, lengthened by
    ``extend`` at both ends (not at the doors); the centre is the coordinate along the wall
    (x for a horizontal wall, y for a vertical one)."""
    axis = 0 if a[1] == b[1] else 1
    cuts = [min(a[axis], b[axis]) - extend]
    for centre, width in sorted(doors):
        cuts += [centre - width / 2, centre + width / 2]
    cuts.append(max(a[axis], b[axis]) + extend)
    out = []
    for lo, hi in zip(cuts[::2], cuts[1::2]):
        if hi - lo > 1e-9:
            p, q = list(a), list(a)
            p[axis], q[axis] = lo, hi
            out.append((tuple(p), tuple(q)))
    return out


def _box_sides(x0: float, y0: float, x1: float, y1: float) -> list:
    """The four sides of an axis-aligned rectangle [m]."""
    return [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))]


def office_floor_plan(wall_thickness: float = 0.12) -> FloorPlan:
    """The office floor: ten rooms around a ring corridor, 31 pieces of furniture, four people lanes.

    Opaque walls are ``wall_thickness`` [m] thick (a rectangle centred on the wall line,
    closing the corners; door jambs show their depth); glass is a single pane.  Walls
    shared by two rooms appear once.
    """
    segs, kinds = [], []
    half = wall_thickness / 2
    walls = [(a, b, doors.get(side, ()), side in glass)
             for (x0, y0, x1, y1), doors, glass in _ROOMS.values()
             for side, (a, b) in {"S": ((x0, y0), (x1, y0)), "E": ((x1, y0), (x1, y1)),
                                  "N": ((x0, y1), (x1, y1)), "W": ((x0, y0), (x0, y1))}.items()]
    walls += [(a, b, (), False) for a, b in _OUTER_WALLS]
    seen = set()
    for a, b, doors, is_glass in walls:
        if (a, b) in seen:  # a partition between two rooms
            continue
        seen.add((a, b))
        for p, q in _wall(a, b, doors, 0.0 if is_glass or half == 0 else half):
            if is_glass or half == 0:
                segs.append((p, q))
                kinds.append(GLASS if is_glass else WALL)
            else:
                dx, dy = (0.0, half) if p[1] == q[1] else (half, 0.0)  # horizontal: thick in y
                segs += _box_sides(min(p[0], q[0]) - dx, min(p[1], q[1]) - dy, max(p[0], q[0]) + dx, max(p[1], q[1]) + dy)
                kinds += [WALL] * 4
    for box in _BOXES:
        segs += _box_sides(*box)
        kinds += [FURNITURE] * 4
    return FloorPlan(segments=np.asarray(segs, dtype=float), kinds=np.asarray(kinds, dtype=int),
                     person_lanes=np.asarray(_LANES, dtype=float), rooms={k: v[0] for k, v in _ROOMS.items()})


# (x, y [m], corner, pause [s], speed limit on the stretch arriving here [m/s], 0 = default);
# corner: "arc" = smooth turn at constant speed, "spin" = stop, pause, turn in place
_ROUTE = [
    (4.0, 0.0, "spin", 2.0, 0),       # start at rest facing +x
    (15.0, 0.0, "spin", 1.0, 0),      # office R2: stop at its door, turn right
    (15.0, -4.2, "spin", 0.0, 0.5),
    (18.0, -4.2, "spin", 0.0, 0.5),   # about-turns in the room
    (12.0, -4.2, "spin", 0.0, 0.5),
    (15.0, -4.2, "spin", 0.0, 0.5),
    (15.0, 0.0, "spin", 0.0, 0.5),    # back in the corridor, turn right
    (60.0, 0.0, "arc", 0.0, 0),
    (60.0, 12.0, "spin", 4.0, 0),     # a stop without a turn (waiting for someone)
    (60.0, 24.0, "arc", 0.0, 0),
    (18.0, 24.0, "spin", 2.0, 0),     # meeting room N2: stop at its door, turn right
    (18.0, 26.4, "spin", 0.0, 0.5),
    (22.8, 26.4, "arc", 0.0, 0.5),    # once around the table
    (22.8, 30.2, "arc", 0.0, 0.5),
    (13.2, 30.2, "arc", 0.0, 0.5),
    (13.2, 26.4, "arc", 0.0, 0.5),
    (18.0, 26.4, "spin", 0.0, 0.5),
    (18.0, 24.0, "spin", 0.0, 0.5),
    (0.0, 24.0, "arc", 0.0, 0),
    (0.0, 0.0, "arc", 0.0, 0),
    (4.0, 0.0, "spin", 3.0, 0),       # back at the start, at rest facing +x
]


def _profile(distance: float, v0: float, v1: float, vmax: float, accel: float):
    """Trapezoidal profile covering ``distance`` from speed ``v0`` to ``v1`` (peak <= ``vmax``,
    acceleration ``accel``); the same for metres or radians.  Returns ``(duration, f)`` with
    ``f(tau) -> (s, ds/dtau)`` for ``tau`` in ``[0, duration]``."""
    vp = min(vmax, np.sqrt(accel * distance + 0.5 * (v0**2 + v1**2)))
    if vp < max(v0, v1) - 1e-12:
        raise ValueError(f"stretch of {distance:.2f} too short to go from {v0} to {v1} at {accel}")
    t1, t3 = (vp - v0) / accel, (vp - v1) / accel
    d1, d3 = (vp**2 - v0**2) / (2 * accel), (vp**2 - v1**2) / (2 * accel)
    t2 = (distance - d1 - d3) / vp

    def f(tau):
        u = tau - t1 - t2
        s = np.where(tau < t1, v0 * tau + 0.5 * accel * tau**2,
                     np.where(u < 0, d1 + vp * (tau - t1), d1 + vp * (t2 + u) - 0.5 * accel * u**2))
        ds = np.where(tau < t1, v0 + accel * tau, np.where(u < 0, vp, vp - accel * u))
        return s, ds

    return t1 + t2 + t3, f


@dataclass(frozen=True)
class OfficeRoute:
    """The closed route of ``office_floor_plan`` as a function of time.

    Attributes:
        speed: cruise speed on straight stretches [m/s].
        accel: linear acceleration and deceleration [m/s^2].
        arc_speed, arc_radius: speed [m/s] and radius [m] of the smooth corners.
        spin_rate, spin_accel: peak yaw rate [rad/s] and yaw acceleration [rad/s^2] of turns in place.
    """

    speed: float = 0.8
    accel: float = 0.4
    arc_speed: float = 0.5
    arc_radius: float = 0.8
    spin_rate: float = 0.8
    spin_accel: float = 1.0

    @cached_property
    def pieces(self) -> list[tuple]:
        """``(t0, duration, kind, x0, y0, yaw0, sign, profile f)`` per piece; kind is
        ``line`` (profile in metres), ``arc`` (metres, curvature ``sign / arc_radius``),
        ``spin`` (radians, yaw rate of sign ``sign``) or ``pause``."""
        pts = np.array([w[:2] for w in _ROUTE], dtype=float)
        heading = np.arctan2(*(np.diff(pts, axis=0)[:, ::-1].T))  # of each stretch
        turn = np.concatenate([[0.0], (np.diff(heading) + np.pi) % (2 * np.pi) - np.pi, [0.0]])  # at each vertex
        r = self.arc_radius
        trim = np.array([r * np.tan(abs(a) / 2) if w[2] == "arc" else 0.0 for w, a in zip(_ROUTE, turn)])
        out, t = [], 0.0

        def add(duration, kind, x, y, yaw, sign, f):
            nonlocal t
            out.append((t, duration, kind, x, y, yaw, sign, f))
            t += duration

        def still(tau):
            return np.zeros_like(tau), np.zeros_like(tau)

        for k in range(len(_ROUTE)):
            x, y, corner, pause, _ = _ROUTE[k]
            yaw_in = heading[k - 1] if k else heading[0]
            if corner == "arc":
                sign, angle = np.sign(turn[k]), abs(turn[k])
                dur, f = _profile(angle * r, self.arc_speed, self.arc_speed, self.arc_speed, self.accel)
                add(dur, "arc", x - trim[k] * np.cos(yaw_in), y - trim[k] * np.sin(yaw_in), yaw_in, sign, f)
            else:
                if pause > 0:
                    add(pause, "pause", x, y, yaw_in, 0.0, still)
                if abs(turn[k]) > 1e-9:
                    dur, f = _profile(abs(turn[k]), 0.0, 0.0, self.spin_rate, self.spin_accel)
                    add(dur, "spin", x, y, yaw_in, np.sign(turn[k]), f)
            if k + 1 < len(_ROUTE):
                nxt = _ROUTE[k + 1]
                v0 = self.arc_speed if corner == "arc" else 0.0
                v1 = self.arc_speed if nxt[2] == "arc" else 0.0
                length = np.hypot(*(pts[k + 1] - pts[k])) - trim[k] - trim[k + 1]
                dur, f = _profile(length, v0, v1, nxt[4] or self.speed, self.accel)
                add(dur, "line", x + trim[k] * np.cos(heading[k]), y + trim[k] * np.sin(heading[k]), heading[k], 1.0, f)
        return out

    @property
    def duration(self) -> float:
        """Time from the start to the end of the final stop [s]."""
        t0, dur = self.pieces[-1][:2]
        return t0 + dur

    @property
    def length(self) -> float:
        """Path length of the route [m] (lines and arcs)."""
        return float(sum(p[7](np.array(p[1]))[0] for p in self.pieces if p[2] in ("line", "arc")))

    def _state(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        """x, y, yaw [m, rad] in ``map`` and body-frame v [m/s], w [rad/s] at times ``t`` [s]."""
        t = np.clip(np.atleast_1d(np.asarray(t, dtype=float)), 0.0, self.duration)
        x, y, yaw, v, w = (np.zeros_like(t) for _ in range(5))
        starts = np.array([p[0] for p in self.pieces])
        index = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        for i in np.unique(index):
            t0, dur, kind, x0, y0, yaw0, sign, f = self.pieces[i]
            m = index == i
            s, ds = f(np.minimum(t[m] - t0, dur))
            if kind == "line":
                x[m], y[m], yaw[m], v[m] = x0 + s * np.cos(yaw0), y0 + s * np.sin(yaw0), yaw0, ds
            elif kind == "arc":
                k = sign / self.arc_radius
                x[m] = x0 + (np.sin(yaw0 + k * s) - np.sin(yaw0)) / k
                y[m] = y0 - (np.cos(yaw0 + k * s) - np.cos(yaw0)) / k
                yaw[m], v[m], w[m] = yaw0 + k * s, ds, k * ds
            else:  # spin or pause
                x[m], y[m], yaw[m], w[m] = x0, y0, yaw0 + sign * s, sign * ds
        return x, y, yaw, v, w

    def poses(self, t: np.ndarray) -> np.ndarray:
        """(n, 4, 4) ``T_map_base`` at times ``t`` [s] since the start (held after the end)."""
        x, y, yaw, _, _ = self._state(t)
        out = np.zeros(x.shape + (4, 4))
        out[:, :3, :3] = yaw_matrices(yaw)
        out[:, 0, 3], out[:, 1, 3], out[:, 3, 3] = x, y, 1.0
        return out

    def twists(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame ``(linear (n, 3) [m/s], angular (n, 3) [rad/s])`` at times ``t`` [s]."""
        _, _, _, v, w = self._state(t)
        zero = np.zeros_like(v)
        return np.stack([v, zero, zero], axis=1), np.stack([zero, zero, w], axis=1)
