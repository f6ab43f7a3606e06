"""Saving the map, loading it, localizing in it (issue 8, item 5).

Oracles: the mapping run's own trajectory (localization on the same data, from a
different odometry origin and a wrong initial pose, must land within 5 cm of it),
the saved arrays (a round trip is exact), and broken files (each gives one sentence
naming the problem; the node stays up, unconfigured)."""

import dataclasses
import zipfile

import numpy as np
import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from dsg_jit_ros.io.map_file import MapFileError, read_map, write_map
from dsg_jit_ros.mapping.export import save_outputs
from dsg_jit_ros.mapping.map_state import capture, cells_of
from dsg_jit_ros.mapping.pipeline import SlamPipeline
from ros_helpers import SMALL_WINDOW
from test_pipeline import CFG
from test_window import ate, se2, simulate


def _feed(p, odom, clouds, stamps):
    for t, o, c in zip(stamps, odom, clouds):
        p.add_odometry(t, o)
        p.add_cloud(t, c)
    p.add_odometry(stamps[-1] + 0.1, odom[-1])
    p.process_ready()
    return np.array([m for _, m in p.window.keyframe_poses])


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    truth, odom, clouds = simulate(24, np.random.default_rng(3))
    stamps = np.arange(len(odom), dtype=float)
    p = SlamPipeline(CFG)
    poses = _feed(p, odom, clouds, stamps)
    out = tmp_path_factory.mktemp("map")
    files = save_outputs(p, out)
    return p, poses, out / "map.npz", files, (truth, odom, clouds, stamps)


def test_the_saved_map_round_trips_exactly(mapped):
    p, poses, path, files, _ = mapped
    assert path in files
    state = read_map(path)
    ref = capture(p)
    for f in dataclasses.fields(ref):
        assert np.array_equal(getattr(state, f.name), getattr(ref, f.name)), f.name
    assert len(state) == p.keyframes and state.cell_offsets[-1] == len(state.keys) > 0
    # the keyframes in the file are where the trajectory says (planar part @ level)
    assert np.allclose(state.poses @ state.levels, poses)


def test_localization_on_the_saved_map_reproduces_the_trajectory(mapped):
    p, poses, path, _, (truth, odom, clouds, stamps) = mapped
    # another odometry origin (the robot's odometry starts at identity) and an initial
    # pose 0.3 m and 0.1 rad off: registration to the map must find the way
    origin = np.linalg.inv(odom[0])
    guess = poses[0] @ se2(0.3, -0.2, 0.1)
    x, y, z = guess[:3, 3]
    yaw = float(np.arctan2(guess[1, 0], guess[0, 0]))
    cfg = dataclasses.replace(CFG, mode="localization", map_file=str(path), initial_pose=(x, y, z, 0.0, 0.0, yaw))
    loc = SlamPipeline(cfg)
    frozen_voxels = len(loc.window.local.frozen)
    assert loc.loaded_keyframes == len(poses) and frozen_voxels > 0
    est = _feed(loc, [origin @ o for o in odom], clouds, stamps)
    assert len(est) == len(poses)
    err = np.linalg.norm(est[:, :3, 3] - poses[:, :3, 3], axis=1)
    assert err.max() < 0.05, err
    assert len(loc.window.local.frozen) == frozen_voxels  # the map was not extended
    assert ate(est, truth) < 0.5 * ate(odom, truth)
    # counter-example: without the map, the same odometry origin gives another frame altogether
    blind = _feed(SlamPipeline(CFG), [origin @ o for o in odom], clouds, stamps)
    assert np.linalg.norm(blind[:, :3, 3] - poses[:, :3, 3], axis=1).max() > 1.0


def test_broken_map_files_give_one_clear_sentence(mapped, tmp_path):
    _, _, path, _, _ = mapped
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MapFileError, match="truncated or corrupted"):
        read_map(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(MapFileError, match="truncated or corrupted"):
        read_map(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(MapFileError, match="not a dsg_jit_ros.map file"):
        read_map(foreign)
    state = read_map(path)
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp_path / "v3.npz", "w") as out:
        for name in z.namelist():
            if name != "version.npy":
                out.writestr(name, z.read(name))
    np_v3 = dict(np.load(tmp_path / "v3.npz"))
    np.savez(tmp_path / "v3.npz", version=np.array(3), **np_v3)
    with pytest.raises(MapFileError, match="version 3"):
        read_map(tmp_path / "v3.npz")
    bad = dataclasses.replace(state, cell_offsets=state.cell_offsets[:-1])
    with pytest.raises(ValueError, match="cell_offsets"):
        write_map(tmp_path / "bad.npz", bad)
    with pytest.raises(MapFileError, match="no such file"):
        read_map(tmp_path / "absent.npz")
    with pytest.raises(MapFileError):
        SlamPipeline(dataclasses.replace(CFG, map_file=str(truncated)))


def test_loop_edges_round_trip_and_an_old_version_file_still_loads(mapped, tmp_path):
    """Version 2 keeps the global graph's loop edges with their square-root information
    (an anisotropic one: a row of zeros for the direction the loop leaves free); a
    pipeline loading the file gets them back in its graph.  A version-1 file (no loop
    arrays) still loads, with no loops."""
    from dsg_jit_ros.io.map_file import VERSION

    _, _, path, _, _ = mapped
    state = read_map(path)
    n = len(state)
    assert VERSION == 2 and n >= 6
    w = np.diag([0.0, 20.0, 20.0, 100.0, 100.0, 100.0])  # free along the body's x (a corridor)
    rel = np.linalg.inv(state.poses[0]) @ state.poses[n - 2]  # the map's own estimate: consistent
    loops = dataclasses.replace(state, loop_nodes=np.array([[0, n - 2], [1, n - 1]]),
                                loop_poses=np.array([rel, np.linalg.inv(state.poses[1]) @ state.poses[n - 1]]),
                                loop_sqrt_info=np.array([w, np.diag([20.0] * 3 + [100.0] * 3)]))
    write_map(tmp_path / "loops.npz", loops)
    back = read_map(tmp_path / "loops.npz")
    for f in dataclasses.fields(loops):
        assert np.array_equal(getattr(back, f.name), getattr(loops, f.name)), f.name
    pipe = SlamPipeline(dataclasses.replace(CFG, map_file=str(tmp_path / "loops.npz")))
    got = pipe.graph.loops
    assert [(e.older, e.newer) for e in got] == [(0, n - 2), (1, n - 1)]
    np.testing.assert_array_equal(got[0].sqrt_info, w)
    np.testing.assert_allclose(got[0].information, w.T @ w)
    np.testing.assert_allclose(got[0].t_older_newer, rel, atol=1e-9)
    # a loop onto a keyframe that does not exist is refused with a sentence
    with pytest.raises(ValueError, match="loop_nodes"):
        write_map(tmp_path / "bad.npz", dataclasses.replace(loops, loop_nodes=np.array([[0, n], [1, n - 1]])))
    # version 1: the same arrays without the loop edges
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp_path / "v1.npz", "w") as out:
        for name in z.namelist():
            if name != "version.npy" and not name.startswith("loop_"):
                out.writestr(name, z.read(name))
    v1 = dict(np.load(tmp_path / "v1.npz"))
    np.savez(tmp_path / "v1.npz", version=np.array(1), **v1)
    old = read_map(tmp_path / "v1.npz")
    assert old.loop_nodes.shape == (0, 2) and old.loop_sqrt_info.shape == (0, 6, 6)
    for f in ("stamps", "poses", "keys", "mean_body", "scatter_body"):
        assert np.array_equal(getattr(old, f), getattr(state, f)), f
    loaded = SlamPipeline(dataclasses.replace(CFG, map_file=str(tmp_path / "v1.npz")))
    assert loaded.loaded_keyframes == n and not loaded.graph.loops


def test_a_node_with_a_broken_map_file_stays_up_unconfigured(tmp_path):
    from dsg_jit_ros.ros.slam_node import SlamNode

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        params = [Parameter(k, value=v) for k, v in SMALL_WINDOW.items()]
        params += [Parameter("map_file", value=str(broken)), Parameter("autostart", value=False)]
        node = SlamNode(context=ctx, parameter_overrides=params)
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "truncated or corrupted" in node._configure_error and node.pipeline is None
        assert node._state_machine.current_state[1] == "unconfigured"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_the_node_relocalizes_from_initialpose_on_a_loaded_map(mapped):
    """In-process node in localization mode on the saved map: /initialpose (0.36 m, 0.1 rad
    off) then odometry from another origin and the clouds; the path lands on the mapping
    run's keyframes."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry, Path
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from dsg_jit_ros.ros import convert
    from dsg_jit_ros.ros.slam_node import SlamNode
    from ros_helpers import cloud_msg, odom_msg, spin_until

    _, poses, path, _, (truth, odom, clouds, stamps) = mapped
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        params = [Parameter(k, value=v) for k, v in SMALL_WINDOW.items()]
        params += [Parameter("map_file", value=str(path)), Parameter("mode", value="localization"),
                   Parameter("warmup", value=False)]
        node = SlamNode(context=ctx, parameter_overrides=params)
        assert node.pipeline.loaded_keyframes == len(poses)
        io = rclpy.create_node("reloc_io", context=ctx)
        pub_init = io.create_publisher(PoseWithCovarianceStamped, "/initialpose", 1)
        pub_odom = io.create_publisher(Odometry, "odom", reliable)
        pub_points = io.create_publisher(PointCloud2, "points", reliable)
        got = []
        io.create_subscription(Path, "/dsg_jit_slam/path", got.append, reliable)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(io)
        spin_until(ex, lambda: pub_init.get_subscription_count() > 0 and pub_points.get_subscription_count() > 0,
                   20, "the node's subscriptions")
        guess = poses[0] @ se2(0.3, -0.2, 0.1)
        msg = PoseWithCovarianceStamped(header=Header(frame_id="odom"))
        msg.pose.pose = convert.matrix_to_pose(guess)
        pub_init.publish(msg)  # wrong frame: counted, not used
        spin_until(ex, lambda: node.pipeline.dropped_snapshot().get("initialpose_unknown_frame"), 10, "rejection")
        msg.header.frame_id = "map"
        cov = np.zeros((6, 6))
        cov[[0, 1, 2], [0, 1, 2]], cov[[3, 4, 5], [3, 4, 5]] = 0.4 ** 2, 0.2 ** 2
        msg.pose.covariance = cov.reshape(-1).tolist()
        pub_init.publish(msg)
        spin_until(ex, lambda: node.pipeline.relocalizations == 1, 10, "the initial pose to be taken")
        origin = np.linalg.inv(odom[0])
        for k, (t, o, c) in enumerate(zip(stamps, odom, clouds)):
            pub_odom.publish(odom_msg(t, origin @ o))
            pub_points.publish(cloud_msg(t, c))
            # a cloud is solved once the next odometry covers its stamp
            spin_until(ex, lambda: node.pipeline.keyframes >= k, 60, f"keyframe {k - 1}")
        pub_odom.publish(odom_msg(stamps[-1] + 0.1, origin @ odom[-1]))
        spin_until(ex, lambda: node.pipeline.keyframes == len(poses), 60, "the last keyframe")
        spin_until(ex, lambda: len(got) and len(got[-1].poses) == len(poses), 20, f"the whole path ({len(got[-1].poses) if got else 0})")
        est = np.array([convert.pose_to_matrix(p.pose) for p in got[-1].poses])
        assert np.linalg.norm(est[:, :3, 3] - poses[:, :3, 3], axis=1).max() < 0.05
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_load_map_service_replaces_the_map_or_keeps_it(mapped, tmp_path):
    """~/load_map from another node: a garbage file is refused with one sentence and the
    node keeps its map, as with an unknown mode; the saved map is then loaded (its
    keyframes and voxels, the requested mode)."""
    from dsg_jit_ros_msgs.srv import LoadMap
    from rclpy.executors import SingleThreadedExecutor

    from dsg_jit_ros.ros.slam_node import SlamNode
    from ros_helpers import spin_until

    p, poses, path, _, _ = mapped
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        params = [Parameter(k, value=v) for k, v in SMALL_WINDOW.items()] + [Parameter("warmup", value=False)]
        node = SlamNode(context=ctx, parameter_overrides=params)
        before = node.pipeline
        io = rclpy.create_node("load_io", context=ctx)
        client = io.create_client(LoadMap, "/dsg_jit_slam/load_map")
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(io)

        def call(**kw):
            assert client.wait_for_service(timeout_sec=10)
            future = client.call_async(LoadMap.Request(**kw))
            spin_until(ex, future.done, 30, "the load_map response")
            return future.result()

        bad = call(path=str(garbage))
        assert not bad.success and "garbage.npz" in bad.message and "map kept" in bad.message
        assert node.pipeline is before and node.pipeline.loaded_keyframes == 0
        bad_mode = call(path=str(path), mode="surveying")
        assert not bad_mode.success and "mode" in bad_mode.message and node.pipeline is before
        ok = call(path=str(path), mode="localization")
        assert ok.success and ok.keyframes == len(poses), ok.message
        assert node.pipeline is not before and node.pipeline.cfg.mode == "localization"
        assert node.pipeline.loaded_keyframes == len(poses)
        assert len(node.pipeline.window.local.frozen) >= len(p.window.local.frozen) > 0
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_retired_submaps_are_folded_and_saved(mapped):
    """A global graph of capacity 4 on the same data: retired nodes drop their cells, their
    submaps live on in ``retired_map``, equal to placing those cells directly (the oracle: a
    run with room for every node), and the saved map rebuilds exactly the same voxels."""
    from dsg_jit_ros.mapping.local_map import placed_map

    big, _, _, _, (_, odom, clouds, stamps) = mapped
    small = SlamPipeline(dataclasses.replace(CFG, loop=dataclasses.replace(CFG.loop, capacity=4)))
    _feed(small, odom, clouds, stamps)
    g, ref = small.graph, big.graph
    assert g.first > 0 and len(g) == len(ref) and len(g) - g.first <= 4
    assert all(n.cells is None for n in g.nodes[:g.first]) and all(n.cells is not None for n in g.nodes[g.first:])
    poses = ref.all_poses()
    direct = placed_map([(n.cells, p, p @ n.key_offset) for n, p in zip(ref.nodes[:g.first], poses)], 1.0)
    assert np.array_equal(np.sort(g.retired_map.keys), np.sort(direct.keys))
    np.testing.assert_allclose(g.retired_map.means(direct.keys), direct.means(direct.keys), atol=1e-9)

    def rebuilt(pipe):
        state = capture(pipe)
        return placed_map([(cells_of(state, i), state.poses[i], state.key_poses[i]) for i in range(len(state))], 1.0)

    a, b = rebuilt(small), rebuilt(big)
    assert np.array_equal(np.sort(a.keys), np.sort(b.keys))
    np.testing.assert_allclose(a.stats(b.keys).count, b.stats(b.keys).count)
    np.testing.assert_allclose(a.means(b.keys), b.means(b.keys), atol=1e-9)
