"""The SLAM node in-process, over DDS: a test node publishes odometry and clouds
of a simulated loop and bad inputs of every kind, and checks what the node
publishes (path, odometry with covariance, TF, markers, latched map, status) and
its services."""

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2, PointField
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from dsg_jit_ros.io.tum import read_tum
from dsg_jit_ros.ros import convert
from dsg_jit_ros.ros.slam_node import SlamNode
from dsg_jit_ros_msgs.msg import SlamStatus
from dsg_jit_ros_msgs.srv import SaveMap
from ros_helpers import SMALL_WINDOW, cloud_msg, odom_msg, spin_until
from test_window import ate, simulate
from tf2_msgs.msg import TFMessage

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
N = 12


class Harness:
    """The node under test plus a test node with publishers and recorders."""

    def __init__(self, ctx, save_dir):
        params = [Parameter(k, value=v) for k, v in SMALL_WINDOW.items()]
        params.append(Parameter("output.save_directory", value=str(save_dir)))
        self.node = SlamNode(context=ctx, parameter_overrides=params)
        self.io = rclpy.create_node("node_test_io", context=ctx)
        self.pub_odom = self.io.create_publisher(Odometry, "odom", RELIABLE)
        self.pub_points = self.io.create_publisher(PointCloud2, "points", RELIABLE)
        self.got = {k: [] for k in ("path", "odometry", "voxels", "status", "tf")}
        for key, typ, topic in (("path", Path, "/dsg_jit_slam/path"), ("odometry", Odometry, "/dsg_jit_slam/odometry"),
                                ("voxels", MarkerArray, "/dsg_jit_slam/voxels"),
                                ("status", SlamStatus, "/dsg_jit_slam/status"), ("tf", TFMessage, "/tf")):
            self.io.create_subscription(typ, topic, self.got[key].append, RELIABLE)
        self.save = self.io.create_client(SaveMap, "/dsg_jit_slam/save_map")
        self.reset = self.io.create_client(Trigger, "/dsg_jit_slam/reset")
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        spin_until(self.executor, lambda: self.pub_odom.get_subscription_count() > 0
                   and self.pub_points.get_subscription_count() > 0
                   and all(self.io.count_publishers(t) > 0 for t in ("/dsg_jit_slam/status", "/tf")),
                   20, "the node's endpoints to match")

    def send(self, msg, pub):
        pub.publish(msg)

    def statuses(self, n, timeout=60):
        spin_until(self.executor, lambda: len(self.got["status"]) >= n, timeout, f"{n} status messages")
        return self.got["status"]

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(request)
        spin_until(self.executor, future.done, 30, "a service response")
        return future.result()


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    h = Harness(ctx, tmp_path_factory.mktemp("save"))
    yield h
    h.executor.shutdown()
    h.node.destroy_node()
    h.io.destroy_node()
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="module")
def loop():
    return simulate(N, np.random.default_rng(5))


def test_node_maps_a_loop_and_publishes_everything(harness, loop):
    truth, odom, clouds = loop
    h = harness
    for k in range(N):
        for j in range(4):  # odometry at 4 Hz up to the cloud's stamp (interpolated poses between keyframes)
            if k == 0 and j < 3:
                continue
            s = j / 4
            t = odom[k] if j == 3 else _blend(odom[k - 1], odom[k], (j + 1) / 4)
            h.send(odom_msg(k - 1 + (j + 1) / 4, t), h.pub_odom)
        h.send(cloud_msg(float(k), clouds[k]), h.pub_points)
        h.statuses(k + 1)  # one status per keyframe (every cloud here is a keyframe)
    status = h.got["status"][-1]
    assert status.keyframes == N and status.compilations_after_warmup == 0
    assert status.window_size == 5 and status.active_voxels > 0 and status.factors > 0
    assert status.final_cost <= status.initial_cost and status.latency_ms > 0
    assert list(status.dropped_reasons) == ["points_out_of_range"] or not status.dropped_reasons
    # the worker refreshes the covariance after publishing a keyframe, under its solve lock:
    # wait for it, so the next odometry message carries the last keyframe's covariance
    spin_until(h.executor, lambda: not h.node._solve_lock.locked(), 20, "the last covariance refresh")
    h.send(odom_msg(N - 1 + 0.05, odom[-1]), h.pub_odom)  # one more, after the last correction
    spin_until(h.executor, lambda: len(h.got["path"]) >= N and len(h.got["odometry"]) >= 4 * N - 2, 20, "outputs")

    # the path is the pipeline's optimised trajectory, and beats odometry against ground truth
    path = h.got["path"][-1]
    assert path.header.frame_id == "map" and len(path.poses) == N
    est = [convert.pose_to_matrix(p.pose) for p in path.poses]
    np.testing.assert_allclose(est, [m for _, m in h.node.pipeline.window.keyframe_poses], atol=1e-9)
    assert ate(est, truth) < 0.5 * ate(odom, truth)
    assert [convert.stamp_to_sec(p.header.stamp) for p in path.poses] == pytest.approx(range(N))

    # ~/odometry: every odometry message, in the map frame, corrected, with the window's covariance
    out = h.got["odometry"][-1]
    assert out.header.frame_id == "map" and out.child_frame_id == "base_link"
    assert out.twist.twist.linear.x == 1.25
    t_map_odom = h.node.pipeline.t_map_odom
    np.testing.assert_allclose(convert.pose_to_matrix(out.pose.pose), t_map_odom @ odom[-1], atol=1e-9)
    cov = np.array(out.pose.covariance).reshape(6, 6)
    r = est[-1][:3, :3]
    np.testing.assert_allclose(cov, convert.rotate_covariance(h.node.pipeline.covariance, r), atol=1e-15)
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)

    # TF map -> odom is the correction
    tf = h.got["tf"][-1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "odom")
    got = np.eye(4)
    got[:3, 3] = [tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z]
    q = tf.transform.rotation
    from transforms3d.quaternions import quat2mat
    got[:3, :3] = quat2mat([q.w, q.x, q.y, q.z])
    np.testing.assert_allclose(got, t_map_odom, atol=1e-9)

    # voxel markers: one CUBE_LIST of the map's voxels, coloured low (blue) to high (red)
    marker = h.got["voxels"][-1].markers[0]
    centres = h.node.pipeline.window.voxel_centres()
    assert marker.type == marker.CUBE_LIST and marker.scale.x == 1.0 and len(marker.points) == len(centres)
    z = np.array([p.z for p in marker.points])
    lo, hi = int(np.argmin(z)), int(np.argmax(z))
    assert marker.colors[lo].b == 1.0 and marker.colors[hi].r == 1.0

    # ~/map is latched: a subscriber created now still receives the voxel centres
    latched = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = h.io.create_subscription(PointCloud2, "/dsg_jit_slam/map", latched.append, qos)
    spin_until(h.executor, lambda: latched, 20, "the latched map")
    np.testing.assert_allclose(convert.pointcloud2_to_xyz(latched[-1]), centres, atol=1e-5)
    h.io.destroy_subscription(sub)

    # ~/save_map writes the documented files; the trajectory equals the path
    res = h.call(h.save, SaveMap.Request(directory=""))
    assert res.success, res.message
    assert sorted(f.rsplit("/", 1)[1] for f in res.files) == ["graph.g2o", "map.npz", "map.ply", "trajectory.tum"]
    stamps, poses = read_tum(next(f for f in res.files if f.endswith(".tum")))
    np.testing.assert_allclose(poses, est, atol=1e-9)
    bad = h.call(h.save, SaveMap.Request(directory="/proc/no_such_dir/x"))
    assert not bad.success and "could not save" in bad.message


def _blend(a, b, s):
    out = a.copy()
    out[:3, 3] = (1 - s) * a[:3, 3] + s * b[:3, 3]
    from scipy.spatial.transform import Rotation, Slerp
    out[:3, :3] = Slerp([0, 1], Rotation.from_matrix([a[:3, :3], b[:3, :3]]))([s]).as_matrix()[0]
    return out


def _cloud_with_fields(points, fields, point_step, frame="base_link", stamp=0.0):
    msg = cloud_msg(stamp, points[:, :3], frame)
    msg.fields = fields
    msg.point_step = point_step
    msg.row_step = point_step * msg.width
    return msg


def test_bad_inputs_are_counted_and_never_break_the_graph(harness, loop):
    truth, odom, clouds = loop
    h = harness
    res = h.call(h.reset, Trigger.Request())
    assert res.success and "forgot" in res.message
    before = dict(zip(h.got["status"][-1].dropped_reasons, h.got["status"][-1].dropped_counts))
    n_status = len(h.got["status"])
    t0 = 100.0
    h.send(odom_msg(t0, odom[0]), h.pub_odom)
    h.send(odom_msg(t0, odom[0]), h.pub_odom)  # duplicate stamp
    h.send(odom_msg(t0 - 1, odom[0]), h.pub_odom)  # out of order
    h.send(odom_msg(t0 + 0.1, odom[0], frame="world"), h.pub_odom)  # unknown frame
    jump = odom[0].copy()
    jump[0, 3] += 50.0
    h.send(odom_msg(t0 + 0.2, jump), h.pub_odom)  # 250 m/s
    nan = odom_msg(t0 + 0.3, odom[0])
    nan.pose.pose.position.x = float("nan")
    h.send(nan, h.pub_odom)
    quat = odom_msg(t0 + 0.35, odom[0])
    quat.pose.pose.orientation.w = 3.0
    h.send(quat, h.pub_odom)
    h.send(odom_msg(t0 + 0.5, odom[0]), h.pub_odom)
    pts = clouds[0]
    h.send(cloud_msg(t0 + 0.1, np.zeros((0, 3))), h.pub_points)  # empty
    h.send(cloud_msg(t0 + 0.15, pts, frame="laser"), h.pub_points)  # unknown frame
    f = [PointField(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, c in enumerate("xy")]
    h.send(_cloud_with_fields(pts, f, 12, stamp=t0 + 0.2), h.pub_points)  # no z
    f16 = [PointField(name=c, offset=2 * i, datatype=PointField.INT16, count=1) for i, c in enumerate("xyz")]
    h.send(_cloud_with_fields(pts, f16, 12, stamp=t0 + 0.25), h.pub_points)  # int16 coordinates
    short = cloud_msg(t0 + 0.27, pts)
    short.data = bytes(short.data)[:100]
    h.send(short, h.pub_points)  # truncated data
    noisy = pts.copy()
    noisy[::10] = np.nan
    noisy[1::10] = np.inf
    h.send(cloud_msg(t0 + 0.1, pts), h.pub_points)  # duplicate stamp (of the empty cloud)
    h.send(cloud_msg(t0 + 0.05, pts), h.pub_points)  # out of order
    h.send(cloud_msg(t0 + 0.3, noisy), h.pub_points)  # NaN/inf points: dropped, the cloud is used
    st = h.statuses(n_status + 1)[-1]
    got = dict(zip(st.dropped_reasons, st.dropped_counts))
    delta = {k: got.get(k, 0) - before.get(k, 0) for k in got}
    expect = {"odom_duplicate_stamp": 1, "odom_out_of_order": 1, "odom_unknown_frame": 1, "odom_jump": 1,
              "non_finite_pose": 1, "bad_quaternion": 1, "empty_cloud": 1, "cloud_unknown_frame": 1,
              "missing_xyz": 1, "non_float32_xyz": 1, "malformed": 1, "points_non_finite": int((~np.isfinite(noisy).all(axis=1)).sum()),
              "cloud_duplicate_stamp": 1, "cloud_out_of_order": 1}
    for k, v in expect.items():
        assert delta.get(k) == v, (k, delta)
    # after all that the graph is intact: one keyframe, finite, at the odometry pose (reset map)
    assert st.keyframes == 1 and st.compilations_after_warmup == 0
    spin_until(h.executor, lambda: len(h.got["path"][-1].poses) == 1, 10, "a one-pose path after reset")
    pose = convert.pose_to_matrix(h.got["path"][-1].poses[0].pose)
    np.testing.assert_allclose(pose, odom[0], atol=1e-6)
