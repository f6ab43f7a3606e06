"""Trajectory evaluation against closed forms.

The ATE oracle: with noise ``n`` orthogonal to ``[1, x, y, z]`` of the reference
positions (column-wise), the Umeyama cross-covariance of ``ref + n`` with
``ref`` is symmetric positive definite, so the optimal alignment of a rigidly
(or similarly) moved ``ref + n`` is exactly the inverse motion and the ATE is
exactly ``rms(n)``.
"""

import json

import numpy as np
import pytest
from transforms3d.euler import euler2mat

from dsg_jit_ros.io.tum import write_tum
from dsg_jit_ros.tools.evaluate import TrajectoryError, ate_rmse, evaluate, main

RNG = np.random.default_rng(11)


def make_ref(n=400):
    """A wiggly 3D path with rotating orientation, stamps at 10 Hz."""
    t = np.arange(n) * 0.1
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = 5 * np.cos(0.05 * t) + 0.3 * t
    poses[:, 1, 3] = 3 * np.sin(0.11 * t)
    poses[:, 2, 3] = 0.5 * np.sin(0.07 * t)
    poses[:, :3, :3] = [euler2mat(0.1 * np.sin(a), 0.05 * a, 0.2 * a) for a in t]
    return 100.0 + t, poses


def orthogonal_noise(positions, sigma):
    """Gaussian noise with its column-wise projection on [1, x, y, z] removed."""
    basis = np.column_stack([np.ones(len(positions)), positions - positions.mean(0)])
    noise = RNG.normal(0.0, sigma, size=positions.shape)
    coef, *_ = np.linalg.lstsq(basis, noise, rcond=None)
    return noise - basis @ coef


def similarity(scale, rpy, trans):
    T = np.eye(4)
    T[:3, :3] = scale * euler2mat(*rpy)
    T[:3, 3] = trans
    return T


def moved(poses, T, noise):
    """est_i = T * (ref_i with position + noise); orientation rotated by T's rotation."""
    out = poses.copy()
    out[:, :3, 3] += noise
    scale = np.cbrt(np.linalg.det(T[:3, :3]))
    rot = T[:3, :3] / scale
    res = np.tile(np.eye(4), (len(poses), 1, 1))
    res[:, :3, :3] = rot @ out[:, :3, :3]
    res[:, :3, 3] = out[:, :3, 3] @ T[:3, :3].T + T[:3, 3]
    return res


def test_se3_alignment_recovers_the_motion_and_ate_is_the_noise_rms():
    stamps, ref = make_ref()
    noise = orthogonal_noise(ref[:, :3, 3], 0.05)
    T = similarity(1.0, (0.3, -0.2, 2.0), (10.0, -4.0, 1.5))
    est = moved(ref, T, noise)
    res = evaluate((stamps, ref), (stamps, est), align="se3")
    expected = np.sqrt(np.mean(np.sum(noise**2, axis=1)))
    assert res.n_matched == len(stamps)
    assert res.ate_rmse == pytest.approx(expected, rel=1e-9)
    assert ate_rmse((stamps, ref), (stamps, est)) == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(np.asarray(res.T_ref_est), np.linalg.inv(T), atol=1e-9)
    assert res.scale == 1.0
    # without alignment the error is dominated by the motion
    assert ate_rmse((stamps, ref), (stamps, est), align="none") > 5.0


def test_sim3_alignment_closed_form():
    """Umeyama's scale shrinks by k = Vp / (Vp + Vn) (Vp, Vn: mean squared centred
    position and noise norms); the residual is (k - 1) p_c + k n, whose two parts
    are orthogonal, so ATE^2 = (1 - k)^2 Vp + k^2 Vn."""
    stamps, ref = make_ref()
    noise = orthogonal_noise(ref[:, :3, 3], 0.02)
    T = similarity(1.7, (0.0, 0.1, -1.0), (1.0, 2.0, 3.0))
    est = moved(ref, T, noise)
    res = evaluate((stamps, ref), (stamps, est), align="sim3")
    p_c = ref[:, :3, 3] - ref[:, :3, 3].mean(0)
    vp, vn = np.mean(np.sum(p_c**2, axis=1)), np.mean(np.sum(noise**2, axis=1))
    k = vp / (vp + vn)
    assert res.scale == pytest.approx(k / 1.7, rel=1e-9)
    assert res.ate_rmse == pytest.approx(np.sqrt((1 - k) ** 2 * vp + k**2 * vn), rel=1e-7)
    expected_T = np.linalg.inv(T)
    expected_T[:3, :3] *= k
    np.testing.assert_allclose(np.asarray(res.T_ref_est)[:3, :3], expected_T[:3, :3], atol=1e-9)
    aligned = est[:, :3, 3] @ np.asarray(res.T_ref_est)[:3, :3].T + np.asarray(res.T_ref_est)[:3, 3]
    np.testing.assert_allclose(aligned.mean(0), ref[:, :3, 3].mean(0), atol=1e-9)
    # a rigid alignment cannot undo the scale
    assert evaluate((stamps, ref), (stamps, est), align="se3").ate_rmse > 1.0


def test_association_by_timestamp_with_subset_and_jitter(tmp_path):
    stamps, ref = make_ref()
    idx = np.arange(0, len(stamps), 7)
    noise = orthogonal_noise(ref[idx, :3, 3], 0.03)
    est = moved(ref[idx], similarity(1.0, (0, 0, 0.5), (1, 1, 0)), noise)
    jitter = RNG.uniform(-0.004, 0.004, size=len(idx))
    write_tum(tmp_path / "ref.tum", stamps, ref)
    write_tum(tmp_path / "est.tum", stamps[idx] + jitter, est)
    res = evaluate(tmp_path / "ref.tum", str(tmp_path / "est.tum"), max_dt=0.01)
    assert res.n_matched == len(idx)
    assert res.ate_rmse == pytest.approx(np.sqrt(np.mean(np.sum(noise**2, axis=1))), rel=1e-7)
    with pytest.raises(TrajectoryError, match="no poses associated"):
        evaluate((stamps, ref), (stamps + 50.0, ref))


@pytest.mark.parametrize("step_m", [1.0, 0.01])
def test_rpe_of_a_constant_scale_error_per_pair_and_per_metre(step_m):
    """A 2 % scale error: each pair's error is 2 % of its length, whatever the sampling."""
    n = 300
    stamps = np.arange(n, dtype=float)
    ref = np.tile(np.eye(4), (n, 1, 1))
    ref[:, 0, 3] = np.arange(n) * step_m
    est = ref.copy()
    est[:, 0, 3] *= 1.02
    res = evaluate((stamps, ref), (stamps, est), align="none")
    assert res.rpe_rmse == pytest.approx(0.02 * step_m, rel=1e-9)
    assert res.rpe_per_m == pytest.approx(0.02, rel=1e-9)
    assert evaluate((stamps, ref), (stamps, est), align="none", rpe_delta_m=1.5).rpe_per_m == pytest.approx(0.02, rel=1e-9)
    assert np.isnan(evaluate((stamps, ref), (stamps, est), align="none", rpe_delta_m=1e4).rpe_per_m)
    # ATE without alignment: 0.02 * x_i at pose i
    assert res.ate_rmse == pytest.approx(0.02 * step_m * np.sqrt(np.mean(np.arange(n) ** 2.0)), rel=1e-9)
    # a rigid alignment leaves RPE unchanged (relative poses are invariant under it)
    aligned = evaluate((stamps, ref), (stamps, moved(est, similarity(1.0, (0.1, 0.2, 0.3), (1, 2, 3)), 0.0)), align="none")
    assert aligned.rpe_per_m == pytest.approx(0.02, rel=1e-9)


def test_cli_json_text_plot_and_errors(tmp_path, capsys):
    stamps, ref = make_ref(100)
    noise = orthogonal_noise(ref[:, :3, 3], 0.1)
    est = moved(ref, similarity(1.0, (0, 0, 1.0), (2, 0, 0)), noise)
    write_tum(tmp_path / "ref.tum", stamps, ref)
    write_tum(tmp_path / "est.tum", stamps, est)
    png = tmp_path / "plot.png"
    assert main([str(tmp_path / "ref.tum"), str(tmp_path / "est.tum"), "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["align"] == "se3" and out["n_matched"] == 100
    assert out["ate_rmse"] == pytest.approx(np.sqrt(np.mean(np.sum(noise**2, axis=1))), rel=1e-7)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([str(tmp_path / "ref.tum"), str(tmp_path / "est.tum"), "--align", "none"]) == 0
    assert "ATE RMSE" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.tum"), str(tmp_path / "est.tum")]) == 2
    assert "cannot read" in capsys.readouterr().err
