"""The pipeline's intake: odometry and clouds checked, clouds matched to odometry,
keyframes selected and queued for the solver.

``InputQueue`` holds the odometry buffer, the clouds waiting for odometry that
covers their stamps, the keyframe selector and the keyframes ready to solve (each
with its interpolated ``T_odom_body``).  Every input it does not use is counted
under a reason key (through the ``count`` callable it is given, the pipeline's
``dropped`` counters) and described in a ``Rejection`` for the caller to log:
nothing is dropped silently.  It has no lock: ``SlamPipeline`` calls it under its
own (ingestion in one thread, solving in another).

Frames: ``T_odom_body`` from odometry; clouds arrive in the sensor frame and are
queued in the body frame (``PipelineConfig.t_body_sensor``).  Stamps in seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dsg_jit_ros.mapping.keyframes import KeyframeSelector, relative_motion
from dsg_jit_ros.mapping.odometry_buffer import OdometryBuffer
from dsg_jit_ros.mapping.pipeline_config import PipelineConfig


@dataclass(frozen=True)
class Rejection:
    """An input that was not used: a reason key (counted) and a sentence (logged)."""

    reason: str
    detail: str


@dataclass
class PendingCloud:
    """A checked cloud waiting for odometry (or for the solver, once selected)."""

    stamp: float
    points: np.ndarray  # body frame
    received: float  # time.perf_counter() when it was taken in (for the latency)


class InputQueue:
    """Odometry buffer + clouds waiting for it + keyframe selection + keyframes to solve."""

    def __init__(self, cfg: PipelineConfig, count: Callable[[str, int], None]):
        """``count(reason, n)`` adds to the dropped-input counters (thread-safe)."""
        self.cfg = cfg.inputs
        self._t_body_sensor = cfg.body_sensor()
        self._count = count
        self._odom = OdometryBuffer(self.cfg.odom_buffer)
        self._selector = KeyframeSelector(cfg.keyframe)
        self._pending: deque[PendingCloud] = deque()  # waiting for odometry
        # keyframes to solve (and, with keyframe.track_between, clouds between them to
        # register): (cloud, T_odom_body, is_keyframe), in stamp order
        self.ready: deque[tuple[PendingCloud, np.ndarray, bool]] = deque()
        self._last_cloud_stamp: float | None = None
        self._last_odom: tuple[float, np.ndarray] | None = None
        self.selected_keyframes = 0  # ever put in ``ready``
        self.skipped_clouds = 0  # valid clouds that were not keyframes (by design, not dropped)

    def _reject(self, reason: str, detail: str) -> Rejection:
        self._count(reason, 1)
        return Rejection(reason, detail)

    # ---- odometry -----------------------------------------------------------
    def add_odometry(self, stamp: float, t_odom_body: np.ndarray) -> Rejection | None:
        """Buffer one odometry pose; returns a Rejection when it is not used (not finite,
        repeated or older stamp, a jump faster than ``max_linear_speed`` /
        ``max_angular_speed``)."""
        t = np.asarray(t_odom_body, dtype=np.float64)
        if t.shape != (4, 4) or not np.all(np.isfinite(t)) or not np.isfinite(stamp):
            return self._reject("non_finite_pose", f"odometry at {stamp} is not a finite pose")
        if self._last_odom is not None:
            last_stamp, last_t = self._last_odom
            if stamp == last_stamp:
                return self._reject("odom_duplicate_stamp", f"odometry stamp {stamp:.9f} repeats the previous one")
            if stamp < last_stamp:
                return self._reject("odom_out_of_order",
                                    f"odometry stamp {stamp:.9f} is older than the newest {last_stamp:.9f}")
            dist, angle = relative_motion(last_t, t)
            dt = stamp - last_stamp
            if dist > self.cfg.max_linear_speed * dt or angle > self.cfg.max_angular_speed * dt:
                return self._reject(
                    "odom_jump", f"odometry jumped {dist:.3f} m / {angle:.3f} rad in {dt:.3f} s at {stamp:.3f} "
                    "(above max_linear_speed / max_angular_speed); call ~/reset if the odometry was re-initialised")
        try:
            self._odom.add(stamp, t)
        except ValueError as err:
            return self._reject("bad_pose", str(err))
        self._last_odom = (float(stamp), t)
        return None

    # ---- clouds -------------------------------------------------------------
    def add_cloud(self, stamp: float, points_sensor: np.ndarray, received: float) -> list[Rejection]:
        """Check one cloud (sensor frame, (N, 3)), queue it in the body frame and select
        what odometry covers; the oldest waiting clouds beyond ``max_pending_clouds``
        are dropped."""
        rejections: list[Rejection] = []
        pts = np.asarray(points_sensor, dtype=np.float64)
        if not np.isfinite(stamp):
            return [self._reject("bad_stamp", f"cloud stamp {stamp} is not finite")]
        if self._last_cloud_stamp is not None and stamp <= self._last_cloud_stamp:
            kind = "cloud_duplicate_stamp" if stamp == self._last_cloud_stamp else "cloud_out_of_order"
            return [self._reject(kind, f"cloud stamp {stamp:.9f} is not after the previous {self._last_cloud_stamp:.9f}")]
        if pts.ndim != 2 or pts.shape[1] != 3:
            return [self._reject("malformed", f"cloud points have shape {pts.shape}, expected (N, 3)")]
        self._last_cloud_stamp = float(stamp)
        if pts.shape[0] == 0:
            return [self._reject("empty_cloud", f"cloud at {stamp:.3f} has no points")]
        finite = np.all(np.isfinite(pts), axis=1)
        n_bad = int((~finite).sum())
        if n_bad:
            self._count("points_non_finite", n_bad)
            rejections.append(Rejection("points_non_finite", f"{n_bad} of {len(pts)} points at {stamp:.3f} are NaN/inf"))
            pts = pts[finite]
        if pts.shape[0] < self.cfg.min_points:
            rejections.append(self._reject(
                "too_few_points", f"cloud at {stamp:.3f} has {pts.shape[0]} valid points (< min_points)"))
            return rejections
        t_bs = self._t_body_sensor
        self._pending.append(PendingCloud(float(stamp), pts @ t_bs[:3, :3].T + t_bs[:3, 3], received))
        rejections += self.select_ready()
        while len(self._pending) > self.cfg.max_pending_clouds:
            old = self._pending.popleft()
            rejections.append(self._reject(
                "cloud_queue_full", f"cloud at {old.stamp:.3f} dropped: more than max_pending_clouds = "
                f"{self.cfg.max_pending_clouds} clouds wait for odometry covering their stamps"))
        return rejections

    def select_ready(self) -> list[Rejection]:
        """Move waiting clouds that odometry now covers to ``ready`` (or skip them when
        they are not keyframes).  Clouds beyond the newest odometry wait."""
        rejections: list[Rejection] = []
        span = self._odom.span
        while self._pending and span is not None and self._pending[0].stamp <= span[1]:
            cloud = self._pending.popleft()
            if cloud.stamp < span[0]:
                rejections.append(self._reject(
                    "cloud_before_odometry", f"cloud at {cloud.stamp:.3f} is older than the buffered odometry ({span[0]:.3f})"))
                continue
            t_odom_body = self._odom.interpolate(cloud.stamp)
            if not self._selector.is_keyframe(t_odom_body):
                self.skipped_clouds += 1
                if self._selector.cfg.track_between:
                    self.ready.append((cloud, t_odom_body, False))
                continue
            self._selector.accept(t_odom_body)
            self.selected_keyframes += 1
            self.ready.append((cloud, t_odom_body, True))
        return rejections
