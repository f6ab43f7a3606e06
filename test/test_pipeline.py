"""The ROS-free data path: input checks with counted reasons, waiting clouds,
odometry interpolation, warm-up (no compile afterwards), covariance against the
dense Hessian, reset and export."""

from collections import Counter

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsg_jit_ros.io.g2o import read_g2o
from dsg_jit_ros.io.ply import read_ply
from dsg_jit_ros.io.tum import read_tum
from dsg_jit_ros.mapping.export import save_outputs
from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline import InputConfig, PipelineConfig, SlamPipeline
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.mapping.window_config import WindowConfig
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.linearize import dense_hessian, linearize
from test_window import ate, se2, simulate

CFG = PipelineConfig(
    window=WindowConfig(size=5, voxel=VoxelConfig(1.0, 0.3, 12.0), max_voxels=600, max_observations=3000),
    keyframe=KeyframeConfig(min_translation=0.5, min_rotation=0.25),
    inputs=InputConfig(max_pending_clouds=3, max_linear_speed=5.0, max_angular_speed=3.0),
)


@pytest.fixture(scope="module")
def warm():
    """One warmed-up pipeline (compiles once for the module)."""
    p = SlamPipeline(CFG)
    p.warm_up()
    return p


@pytest.fixture(scope="module")
def run():
    """Ground truth, odometry and clouds of a simulated loop, one keyframe per second."""
    return simulate(24, np.random.default_rng(3))


def test_odometry_checks_count_each_reason():
    p = SlamPipeline(CFG)
    assert p.add_odometry(1.0, np.eye(4)) is None
    assert p.add_odometry(1.0, np.eye(4)).reason == "odom_duplicate_stamp"
    assert p.add_odometry(0.5, np.eye(4)).reason == "odom_out_of_order"
    assert p.add_odometry(1.1, se2(2.0, 0.0, 0.0)).reason == "odom_jump"  # 20 m/s > 5 m/s
    assert p.add_odometry(1.1, se2(0.0, 0.0, 1.0)).reason == "odom_jump"  # 10 rad/s > 3 rad/s
    bad = np.eye(4)
    bad[0, 3] = np.nan
    assert p.add_odometry(1.2, bad).reason == "non_finite_pose"
    assert p.add_odometry(np.inf, np.eye(4)).reason == "non_finite_pose"
    assert p.add_odometry(1.3, se2(0.3, 0.0, 0.0)) is None  # 1.5 m/s: fine
    assert dict(p.dropped) == {"odom_duplicate_stamp": 1, "odom_out_of_order": 1, "odom_jump": 2, "non_finite_pose": 2}


def test_cloud_checks_count_each_reason():
    p = SlamPipeline(CFG)
    cloud = np.random.default_rng(0).uniform(-5, 5, (200, 3))
    _, rej = p.add_cloud(1.0, np.zeros((0, 3)))
    assert [r.reason for r in rej] == ["empty_cloud"]
    _, rej = p.add_cloud(1.0, cloud)
    assert [r.reason for r in rej] == ["cloud_duplicate_stamp"]
    _, rej = p.add_cloud(0.9, cloud)
    assert [r.reason for r in rej] == ["cloud_out_of_order"]
    _, rej = p.add_cloud(1.1, np.full((50, 3), np.nan))
    assert [r.reason for r in rej] == ["points_non_finite", "too_few_points"]
    _, rej = p.add_cloud(1.2, cloud[:, :2])
    assert [r.reason for r in rej] == ["malformed"]
    assert p.dropped["points_non_finite"] == 50
    # no odometry yet: clouds wait, and the queue (3) overflows oldest first
    for k in range(4):
        updates, rej = p.add_cloud(2.0 + 0.1 * k, cloud)
        assert updates == []
    assert [r.reason for r in rej] == ["cloud_queue_full"] and "2.000" in rej[0].detail
    # odometry covering 2.1 .. 2.3 arrives: all three are selected (the first is a keyframe)
    p.add_odometry(2.1, np.eye(4))
    p.add_odometry(2.4, np.eye(4))
    assert p.select_ready() == [] and p.queued_keyframes == 1 and p.skipped_clouds == 2
    p.input_queue.ready.clear()  # (not solving here)
    assert p.keyframes == 0 and len(p.window.keyframe_poses) == 0


def test_waiting_cloud_uses_interpolated_odometry(warm, run):
    truth, odom, clouds = run
    p = warm
    p.reset()
    p.add_odometry(10.0, odom[0])
    updates, rej = p.add_cloud(10.5, clouds[0])  # beyond the odometry so far: waits
    assert updates == [] and rej == []
    p.add_odometry(11.0, odom[1])
    updates, rej = p.process_pending()
    assert len(updates) == 1 and rej == []
    # the keyframe's odometry is the midpoint of odom[0] and odom[1] (slerp at 0.5)
    t_kf = p.keyframe_odometry[0][1]
    np.testing.assert_allclose(t_kf[:3, 3], 0.5 * (odom[0][:3, 3] + odom[1][:3, 3]), atol=1e-12)
    rel = Rotation.from_matrix(odom[0][:3, :3].T @ t_kf[:3, :3]).as_rotvec()
    full = Rotation.from_matrix(odom[0][:3, :3].T @ odom[1][:3, :3]).as_rotvec()
    np.testing.assert_allclose(rel, 0.5 * full, atol=1e-12)
    # a cloud older than all buffered odometry is dropped with its reason
    p2 = SlamPipeline(CFG)
    p2.add_odometry(5.0, np.eye(4))
    p2.add_odometry(6.0, np.eye(4))
    _, rej = p2.add_cloud(4.0, clouds[0])
    assert [r.reason for r in rej] == ["cloud_before_odometry"]


def test_online_run_beats_odometry_without_compiling(warm, run, tmp_path):
    truth, odom, clouds = run
    p = warm
    p.reset()
    before = compile_count()
    for k, (t_odom, cloud) in enumerate(zip(odom, clouds)):
        # odometry at 10 Hz between keyframes (interpolated here on purpose: exact midpoints)
        p.add_odometry(float(k), t_odom)
        updates, rej = p.add_cloud(float(k), cloud)
        assert rej == [] and len(updates) == 1
    assert compile_count() == before and p.compilations_after_warmup() == 0
    est = [m for _, m in p.window.keyframe_poses]
    ate_est, ate_odom = ate(est, truth), ate(odom, truth)
    assert ate_est < 0.5 * ate_odom, (ate_est, ate_odom)

    # covariance of the newest pose: the block of the dense Hessian's inverse
    wm = p.window.wm
    x, _ = wm.pack_state()
    h = np.asarray(jax.jit(lambda g, x: dense_hessian(g, linearize(g, x)[0], x))(wm.fg, x))
    pos = wm.fg.layout.position("pose_se3")
    off = wm.fg.layout.offsets[pos] + 6 * wm.variable_slot(p.window.newest_keyframe_var)
    # (taken from the last solve's reduced system: at its linearisation point, damped by its
    # lam, so equal to the Hessian's at the returned state to the size of that last step)
    ref = np.linalg.inv(h)[off:off + 6, off:off + 6]
    np.testing.assert_allclose(p.covariance, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert np.all(np.linalg.eigvalsh(p.covariance) > 0)

    files = save_outputs(p, tmp_path / "map")
    assert [f.name for f in files] == ["map.ply", "trajectory.tum", "graph.g2o", "map.npz"]
    stamps, poses = read_tum(tmp_path / "map" / "trajectory.tum")
    np.testing.assert_allclose(stamps, np.arange(len(odom), dtype=float))
    np.testing.assert_allclose(poses, np.array(est), atol=1e-9)
    pts, _ = read_ply(tmp_path / "map" / "map.ply")
    np.testing.assert_allclose(pts, p.window.voxel_centres())
    g = read_g2o(tmp_path / "map" / "graph.g2o")
    assert len(g.ids) == len(odom) and len(g.edge_i) == len(odom) - 1
    np.testing.assert_allclose(g.measurements[3], np.linalg.inv(odom[3]) @ odom[4], atol=1e-9)

    p.reset()  # same shapes: no compile either
    p.add_odometry(0.0, odom[0])
    updates, _ = p.add_cloud(0.0, clouds[0])
    assert len(updates) == 1 and updates[0].keyframes == 1 and compile_count() == before


def test_preparing_the_registration_after_publishing_changes_nothing_and_leaves_it_no_work(warm, run, monkeypatch):
    """``prepare_registration`` (a node calls it after publishing) places the window's
    observations at the solved poses and builds the target's rows of the window's voxels:
    the trajectory is the same bit for bit, and the next keyframe's registration does
    neither (the work is off its latency)."""
    from dsg_jit_ros.mapping import local_map

    truth, odom, clouds = run
    p = warm
    state = {"registering": False}
    calls = []  # (what, inside a registration?)
    orig_place, orig_sqrt = local_map.LocalMap.place, local_map.surface_sqrt_information
    monkeypatch.setattr(local_map.LocalMap, "place",
                        lambda self, obs: (calls.append(("place", state["registering"])), orig_place(self, obs))[1])
    monkeypatch.setattr(local_map, "surface_sqrt_information",
                        lambda *a: (calls.append(("window_rows", state["registering"])), orig_sqrt(*a))[1])
    orig_register = type(p.window)._register

    def register(self, *a):
        state["registering"] = True
        try:
            return orig_register(self, *a)
        finally:
            state["registering"] = False

    monkeypatch.setattr(type(p.window), "_register", register)
    runs = []
    for prepare in (False, True):
        p.reset()
        calls.clear()
        for k, (t_odom, cloud) in enumerate(zip(odom, clouds)):
            p.add_odometry(float(k), t_odom)
            updates, _ = p.add_cloud(float(k), cloud)
            assert len(updates) == 1
            if prepare:
                p.prepare_registration()
        inside = Counter(what for what, registering in calls if registering)
        runs.append((np.array([m for _, m in p.window.keyframe_poses]), inside))
    (plain, plain_inside), (prepared, prepared_inside) = runs
    np.testing.assert_array_equal(prepared, plain)
    # without it each registration did both first; with it, neither
    assert plain_inside["place"] >= len(odom) - 2 and plain_inside["window_rows"] >= len(odom) - 2, plain_inside
    assert sum(prepared_inside.values()) == 0, prepared_inside
