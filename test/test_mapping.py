"""Mapping front end: voxelisation (closed-form centroids, counted drops),
odometry interpolation (vs transforms3d / exact midpoints, bad stamps) and
keyframe selection."""

import numpy as np
import pytest
from transforms3d.axangles import axangle2mat

from dsg_jit_ros.mapping.keyframes import KeyframeConfig, KeyframeSelector, relative_motion
from dsg_jit_ros.mapping.odometry_buffer import OdometryBuffer
from dsg_jit_ros.mapping.voxelize import VoxelConfig, voxelize


def pose(axis, angle, t):
    out = np.eye(4)
    out[:3, :3] = axangle2mat(axis, angle) if angle else np.eye(3)
    out[:3, 3] = t
    return out


def test_voxelize_centroids_counts_and_drops():
    cfg = VoxelConfig(size=1.0, min_range=0.5, max_range=10.0)
    pts = np.array([
        [1.2, 0.1, 0.1], [1.8, 0.3, 0.5],      # voxel (1, 0, 0)
        [-2.5, 3.5, 0.2],                       # voxel (-3, 3, 0)
        [0.1, 0.1, 0.0],                        # too close
        [50.0, 0.0, 0.0],                       # too far
        [np.nan, 1.0, 1.0], [np.inf, 0, 0],     # non-finite
    ], dtype=np.float32)
    cells = voxelize(pts, cfg)
    assert len(cells) == 2
    order = np.argsort(cells.keys[:, 0])
    np.testing.assert_array_equal(cells.keys[order], [[-3, 3, 0], [1, 0, 0]])
    np.testing.assert_allclose(cells.centroids[order][1], [1.5, 0.2, 0.3], atol=1e-6)
    np.testing.assert_array_equal(cells.counts[order], [1, 2])
    assert cells.dropped_nonfinite == 2 and cells.dropped_range == 2


def test_voxelize_empty_and_malformed():
    cfg = VoxelConfig()
    empty = voxelize(np.zeros((0, 3), np.float32), cfg)
    assert len(empty) == 0 and empty.keys.shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(np.zeros((4, 2)), cfg)
    with pytest.raises(ValueError, match="voxel size"):
        VoxelConfig(size=0.0)


def test_odometry_interpolation_matches_midpoint_rotation():
    buf = OdometryBuffer(capacity=10)
    axis = np.array([0.0, 0.6, 0.8])
    buf.add(1.0, pose(axis, 0.2, [0, 0, 0]))
    buf.add(2.0, pose(axis, 1.0, [2, 4, 0]))
    mid = buf.interpolate(1.25)
    np.testing.assert_allclose(mid[:3, :3], axangle2mat(axis, 0.4), atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], [0.5, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(buf.interpolate(2.0), pose(axis, 1.0, [2, 4, 0]), atol=1e-12)
    assert buf.interpolate(0.5) is None and buf.interpolate(2.5) is None


def test_odometry_buffer_rejects_bad_input_and_is_bounded():
    buf = OdometryBuffer(capacity=3)
    buf.add(1.0, np.eye(4))
    with pytest.raises(ValueError, match="duplicate"):
        buf.add(1.0, np.eye(4))
    with pytest.raises(ValueError, match="out-of-order"):
        buf.add(0.5, np.eye(4))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        buf.add(2.0, bad)
    with pytest.raises(ValueError, match="orthonormal"):
        buf.add(2.0, np.diag([2.0, 1.0, 1.0, 1.0]))
    for k in range(2, 6):
        buf.add(float(k), np.eye(4))
    assert len(buf) == 3 and buf.span == (3.0, 5.0)


def test_keyframe_selector_thresholds():
    sel = KeyframeSelector(KeyframeConfig(min_translation=1.0, min_rotation=0.5))
    assert sel.is_keyframe(np.eye(4))
    sel.accept(np.eye(4))
    assert not sel.is_keyframe(pose([0, 0, 1], 0.3, [0.9, 0, 0]))
    assert sel.is_keyframe(pose([0, 0, 1], 0.0, [1.1, 0, 0]))
    assert sel.is_keyframe(pose([0, 0, 1], 0.6, [0.0, 0, 0]))
    d, a = relative_motion(pose([0, 0, 1], 0.3, [1, 0, 0]), pose([0, 0, 1], 0.8, [1, 2, 0]))
    assert d == pytest.approx(2.0) and a == pytest.approx(0.5)
