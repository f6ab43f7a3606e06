"""Messages <-> arrays, in one place.

PointCloud2 -> (N, 3) float32 body-frame points, honouring ``point_step``,
``row_step``, field offsets and endianness; extra fields are ignored.  Anything
that cannot be read exactly (missing x/y/z, non-FLOAT32 coordinates, data
shorter than declared) raises ``ConversionError`` with the reason, for the node
to count and log.  Odometry -> (stamp s, T_parent_child 4x4).  The node's
outputs (path, odometry with covariance, TF, voxel markers) are built here too.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Transform, TransformStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from dsg_jit_ros.geometry.poses import QUAT_NORM_TOLERANCE, matrix_to_quat_xyzw, quat_xyzw_to_matrix


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
    data = np.frombuffer(msg.data, dtype=np.uint8)
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
        is_bigendian=False, point_step=12, row_step=12 * pts.shape[0],
        data=array.array("B", pts.tobytes()),  # ~80x faster to assign than bytes
        is_dense=bool(np.all(np.isfinite(pts))),
    )


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4; rejects non-finite values and non-unit quaternions."""
    q = np.array([pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z])
    t = np.array([pose.position.x, pose.position.y, pose.position.z])
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise ConversionError("non_finite_pose", f"position {t}, orientation {q}")
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > QUAT_NORM_TOLERANCE:
        raise ConversionError("bad_quaternion", f"orientation norm {norm:.6f}")
    out = np.eye(4)
    out[:3, :3] = quat_xyzw_to_matrix(np.r_[q[1:], q[:1]] / norm)
    out[:3, 3] = t
    return out


def matrix_to_pose(t: np.ndarray) -> Pose:
    """4x4 -> geometry_msgs/Pose (quaternion with w >= 0)."""
    qx, qy, qz, qw = matrix_to_quat_xyzw(np.asarray(t)[:3, :3])  # qw >= 0
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t[:3, 3])
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in (qw, qx, qy, qz))
    return pose


def odometry_to_matrix(msg: Odometry) -> tuple[float, np.ndarray]:
    """(stamp s, T_odom_body) of an Odometry message (frames: header / child_frame_id)."""
    return stamp_to_sec(msg.header.stamp), pose_to_matrix(msg.pose.pose)


def pose_stamped(t_frame_body: np.ndarray, frame_id: str, stamp_s: float) -> PoseStamped:
    """geometry_msgs/PoseStamped of ``T_frame_body`` (4x4) stamped ``stamp_s`` (s)."""
    return PoseStamped(header=Header(frame_id=frame_id, stamp=sec_to_stamp(stamp_s)), pose=matrix_to_pose(t_frame_body))


def path_msg(stamps: list[float], poses: list[np.ndarray], frame_id: str, stamp: Time) -> Path:
    """nav_msgs/Path of poses ``T_frame_body`` (4x4) with their own stamps (s), as
    objects (the node publishes ``path_cdr``'s bytes instead)."""
    path = Path(header=Header(frame_id=frame_id, stamp=stamp))
    path.poses = [pose_stamped(m, frame_id, t) for t, m in zip(stamps, poses)]
    return path


CDR_LITTLE_ENDIAN = b"\x00\x01\x00\x00"  # encapsulation header of a serialised ROS 2 message (XCDR1, LE)


def pose_rows(stamps: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, 2) int64 [sec, nanosec], (n, 7) float64 [x, y, z, qx, qy, qz, qw]) of stamps
    (s) and poses ``T_frame_body`` (n, 4, 4): a PoseStamped's numbers, as ``pose_stamped``
    computes them (nanoseconds rounded half to even, quaternion with w >= 0)."""
    t = np.asarray(stamps, dtype=np.float64).reshape(-1)
    m = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    ns = np.round(t * 1e9).astype(np.int64)
    times = np.stack([ns // 1_000_000_000, ns % 1_000_000_000], axis=1)
    return times, np.concatenate([m[:, :3, 3], matrix_to_quat_xyzw(m[:, :3, :3])], axis=1)


def _pose_stamped_dtype(offset: int, name_len: int) -> np.dtype:
    """CDR layout of one PoseStamped starting ``offset`` bytes into the payload: stamp
    (int32 sec, uint32 nanosec), frame_id (uint32 length with the NUL, bytes, NUL),
    padding to 8, then the pose's 7 float64 (position, orientation x y z w)."""
    pad = -(offset + 12 + name_len) % 8
    return np.dtype({"names": ["sec", "nanosec", "length", "name", "pose"],
                     "formats": ["<i4", "<u4", "<u4", ("u1", (name_len,)), ("<f8", (7,))],
                     "offsets": [0, 4, 8, 12, 12 + name_len + pad], "itemsize": 12 + name_len + pad + 56})


def path_cdr(times: np.ndarray, rows: np.ndarray, frame_id: str, stamp: Time) -> bytes:
    """The serialised nav_msgs/Path (little-endian CDR, with its encapsulation header) of
    ``pose_rows``' output, every pose in ``frame_id``, for ``Publisher.publish(bytes)``.

    Why: building and serialising one PoseStamped object per keyframe cost ~23 ms per
    1,000 keyframes at every keyframe; written with numpy it is a few copies.  The bytes
    have the length of ``rclpy.serialization.serialize_message(path_msg(...))`` and
    deserialise to that message (tested; padding bytes are zeros here, unspecified there)."""
    name = frame_id.encode("utf-8") + b"\0"
    n = len(times)
    head = bytearray(np.array([stamp.sec, stamp.nanosec, len(name)], dtype="<u4").tobytes() + name)
    head += b"\0" * (-len(head) % 4)
    head += np.uint32(n).astype("<u4").tobytes()
    parts = [CDR_LITTLE_ENDIAN, bytes(head)]
    offset = len(head)
    for lo, hi in ((0, min(n, 1)), (min(n, 1), n)):  # the first element may start 4 bytes off an 8-byte boundary
        if hi > lo:
            dtype = _pose_stamped_dtype(offset, len(name))
            out = np.zeros(hi - lo, dtype=dtype)
            out["sec"], out["nanosec"] = times[lo:hi, 0], times[lo:hi, 1]
            out["length"], out["name"] = len(name), np.frombuffer(name, dtype=np.uint8)
            out["pose"] = rows[lo:hi]
            parts.append(out.tobytes())
            offset += dtype.itemsize * (hi - lo)
    return b"".join(parts)


def rotate_covariance(cov_body: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """A [rho, phi] (body-frame) pose covariance expressed along the parent frame's
    axes, as ROS's (x, y, z, rot x, rot y, rot z) pose covariance expects."""
    r6 = np.zeros((6, 6))
    r6[:3, :3] = rotation
    r6[3:, 3:] = rotation
    return r6 @ cov_body @ r6.T


def odometry_msg(src: Odometry, frame_id: str, t_frame_body: np.ndarray, cov_body: np.ndarray | None) -> Odometry:
    """``src`` re-expressed in ``frame_id``: same stamp, child frame and twist (body
    frame), pose ``t_frame_body``, pose covariance from ``cov_body`` (or zeros)."""
    out = Odometry(header=Header(frame_id=frame_id, stamp=src.header.stamp), child_frame_id=src.child_frame_id)
    out.pose.pose = matrix_to_pose(t_frame_body)
    if cov_body is not None:
        out.pose.covariance = rotate_covariance(cov_body, t_frame_body[:3, :3]).reshape(-1).tolist()
    out.twist = src.twist
    return out


def transform_stamped(t_parent_child: np.ndarray, parent: str, child: str, stamp: Time) -> TransformStamped:
    """geometry_msgs/TransformStamped of ``T_parent_child``."""
    pose = matrix_to_pose(t_parent_child)
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = pose.position.x, pose.position.y, pose.position.z
    tf.rotation = pose.orientation
    return TransformStamped(header=Header(frame_id=parent, stamp=stamp), child_frame_id=child, transform=tf)


def height_colours(z: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA in [0, 1]: blue (lowest) -> green -> red (highest)."""
    z = np.asarray(z, dtype=np.float64)
    s = (z - z.min()) / max(float(np.ptp(z)), 1e-9) if z.size else z
    rgba = np.ones((z.size, 4))
    rgba[:, 0] = np.clip(2.0 * s - 1.0, 0.0, 1.0)
    rgba[:, 1] = 1.0 - np.abs(2.0 * s - 1.0)
    rgba[:, 2] = np.clip(1.0 - 2.0 * s, 0.0, 1.0)
    return rgba


def voxel_markers(centres: np.ndarray, size: float, frame_id: str, stamp: Time) -> MarkerArray:
    """One CUBE_LIST marker (ns "voxels", id 0) of voxel centres (m), coloured by height."""
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    m = Marker(header=Header(frame_id=frame_id, stamp=stamp), ns="voxels", id=0, type=Marker.CUBE_LIST,
               action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = float(size)
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in c]
    m.colors = [ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a)) for r, g, b, a in height_colours(c[:, 2])]
    return MarkerArray(markers=[m])


def loop_markers(positions: np.ndarray, pairs, frame_id: str, stamp: Time) -> MarkerArray:
    """The global graph's loop closures: one LINE_LIST marker (ns "loop_closures", id 0)
    with a segment from the older to the newer keyframe of each loop edge, at the
    keyframes' positions ``positions[i]`` (m, map frame) after the last global solve."""
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    m = Marker(header=Header(frame_id=frame_id, stamp=stamp), ns="loop_closures", id=0, type=Marker.LINE_LIST,
               action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = 0.05  # line width, m
    m.color = ColorRGBA(r=1.0, g=0.2, b=0.8, a=1.0)
    m.points = [Point(x=float(x), y=float(y), z=float(z)) for i, j in pairs for x, y, z in (p[i], p[j])]
    return MarkerArray(markers=[m])
