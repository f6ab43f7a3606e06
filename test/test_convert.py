"""Message <-> array conversions: padded point_step with extra fields, organised
clouds with row padding, big-endian data, round trips, and every malformed case."""

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import PointCloud2, PointField
from transforms3d.axangles import axangle2mat

from dsg_jit_ros.ros.convert import (
    ConversionError,
    matrix_to_pose,
    odometry_to_matrix,
    pointcloud2_to_xyz,
    pose_to_matrix,
    sec_to_stamp,
    stamp_to_sec,
    xyz_to_pointcloud2,
)

RNG = np.random.default_rng(5)


def padded_cloud(points, big_endian=False, height=1, row_pad=0):
    """x, y, z at offsets 0/4/8, then intensity (f32) at 16 and ring (u16) at 20, point_step 32."""
    e = ">" if big_endian else "<"
    dt = np.dtype({"names": ["x", "y", "z", "intensity", "ring"],
                   "formats": [e + "f4"] * 4 + [e + "u2"], "offsets": [0, 4, 8, 16, 20], "itemsize": 32})
    rec = np.zeros(points.shape[0], dtype=dt)
    rec["x"], rec["y"], rec["z"] = points.T
    rec["intensity"], rec["ring"] = 7.0, 3
    width = points.shape[0] // height
    rows = [rec[r * width:(r + 1) * width].tobytes() + b"\0" * row_pad for r in range(height)]
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="intensity", offset=16, datatype=PointField.FLOAT32, count=1),
              PointField(name="ring", offset=20, datatype=PointField.UINT16, count=1)]
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian, point_step=32,
                       row_step=32 * width + row_pad, data=b"".join(rows), is_dense=True)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("height,row_pad", [(1, 0), (4, 8)])
def test_padded_cloud_with_extra_fields(big_endian, height, row_pad):
    pts = RNG.normal(size=(40, 3)).astype(np.float32)
    out = pointcloud2_to_xyz(padded_cloud(pts, big_endian, height, row_pad))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts)


def test_round_trip_and_nan_points_kept():
    pts = RNG.normal(size=(25, 3)).astype(np.float32)
    pts[3] = np.nan
    msg = xyz_to_pointcloud2(pts, "base_link", sec_to_stamp(12.5))
    assert msg.header.frame_id == "base_link" and not msg.is_dense
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts)
    empty = xyz_to_pointcloud2(np.zeros((0, 3)), "base_link", sec_to_stamp(0.0))
    assert pointcloud2_to_xyz(empty).shape == (0, 3)


def test_malformed_clouds_raise_with_reason():
    msg = padded_cloud(RNG.normal(size=(10, 3)).astype(np.float32))
    no_z = padded_cloud(RNG.normal(size=(10, 3)).astype(np.float32))
    no_z.fields = [f for f in no_z.fields if f.name != "z"]
    with pytest.raises(ConversionError) as err:
        pointcloud2_to_xyz(no_z)
    assert err.value.reason == "missing_xyz"
    f64 = padded_cloud(RNG.normal(size=(10, 3)).astype(np.float32))
    f64.fields[0].datatype = PointField.FLOAT64
    with pytest.raises(ConversionError) as err:
        pointcloud2_to_xyz(f64)
    assert err.value.reason == "non_float32_xyz"
    short = padded_cloud(RNG.normal(size=(10, 3)).astype(np.float32))
    short.data = bytes(short.data)[:-40]
    with pytest.raises(ConversionError) as err:
        pointcloud2_to_xyz(short)
    assert err.value.reason == "malformed"
    msg.row_step = 8
    with pytest.raises(ConversionError, match="row_step"):
        pointcloud2_to_xyz(msg)


def test_odometry_and_pose_conversions():
    t = np.eye(4)
    t[:3, :3] = axangle2mat([0.2, -0.4, 0.9], 2.5)
    t[:3, 3] = [1.0, -2.0, 0.5]
    odom = Odometry()
    odom.header.stamp = sec_to_stamp(1234.000000123)
    odom.pose.pose = matrix_to_pose(t)
    stamp, back = odometry_to_matrix(odom)
    assert stamp == pytest.approx(1234.000000123, abs=1e-9)
    assert stamp_to_sec(sec_to_stamp(stamp)) == pytest.approx(stamp, abs=1e-9)
    np.testing.assert_allclose(back, t, atol=1e-12)
    bad = matrix_to_pose(t)
    bad.orientation.w *= 2.0
    with pytest.raises(ConversionError) as err:
        pose_to_matrix(bad)
    assert err.value.reason == "bad_quaternion"
    bad = matrix_to_pose(t)
    bad.position.x = float("nan")
    with pytest.raises(ConversionError) as err:
        pose_to_matrix(bad)
    assert err.value.reason == "non_finite_pose"
