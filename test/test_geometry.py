"""SO(3)/SE(3): identities, transforms3d as oracle, finite Jacobians, pi and 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms3d.axangles import axangle2mat, mat2axangle

from dsg_jit_ros.geometry import se3, so3

RNG = np.random.default_rng(7)


def random_rotvecs(n, max_angle=np.pi):
    axes = RNG.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return axes * RNG.uniform(0, max_angle, size=(n, 1))


EDGE_ANGLES = [0.0, 1e-12, 1e-8, 1e-4, 0.1, 1.0, 3.0, np.pi - 1e-6, np.pi - 1e-9, np.pi]


@pytest.mark.parametrize("angle", EDGE_ANGLES)
def test_exp_matches_transforms3d(angle):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    expected = axangle2mat(axis, angle) if angle > 0 else np.eye(3)
    np.testing.assert_allclose(so3.exp(jnp.asarray(axis * angle)), expected, atol=1e-14)


EXP = jax.jit(jax.vmap(so3.exp))
LOG = jax.jit(jax.vmap(so3.log))


def test_exp_random_matches_transforms3d():
    ws = random_rotvecs(500)
    expected = [axangle2mat(w / np.linalg.norm(w), np.linalg.norm(w)) for w in ws]
    np.testing.assert_allclose(EXP(jnp.asarray(ws)), np.stack(expected), atol=1e-13)


@pytest.mark.parametrize("angle", EDGE_ANGLES)
def test_log_inverts_exp_near_zero_and_pi(angle):
    axis = np.array([-0.2, 0.9, 0.4]) / np.linalg.norm([-0.2, 0.9, 0.4])
    w = axis * angle
    r = axangle2mat(axis, angle) if angle > 0 else np.eye(3)
    back = np.asarray(so3.log(jnp.asarray(r)))
    # at exactly pi, w and -w are the same rotation
    assert min(np.abs(back - w).max(), np.abs(back + w).max() if angle > 3 else 1) < 1e-7
    np.testing.assert_allclose(so3.exp(jnp.asarray(back)), r, atol=1e-12)


def test_log_random_against_transforms3d_angle():
    ws = random_rotvecs(500)
    rs = np.stack([axangle2mat(w / np.linalg.norm(w), np.linalg.norm(w)) for w in ws])
    back = np.asarray(LOG(jnp.asarray(rs)))
    for w, r, b in zip(ws, rs, back):
        axis, angle = mat2axangle(r)  # transforms3d may return (-axis, -angle)
        np.testing.assert_allclose(np.linalg.norm(b), abs(angle), atol=1e-10)
        np.testing.assert_allclose(b, w, atol=1e-9)


def test_log_float32_near_pi_is_accurate():
    # DSG-JIT 0.7.1 returned -3329.7 for this angle in float32.
    axis = np.array([0.0, 0.0, 1.0])
    r = jnp.asarray(axangle2mat(axis, 3.1415), dtype=jnp.float32)
    back = so3.log(r)
    assert back.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(back), axis * 3.1415, atol=1e-3)


def test_jacobian_of_between_error_finite_for_equal_rotations():
    # DSG-JIT 0.7.1: jax.jacobian of its SE(3) log residual was NaN here.
    a = jnp.array([1.0, 2.0, 0.5, 0.1, -0.2, 0.3])
    b = a.at[:3].add(1.0)  # same rotation, different translation
    z = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])

    def err(x):
        return se3.between_error(se3.vec_to_matrix(x[:6]), se3.vec_to_matrix(x[6:]), se3.vec_to_matrix(z))

    jac = jax.jit(jax.jacobian(err))(jnp.concatenate([a, b]))
    assert np.all(np.isfinite(jac))
    jac0 = jax.jit(jax.jacobian(lambda w: so3.log(so3.exp(w))))(jnp.zeros(3))
    np.testing.assert_allclose(jac0, np.eye(3), atol=1e-12)


def test_se3_exp_log_roundtrip_and_retract_local():
    n = 200
    xi = jnp.asarray(np.concatenate([RNG.normal(size=(n, 3)) * 3, random_rotvecs(n, np.pi - 1e-3)], axis=1))
    roundtrip = jax.jit(jax.vmap(lambda a: se3.log(se3.exp(a))))
    np.testing.assert_allclose(roundtrip(xi), xi, atol=1e-9)
    v = jnp.asarray(np.concatenate([RNG.normal(size=(n, 3)), random_rotvecs(n)], axis=1))
    d = jnp.asarray(RNG.normal(size=(n, 6)) * 0.5)
    back = jax.jit(jax.vmap(lambda a, b: se3.local(a, se3.retract(a, b))))(v, d)
    np.testing.assert_allclose(back, d, atol=1e-9)


def test_pose_value_layout_is_translation_then_rotvec():
    v = jnp.array([1.0, 2.0, 3.0, 0.0, 0.0, np.pi / 2])
    t = se3.vec_to_matrix(v)
    np.testing.assert_allclose(t[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(se3.act(t, jnp.array([1.0, 0, 0])), [1, 3, 3], atol=1e-12)
    np.testing.assert_allclose(se3.matrix_to_vec(t), v, atol=1e-12)


def test_right_jacobian_against_finite_differences():
    for w in random_rotvecs(10, max_angle=3.0):
        w = jnp.asarray(w)
        jr = so3.right_jacobian(w)
        eps = 1e-6
        for k in range(3):
            d = jnp.zeros(3).at[k].set(eps)
            # exp(w + d) = exp(w) exp(Jr d)  =>  log(exp(w)^T exp(w + d)) / eps = Jr[:, k]
            col = so3.log(so3.exp(w).T @ so3.exp(w + d)) / eps
            np.testing.assert_allclose(col, jr[:, k], atol=1e-6)
        np.testing.assert_allclose(so3.left_jacobian_inverse(-w) @ jr, np.eye(3), atol=1e-10)


def test_adjoint_identity():
    v = jnp.array([0.5, -1.0, 2.0, 0.3, 0.2, -0.9])
    t = se3.vec_to_matrix(v)
    xi = jnp.array([0.1, 0.2, -0.3, 0.05, -0.02, 0.04])
    np.testing.assert_allclose(t @ se3.exp(xi) @ se3.inverse(t), se3.exp(se3.adjoint(t) @ xi), atol=1e-12)


def test_linearize_jacobian_matches_finite_differences_of_retraction():
    from dsg_jit_ros.optimization.linearize import linearize
    from dsg_jit_ros.slam.manifold import retract_state
    from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, pose_voxel_surface_residual
    from dsg_jit_ros.world.graph import graph_residual
    from dsg_jit_ros.world.model import WorldModel

    wm = WorldModel()
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    wm.register_residual("pose_voxel_surface", pose_voxel_surface_residual)
    a = wm.add_variable("pose_se3", [0.1, 0.2, 0.3, 2.9, 0.5, -0.4])  # large rotation
    b = wm.add_variable("pose_se3", [1.0, -0.5, 0.2, 0.0, 0.0, 0.0])
    p = wm.add_variable("point3d", [2.0, 1.0, -1.0])
    wm.add_factor("odom_se3", (a, b), {"measurement": jnp.array([0.9, 0.1, 0, 0.1, 0, 0.2]), "sigma": 0.1})
    wm.add_factor("pose_voxel_point", (a, p), {"point_body": jnp.array([1.0, 0.5, 0.2]), "weight": 2.0})
    # a surface observation: map-frame error, anisotropic (full) square-root information
    w_surf = np.array([[30.0, 2.0, -1.0], [0.0, 4.0, 0.5], [0.0, 0.0, 1.5]])
    p_body = np.array([-0.7, 1.2, 0.4])
    wm.add_factor("pose_voxel_surface", (a, p), {"point_body": p_body, "sqrt_info": w_surf})
    x, index = wm.pack_state()
    lins, _ = jax.jit(linearize)(wm.fg, x)
    layout = wm.fg.layout

    @jax.jit
    def r_of(delta):
        return graph_residual(wm.fg, retract_state(layout, x, delta))

    # whitening vs the closed form W (v - R p - t)
    t_a = np.asarray(se3.vec_to_matrix(x[slice(*index[a])]))
    expected = w_surf @ (np.asarray(x[slice(*index[p])]) - t_a[:3, :3] @ p_body - t_a[:3, 3])
    np.testing.assert_allclose(r_of(jnp.zeros_like(x))[9:12], expected, atol=1e-12)
    jac_fd = np.zeros((12, x.shape[0]))
    eps = 1e-6
    for k in range(x.shape[0]):
        d = jnp.zeros_like(x).at[k].set(eps)
        jac_fd[:, k] = (r_of(d) - r_of(-d)) / (2 * eps)
    odom = lins[0]
    sa, sb, sp = (slice(*index[v]) for v in (a, b, p))
    np.testing.assert_allclose(odom.jacobians[0][0], jac_fd[:6, sa], atol=1e-6)
    np.testing.assert_allclose(odom.jacobians[1][0], jac_fd[:6, sb], atol=1e-6)
    obs = lins[1]
    np.testing.assert_allclose(obs.jacobians[0][0], jac_fd[6:9, sa], atol=1e-6)
    np.testing.assert_allclose(obs.jacobians[1][0], jac_fd[6:9, sp], atol=1e-6)
    surf = lins[2]
    np.testing.assert_allclose(surf.jacobians[0][0], jac_fd[9:, sa], atol=1e-5)
    np.testing.assert_allclose(surf.jacobians[1][0], jac_fd[9:, sp], atol=1e-6)


def test_log_derivative_finite_at_exactly_pi():
    r = jnp.asarray(axangle2mat([0.0, 0.6, 0.8], np.pi))
    jac = jax.jit(jax.jacobian(so3.log))(r)
    assert np.all(np.isfinite(jac))
    np.testing.assert_allclose(np.linalg.norm(so3.log(r)), np.pi, atol=1e-12)


def test_quaternion_conversions_match_transforms3d():
    from transforms3d.quaternions import mat2quat

    for w in random_rotvecs(20):
        r = axangle2mat(w / np.linalg.norm(w), np.linalg.norm(w))
        q = np.asarray(so3.to_quaternion(jnp.asarray(r)))
        q_ref = mat2quat(r)
        q_ref = q_ref if q_ref[0] >= 0 else -q_ref
        np.testing.assert_allclose(q, q_ref, atol=1e-12)
        np.testing.assert_allclose(so3.from_quaternion(jnp.asarray(q)), r, atol=1e-12)


def test_se3_inverse_jacobians_equal_autodiff_of_log():
    """Closed-form J_l^-1, J_r^-1 against forward-mode derivatives of
    log(exp(d) exp(xi)) and log(exp(xi) exp(d)) at d = 0 (our exp and log, no
    shared formula), at angles on both sides of the series threshold (|phi| = 0.1)."""
    angles = np.repeat([0.0, 1e-8, 1e-3, 0.0999, 0.1001, 0.5, 2.0, 3.0], 6)
    axes = random_rotvecs(angles.size, 1.0)
    phis = axes / np.linalg.norm(axes, axis=1, keepdims=True) * angles[:, None]
    xis = jnp.asarray(np.concatenate([RNG.normal(size=(angles.size, 3)) * 2.0, phis], axis=1))

    def autodiff(xi):
        t, zero = se3.exp(xi), jnp.zeros(6, dtype=xi.dtype)
        return (jax.jacfwd(lambda d: se3.log(se3.exp(d) @ t))(zero),
                jax.jacfwd(lambda d: se3.log(t @ se3.exp(d)))(zero))

    left, right = jax.jit(jax.vmap(autodiff))(xis)
    jl_inv, jr_inv = jax.jit(jax.vmap(se3.inverse_jacobians))(xis)
    np.testing.assert_allclose(jl_inv, left, atol=1e-9)
    np.testing.assert_allclose(jr_inv, right, atol=1e-9)


def test_between_jacobians_equal_autodiff_of_the_error():
    """The between factor's closed-form (e, [J_i, J_j]) against forward-mode
    derivatives of its error under right perturbations of either pose, for random
    poses (rotations up to pi) and measurements near and far from the truth."""
    from dsg_jit_ros.slam.measurements import _between_jacobians

    n = 60
    vi = np.concatenate([RNG.normal(size=(n, 3)) * 3, random_rotvecs(n)], axis=1)
    vj = np.concatenate([RNG.normal(size=(n, 3)) * 3, random_rotvecs(n)], axis=1)
    scale = np.where(np.arange(n) % 2 == 0, 1e-3, 1.0)[:, None]  # half of them almost exact
    vz = np.concatenate([RNG.normal(size=(n, 3)), random_rotvecs(n)], axis=1) * scale

    def both(a, b, c):
        ti, tj = se3.vec_to_matrix(a), se3.vec_to_matrix(b)
        z = se3.inverse(ti) @ tj @ se3.exp(c)  # the truth perturbed by c
        zero = jnp.zeros(6, dtype=a.dtype)
        reference = (se3.log(se3.inverse(z) @ se3.inverse(ti) @ tj),
                     jax.jacfwd(lambda d: se3.between_error(ti @ se3.exp(d), tj, z))(zero),
                     jax.jacfwd(lambda d: se3.between_error(ti, tj @ se3.exp(d), z))(zero))
        e, (ji, jj) = _between_jacobians(ti, tj, z)
        return (e, ji, jj), reference

    ours, reference = jax.jit(jax.vmap(both))(*(jnp.asarray(v) for v in (vi, vj, vz)))
    np.testing.assert_allclose(ours[0], reference[0], atol=1e-10)
    np.testing.assert_allclose(ours[1], reference[1], atol=1e-8)
    np.testing.assert_allclose(ours[2], reference[2], atol=1e-8)
