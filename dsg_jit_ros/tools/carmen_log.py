"""Read a CARMEN text log (``.clf``, optionally ``.bz2``) into a ``LaserLog``.

The public 2D SLAM benchmark logs (Radish, the Freiburg logs of Kuemmerle et al.
2009 with their ``.relations`` ground truth) are CARMEN logs.  This reader lets the
benchmarks replay them exactly as the shipped ROS bags are replayed (one odometry
pose per scan, with the scan's stamp), without converting them to a bag first.

Only ``FLASER`` lines are read (front laser, with the robot's odometry pose at the
scan); every other message is ignored.  A line is
``FLASER n r_1 .. r_n x y theta odom_x odom_y odom_theta ipc_timestamp host logger_timestamp``:
ranges [m], laser pose and robot odometry pose (x, y [m], theta [rad]) in the
odometry frame, times [s].  Stamps are the ``ipc_timestamp`` (the time base of the
``.relations`` files).  Beams span 180 degrees from -90 degrees (the usual SICK
set-up of these logs): ``n`` odd -> step 180/(n-1) (both ends), ``n`` even -> 180/n.
Readings at or above the log's no-return code (``no_return``: by default the largest
reading in the log, e.g. 50.0 or 81.91, which such logs use for "no echo") or not
above 0 are dropped.  Points are moved from the laser into ``base_link`` with the
laser's offset, the robot pose^-1 laser pose of each line (zero on most logs).
"""

from __future__ import annotations

import bz2
import math
import os
from pathlib import Path

import numpy as np

from dsg_jit_ros.tools.log_reader import LaserLog

__all__ = ["read_carmen_log"]


def _open(path: Path):
    return bz2.open(path, "rt") if path.suffix == ".bz2" else open(path, encoding="ascii", errors="replace")


def _planar(x: float, y: float, theta: float) -> np.ndarray:
    """T (4x4) of a planar pose, from cos/sin directly: the ACES figures in README were
    measured with exactly these matrices (replays are chaotic in the last bit), so not
    ``geometry.poses.from_xyz_rpy``, whose scipy rotation rounds differently."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _parse(path: Path, max_scans: int | None) -> tuple[list[np.ndarray], list[tuple[float, ...]], list[float]]:
    ranges, poses, stamps = [], [], []
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.startswith("FLASER"):
                continue
            if max_scans is not None and len(stamps) >= max_scans:
                break
            words = line.split()
            try:
                n = int(words[1])
                if n < 1 or len(words) != n + 11:
                    raise ValueError(f"{len(words)} fields for {n} readings (expected {n + 11})")
                r = np.array(words[2:2 + n], dtype=np.float64)
                tail = [float(w) for w in words[2 + n:8 + n]]
                stamp = float(words[8 + n])
            except (IndexError, ValueError) as err:
                raise ValueError(f"{path}:{lineno}: malformed FLASER line ({err})") from None
            if not (np.all(np.isfinite(r)) and all(map(math.isfinite, tail)) and math.isfinite(stamp)):
                raise ValueError(f"{path}:{lineno}: non-finite value in a FLASER line")
            if stamps and stamp <= stamps[-1]:
                raise ValueError(f"{path}:{lineno}: stamp {stamp} s not after the previous scan's {stamps[-1]} s")
            ranges.append(r)
            poses.append(tuple(tail))
            stamps.append(stamp)
    if not stamps:
        raise ValueError(f"{path}: no FLASER lines (not a CARMEN laser log?)")
    return ranges, poses, stamps


def read_carmen_log(path: str | os.PathLike[str], max_scans: int | None = None,
                    no_return: float | None = None) -> LaserLog:
    """The scans and odometry of the CARMEN log ``path`` (see the module docstring), as
    ``read_laser_log`` returns a bag's: frames ``odom`` -> ``base_link``, clouds (N, 3)
    with z = 0 in ``base_link`` [m], one odometry message per scan at its stamp.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no FLASER line, a malformed or non-finite one, or stamps not increasing
            (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CARMEN log at {path}")
    ranges, poses, stamps = _parse(path, max_scans)
    if no_return is None:
        no_return = max(float(r.max()) for r in ranges)
    odom, clouds, order = [], [], []
    for k, (r, (lx, ly, lth, ox, oy, oth)) in enumerate(zip(ranges, poses)):
        n = len(r)
        step = math.pi / (n - 1) if n % 2 and n > 1 else math.pi / n
        angles = -0.5 * math.pi + step * np.arange(n)
        keep = (r > 0.0) & (r < no_return)
        pts = np.zeros((int(keep.sum()), 3))
        pts[:, 0] = r[keep] * np.cos(angles[keep])
        pts[:, 1] = r[keep] * np.sin(angles[keep])
        t_odom_base = _planar(ox, oy, oth)
        t_base_laser = np.linalg.solve(t_odom_base, _planar(lx, ly, lth))
        pts = pts @ t_base_laser[:3, :3].T + t_base_laser[:3, 3]
        pts[:, 2] = 0.0
        odom.append(t_odom_base)
        clouds.append(pts)
        order += [(0, k), (1, k)]  # the odometry of a scan first, as in the shipped bags
    t = np.asarray(stamps, dtype=np.float64)
    return LaserLog(odom_stamps=t, odom_poses=np.asarray(odom).reshape(-1, 4, 4), cloud_stamps=t.copy(),
                    clouds=tuple(clouds), order=np.asarray(order, dtype=np.int64).reshape(-1, 2),
                    odom_frame="odom", base_frame="base_link")
