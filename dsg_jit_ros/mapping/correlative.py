"""Correlative scan matching in the plane: a coarse global search for loop closures.

After a long loop the drift can put the current keyframe metres away from the
place it revisits, too far for point-to-plane registration (it associates points
to the voxels they fall in, so it converges from within a voxel or two).  This
module searches every planar pose of a scan within a window around the predicted
one: the target's points are rasterised into a likelihood grid (``exp(-d^2 /
2 sigma^2)`` of the distance ``d`` to the nearest target point, ``sigma`` = the grid
resolution), and for each candidate yaw the scan's score at every translation of
the window is one cross-correlation of that grid with the rotated scan's
occupancy image (FFT).  The best pose seeds the fine registration, which decides.

Frames: scan points in the scan's body frame, target points and poses in the
target's frame; metres, radians; only x, y and yaw are searched (planar mode).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_matrices, yaw_of


@dataclass(frozen=True)
class CorrelativeResult:
    """The best pose found and how well the scan fits there."""

    t_target_scan: np.ndarray  # (4, 4) best pose of the scan in the target's frame
    score: float  # mean likelihood of the scan points at that pose, in [0, 1]
    runner_up: float  # best score (any yaw) more than 1 m and two cells from the best translation
    # (k, 2) offsets (m, target frame) of those far translations from the best one, and
    # (k,) their best scores over yaw: where the look-alikes lie (``runner_up_across``)
    far_offsets: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    far_scores: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)

    def runner_up_across(self, direction_xy: np.ndarray, tolerance: float) -> float:
        """The best far score off the line through the best pose along ``direction_xy``
        (target frame; farther than ``tolerance`` metres from it): along a corridor every
        position scores alike, and a partial loop leaves that position free anyway."""
        d = np.asarray(direction_xy, dtype=np.float64)
        d = d / max(float(np.linalg.norm(d)), 1e-12)
        off_line = np.abs(self.far_offsets @ np.array([-d[1], d[0]])) > tolerance
        return float(self.far_scores[off_line].max()) if off_line.any() else 0.0


def _planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = yaw_matrices(yaw)
    t[:2, 3] = x, y
    return t


def correlative_match_2d(scan_xy: np.ndarray, target_xy: np.ndarray, t_pred: np.ndarray, radius: float,
                         yaw_range: float, resolution: float) -> CorrelativeResult:
    """Exhaustive search of the scan's planar pose (see the module doc).

    Args:
        scan_xy: (N, 2) scan points, scan body frame (m).
        target_xy: (M, 2) target points, target frame (m).
        t_pred: (4, 4) predicted pose of the scan in the target frame.
        radius: translations within ``radius`` (m, per axis) of the prediction are searched.
        yaw_range: yaws within ``yaw_range`` (rad) of the prediction's are searched, in steps
            that move the farthest scan point by about half a cell.
        resolution: grid cell size and likelihood width (m).
    """
    # imported here, not with the module: scipy.signal costs ~0.4 s of the node's start-up
    # and only loop closure needs it (it is imported in the background at warm-up)
    from scipy import ndimage, signal

    scan = np.asarray(scan_xy, dtype=np.float64).reshape(-1, 2)
    target = np.asarray(target_xy, dtype=np.float64).reshape(-1, 2)
    if not len(scan) or not len(target):
        raise ValueError("correlative matching needs scan and target points")
    r = float(resolution)
    yaw0 = yaw_of(t_pred)
    reach = float(np.linalg.norm(scan, axis=1).max())
    step = 0.5 * r / max(reach, r)
    n_yaw = int(np.ceil(yaw_range / step))
    yaws = yaw0 + step * np.arange(-n_yaw, n_yaw + 1)
    centre = t_pred[:2, 3]
    n_t = int(np.ceil(radius / r))
    # the grid holds every position a scan point can take in the search, plus a margin
    lo = np.minimum(target.min(axis=0), centre - n_t * r - reach) - 3 * r
    hi = np.maximum(target.max(axis=0), centre + n_t * r + reach) + 3 * r
    shape = tuple(np.ceil((hi - lo) / r).astype(int) + 1)
    occupied = np.zeros(shape, dtype=bool)
    cells = np.floor((target - lo) / r + 0.5).astype(int)
    occupied[cells[:, 0], cells[:, 1]] = True
    distance = ndimage.distance_transform_edt(~occupied) * r
    likelihood = np.exp(-0.5 * (distance / r) ** 2)
    start = centre - n_t * r  # translation of the window's first cell
    scores = np.empty((len(yaws), 2 * n_t + 1, 2 * n_t + 1))
    for k, yaw in enumerate(yaws):
        c, s = np.cos(yaw), np.sin(yaw)
        q = scan @ np.array([[c, s], [-s, c]]) + start  # rotated, at the window's first translation
        u = np.floor((q - lo) / r + 0.5).astype(int)
        umin = u.min(axis=0)
        image = np.zeros(tuple(u.max(axis=0) - umin + 1))
        np.add.at(image, (u[:, 0] - umin[0], u[:, 1] - umin[1]), 1.0)
        corr = signal.correlate(likelihood, image, mode="valid", method="fft")
        scores[k] = corr[umin[0]:umin[0] + 2 * n_t + 1, umin[1]:umin[1] + 2 * n_t + 1]
    scores /= len(scan)
    k, a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
    best = float(scores[k, a, b])
    # ambiguity: the best score at translations away from the peak (any yaw)
    ii, jj = np.meshgrid(np.arange(2 * n_t + 1), np.arange(2 * n_t + 1), indexing="ij")
    far = np.maximum(abs(ii - a), abs(jj - b)) > max(2, int(np.ceil(1.0 / r)))
    far_scores = scores[:, far].max(axis=0) if far.any() else np.zeros(0)
    runner_up = float(far_scores.max()) if far.any() else 0.0
    far_offsets = r * np.stack([ii[far] - a, jj[far] - b], axis=1).astype(np.float64)
    x, y = start + r * np.array([a, b])
    return CorrelativeResult(_planar_pose(x, y, float(yaws[k])), best, runner_up, far_offsets, far_scores)
