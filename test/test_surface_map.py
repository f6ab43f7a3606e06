"""The voxel map's statistics and surface model, association, and scan-to-map
registration, against closed forms and known poses."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.association import associate
from dsg_jit_ros.geometry.poses import split_planar
from dsg_jit_ros.mapping.planar import is_planar_cloud
from dsg_jit_ros.mapping.registration import RegistrationConfig, SurfaceTarget, register
from dsg_jit_ros.mapping.voxel_map import (SurfaceConfig, VoxelMap, observation_stats, surface_information, surface_sqrt_information,
                                           voxel_centres)
from dsg_jit_ros.mapping.voxelize import VoxelConfig, pack_keys, unpack_keys

SIZE = 0.2


def pose(x=0.0, y=0.0, yaw=0.0, z=0.0, roll=0.0, pitch=0.0):
    t = np.eye(4)
    t[:3, :3] = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()
    t[:3, 3] = [x, y, z]
    return t


def to_body(points_world, t_world_body):
    return (points_world - t_world_body[:3, 3]) @ t_world_body[:3, :3]


def test_association_and_map_statistics_equal_direct_sums():
    rng = np.random.default_rng(0)
    world = rng.uniform(-3, 3, (4000, 3))
    t = pose(0.4, -0.3, 0.7, 0.2, 0.1, -0.05)
    cells = associate(to_body(world, t), t, VoxelConfig(SIZE, 0.0, 100.0))
    keys = pack_keys(np.floor(world / SIZE).astype(np.int64))
    assert len(cells) == len(np.unique(keys)) and cells.count.sum() == len(world)
    vmap = VoxelMap(SIZE)
    vmap.add(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                           t, voxel_centres(cells.keys, SIZE)))
    # the same cloud again (a second keyframe at another pose): counts double, mean and covariance stay
    t2 = pose(-1.0, 0.5, -2.0)
    again = associate(to_body(world, t2), t2, VoxelConfig(SIZE, 0.0, 100.0))
    vmap.add(again.keys, observation_stats(again.count, again.mean_body, again.scatter_body,
                                           t2, voxel_centres(again.keys, SIZE)))
    st = vmap.stats(cells.keys)
    for i in rng.choice(len(cells), 20, replace=False):
        pts = world[keys == cells.keys[i]]
        assert st.count[i] == 2 * len(pts)
        np.testing.assert_allclose(vmap.means(cells.keys[i:i + 1])[0], pts.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(st.covariance()[i], np.cov(pts.T, bias=True), atol=1e-12)
    assert np.isnan(vmap.means(np.array([pack_keys(np.array([[999, 999, 999]]))[0]]))).all()


def test_surface_information_of_a_wall_is_stiff_across_and_soft_along():
    rng = np.random.default_rng(1)
    # one voxel's points on the plane x = 0.05 (inside the cell [0, 0.2)^3), 5 mm noise
    pts = np.c_[0.05 + rng.normal(0, 0.005, 500), rng.uniform(0, SIZE, 500), rng.uniform(0, SIZE, 500)]
    cells = associate(pts, np.eye(4), VoxelConfig(SIZE, 0.0, 100.0))
    assert len(cells) == 1
    st = observation_stats(cells.count, cells.mean_body, cells.scatter_body, np.eye(4), voxel_centres(cells.keys, SIZE))
    cfg = SurfaceConfig(point_sigma=0.03, thickness=0.0, slide=2.0)
    info = surface_information(st, SIZE, cfg)[0]
    cov = np.cov(pts.T, bias=True)
    np.testing.assert_allclose(np.linalg.inv(info), 2.0 * cov + 0.03 ** 2 * np.eye(3), rtol=1e-9)
    normal_sigma = 1 / np.sqrt(info[0, 0])
    along_sigma = 1 / np.sqrt(info[1, 1])
    assert normal_sigma == pytest.approx(np.sqrt(2 * 0.005 ** 2 + 0.03 ** 2), rel=0.05)
    assert along_sigma == pytest.approx(np.sqrt(2 * SIZE ** 2 / 12 + 0.03 ** 2), rel=0.05)
    # too few points: the isotropic spread of a cube
    few = observation_stats(np.array([2.0]), np.zeros((1, 3)), np.zeros((1, 3, 3)), np.eye(4), np.zeros((1, 3)))
    np.testing.assert_allclose(np.linalg.inv(surface_information(few, SIZE, cfg)[0]),
                               (2.0 * SIZE ** 2 / 12 + 0.03 ** 2) * np.eye(3))


def _walls_2d(corridor: bool):
    """Planar world points (z = 0): a room with a pillar, or a featureless corridor."""
    s = np.arange(-10, 10, 0.01)
    if corridor:
        return np.concatenate([np.c_[s, np.full_like(s, -1.2), 0 * s], np.c_[s, np.full_like(s, 1.2), 0 * s]])
    a = np.linspace(0, 2 * np.pi, 200)
    return np.concatenate([np.c_[s[:900] / 2, np.full(900, -3.0), np.zeros(900)],
                           np.c_[s[:900] / 2, np.full(900, 3.0), np.zeros(900)],
                           np.c_[np.full(600, -5.0), np.linspace(-3, 3, 600), np.zeros(600)],
                           np.c_[np.full(600, 5.0), np.linspace(-3, 3, 600), np.zeros(600)],
                           np.c_[1 + 0.3 * np.cos(a), 0.3 * np.sin(a), np.zeros(200)]])


def _target(world: np.ndarray, cfg: SurfaceConfig) -> SurfaceTarget:
    cells = associate(world, np.eye(4), VoxelConfig(SIZE, 0.0, 100.0))
    vmap = VoxelMap(SIZE)
    vmap.add(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                           np.eye(4),
                                           voxel_centres(cells.keys, SIZE)))
    st = vmap.all_stats()
    return SurfaceTarget.build(vmap.keys, vmap.means(), surface_sqrt_information(st, SIZE, cfg), SIZE)


PRIOR = np.array([0.05] * 3 + [0.02] * 3)


@pytest.mark.parametrize("planar", [True, False])
def test_registration_recovers_the_pose_from_a_biased_prediction(planar):
    rng = np.random.default_rng(2)
    world = _walls_2d(corridor=False)
    if not planar:  # give the room height so that 3D registration is well posed
        world = np.concatenate([world + [0, 0, z] for z in np.arange(0.0, 2.0, 0.1)])
        world = np.concatenate([world, np.c_[rng.uniform(-5, 5, (20000, 2)), np.zeros(20000)]])  # floor
    target = _target(world, SurfaceConfig(0.03, 0.03, np.inf))
    truth = pose(0.5, 0.2, 0.3)
    scan = to_body(world, truth)[::3] + rng.normal(0, 0.01, (len(world[::3]), 3)) * [1, 1, 0 if planar else 1]
    predicted = truth @ pose(0.15, -0.1, 0.06)
    res = register(scan, predicted, target, PRIOR * 10, RegistrationConfig(max_correspondence=0.5), planar=planar)
    assert res.used and res.converged and res.degenerate == 0
    err = np.linalg.inv(truth) @ res.t_map_body
    assert np.linalg.norm(err[:3, 3]) < 0.01
    assert np.linalg.norm(Rotation.from_matrix(err[:3, :3]).as_rotvec()) < np.radians(0.2)
    if planar:
        np.testing.assert_allclose(res.t_map_body[2, :3], [0, 0, 1], atol=1e-12)
        assert res.t_map_body[2, 3] == 0.0


def test_corridor_keeps_the_prediction_along_its_axis():
    """A featureless corridor pins across and yaw; along it the scan says nothing
    (degenerate), so the prediction's along-axis error is kept, not slid away."""
    rng = np.random.default_rng(3)
    world = _walls_2d(corridor=True)
    target = _target(world, SurfaceConfig(0.03, 0.03, np.inf))
    truth = pose(1.0, 0.1, 0.02)
    scan = to_body(world, truth)
    scan = scan[np.linalg.norm(scan, axis=1) < 8.0]
    scan = scan + rng.normal(0, 0.01, scan.shape) * [1, 1, 0]
    predicted = truth @ pose(0.3, 0.15, 0.04)  # 0.3 m off along the corridor
    res = register(scan, predicted, target, PRIOR, RegistrationConfig(max_correspondence=0.5), planar=True)
    assert res.used and res.degenerate == 1
    err = np.linalg.inv(truth) @ res.t_map_body
    assert abs(err[1, 3]) < 0.01 and abs(Rotation.from_matrix(err[:3, :3]).as_rotvec()[2]) < np.radians(0.2)
    along = (res.t_map_body[:3, 3] - truth[:3, 3])[0]
    assert along == pytest.approx((predicted[:3, 3] - truth[:3, 3])[0], abs=0.02)


def test_planar_split_and_detection():
    t = pose(1.0, 2.0, 0.8, z=0.3, roll=0.05, pitch=-0.1)
    planar, level = split_planar(t)
    np.testing.assert_allclose(planar @ level, t, atol=1e-12)
    assert planar[2, 3] == 0.0 and np.allclose(planar[2, :3], [0, 0, 1])
    np.testing.assert_allclose(Rotation.from_matrix(level[:3, :3]).as_euler("ZYX")[0], 0.0, atol=1e-12)
    assert is_planar_cloud(np.c_[np.ones((5, 2)), np.full(5, 0.25)])
    assert not is_planar_cloud(np.c_[np.ones((5, 2)), [0, 0, 0, 0, 0.01]])
    assert not is_planar_cloud(np.zeros((0, 3)))


def test_unpack_keys_inverts_pack_keys():
    keys = np.array([[-5, 3, 0], [1 << 19, -(1 << 19), 7]])
    np.testing.assert_array_equal(unpack_keys(pack_keys(keys)), keys)
