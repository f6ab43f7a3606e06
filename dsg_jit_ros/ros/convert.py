"""Messages <-> arrays, in one place.

PointCloud2 -> (N, 3) float32 body-frame points, honouring ``point_step``,
``row_step``, field offsets and endianness; extra fields are ignored.  Anything
that cannot be read exactly (missing x/y/z, non-FLOAT32 coordinates, data
shorter than declared) raises ``ConversionError`` with the reason, for the node
to count and log.  Odometry -> (stamp s, T_parent_child 4x4).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose
from nav_msgs.msg import Odometry
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from transforms3d.quaternions import mat2quat, quat2mat


class ConversionError(ValueError):
    """A message that cannot be converted; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def stamp_to_sec(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def sec_to_stamp(t: float) -> Time:
    """Seconds -> builtin_interfaces/Time (nanoseconds rounded)."""
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def pointcloud2_to_xyz(msg: PointCloud2) -> np.ndarray:
    """(width * height, 3) float32 x/y/z of a PointCloud2 (non-finite points kept)."""
    fields = {f.name: f for f in msg.fields}
    missing = [c for c in "xyz" if c not in fields]
    if missing:
        raise ConversionError("missing_xyz", f"cloud has no field(s) {missing}; fields: {sorted(fields)}")
    for c in "xyz":
        f = fields[c]
        if f.datatype != PointField.FLOAT32 or f.count != 1:
            raise ConversionError("non_float32_xyz", f"field {c} has datatype {f.datatype} count {f.count}")
        if f.offset + 4 > msg.point_step:
            raise ConversionError("malformed", f"field {c} at offset {f.offset} exceeds point_step {msg.point_step}")
    n = msg.width * msg.height
    if n == 0:
        return np.zeros((0, 3), dtype=np.float32)
    if msg.row_step < msg.width * msg.point_step:
        raise ConversionError("malformed", f"row_step {msg.row_step} < width {msg.width} * point_step {msg.point_step}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size < msg.row_step * (msg.height - 1) + msg.width * msg.point_step:
        raise ConversionError("malformed", f"data has {data.size} bytes, fewer than the {n} points declared")
    rows = [data[r * msg.row_step: r * msg.row_step + msg.width * msg.point_step] for r in range(msg.height)]
    packed = np.concatenate(rows).reshape(n, msg.point_step)
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    cols = [packed[:, fields[c].offset: fields[c].offset + 4].copy().view(dtype)[:, 0] for c in "xyz"]
    return np.stack(cols, axis=1).astype(np.float32)


def xyz_to_pointcloud2(points: np.ndarray, frame_id: str, stamp: Time) -> PointCloud2:
    """Dense little-endian PointCloud2 with float32 x, y, z (point_step 12)."""
    pts = np.ascontiguousarray(np.asarray(points, dtype="<f4").reshape(-1, 3))
    fields = [PointField(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, c in enumerate("xyz")]
    return PointCloud2(
        header=Header(frame_id=frame_id, stamp=stamp), height=1, width=pts.shape[0], fields=fields,
        is_bigendian=False, point_step=12, row_step=12 * pts.shape[0], data=pts.tobytes(), is_dense=bool(np.all(np.isfinite(pts))),
    )


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4; rejects non-finite values and non-unit quaternions."""
    q = np.array([pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z])
    t = np.array([pose.position.x, pose.position.y, pose.position.z])
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise ConversionError("non_finite_pose", f"position {t}, orientation {q}")
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > 1e-3:
        raise ConversionError("bad_quaternion", f"orientation norm {norm:.6f}")
    out = np.eye(4)
    out[:3, :3] = quat2mat(q / norm)
    out[:3, 3] = t
    return out


def matrix_to_pose(t: np.ndarray) -> Pose:
    """4x4 -> geometry_msgs/Pose (quaternion with w >= 0)."""
    q = mat2quat(np.asarray(t)[:3, :3])
    q = q if q[0] >= 0 else -q
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t[:3, 3])
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in q)
    return pose


def odometry_to_matrix(msg: Odometry) -> tuple[float, np.ndarray]:
    """(stamp s, T_odom_body) of an Odometry message (frames: header / child_frame_id)."""
    return stamp_to_sec(msg.header.stamp), pose_to_matrix(msg.pose.pose)
