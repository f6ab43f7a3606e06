"""WorldModel: packing, capacities (no recompilation), parameters as data,
one weight convention, robust kernels, and clear errors for bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import (
    odom_se3_residual,
    pose_voxel_point_residual,
    prior_residual,
    voxel_point_observation_residual,
)
from dsg_jit_ros.world.graph import graph_cost
from dsg_jit_ros.world.model import WorldModel


def new_model(**caps):
    wm = WorldModel(**caps)
    wm.register_residual("prior", prior_residual)
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.register_residual("voxel_point_obs", voxel_point_observation_residual)
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    return wm


def test_pack_unpack_and_index():
    wm = new_model()
    p = wm.add_variable("pose_se3", [1, 2, 3, 0.1, 0.2, 0.3])
    v = wm.add_variable("voxel_cell3d", [4, 5, 6])
    q = wm.add_variable("pose_se3", [7, 8, 9, 0, 0, 0])
    x, index = wm.pack_state()
    assert x.dtype == jnp.float64 and x.shape == (15,)
    np.testing.assert_allclose(x[slice(*index[q])], [7, 8, 9, 0, 0, 0])
    np.testing.assert_allclose(x[slice(*index[v])], [4, 5, 6])
    values = wm.unpack_state(x.at[slice(*index[p])].set(0.5))
    np.testing.assert_allclose(values[p], np.full(6, 0.5))
    wm.update_from_state(x + 1.0)
    np.testing.assert_allclose(wm.get_variable_value(v), [5, 6, 7])


def test_cost_uses_one_weight_convention():
    # weight scales the residual: cost = 0.5 * weight^2 * |e|^2, for every factor type.
    wm = new_model()
    v = wm.add_variable("voxel_cell3d", [1.0, 0.0, 0.0])
    p = wm.add_variable("pose_se3", [0, 0, 0, 0, 0, 0])
    wm.add_factor("prior", (v,), {"target": jnp.zeros(3), "weight": 3.0})  # e = [1,0,0]
    wm.add_factor("voxel_point_obs", (v,), {"point_world": jnp.array([1.0, 2.0, 0.0]), "weight": 0.5})  # e=[0,-2,0]
    wm.add_factor("pose_voxel_point", (p, v), {"point_body": jnp.zeros(3), "sigma": 0.25})  # e=[1,0,0]
    info = np.diag([4.0, 1.0, 9.0])
    wm.add_factor("voxel_point_obs", (v,), {"point_world": jnp.array([0.0, 1.0, 1.0]), "information": info})
    x, _ = wm.pack_state()
    expected = 0.5 * (9.0 * 1 + 0.25 * 4 + 16.0 * 1 + (4 * 1 + 1 * 1 + 9 * 1))
    assert float(graph_cost(wm.fg, x)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kernel,k", [("huber", 0.5), ("cauchy", 0.7)])
def test_robust_kernel_cost_closed_form(kernel, k):
    wm = new_model()
    v = wm.add_variable("voxel_cell3d", [2.0, 0.0, 0.0])
    wm.add_factor("prior", (v,), {"target": jnp.zeros(3), "robust": (kernel, k)})
    x, _ = wm.pack_state()
    s = 4.0
    rho = 2 * k * np.sqrt(s) - k * k if kernel == "huber" else k * k * np.log1p(s / (k * k))
    assert float(graph_cost(wm.fg, x)) == pytest.approx(0.5 * rho, rel=1e-12)


def test_robust_kernel_limits_outlier_influence():
    # 5 consistent observations at x=1 and one outlier at x=11
    results = {}
    for kernel in (None, "huber", "cauchy"):
        wm = new_model()
        v = wm.add_variable("voxel_cell3d", [0.0, 0.0, 0.0])
        for target in [1.0] * 5 + [11.0]:
            params = {"point_world": jnp.array([target, 0.0, 0.0])}
            if kernel:
                params["robust"] = (kernel, 1.0)
            wm.add_factor("voxel_point_obs", (v,), params)
        x0, index = wm.pack_state()
        results[kernel] = float(solve(wm.fg, x0, cfg=LMConfig()).x[0])
    assert results[None] == pytest.approx(16.0 / 6.0, rel=1e-9)
    assert abs(results["huber"] - 1.0) < 0.25 and abs(results["cauchy"] - 1.0) < 0.1


def test_growing_padded_graph_compiles_once_and_uses_new_parameters():
    """Grow a capacity-padded chain factor by factor: one compilation in all, and
    every solve sees the factors and parameters added since (no stale values)."""
    n = 12
    wm = new_model(var_capacity={"pose_se3": n}, factor_capacity={"odom_se3": n, "prior": 2})
    cfg = LMConfig(max_iters=20)
    ids = [wm.add_variable("pose_se3", np.zeros(6))]
    wm.add_factor("prior", (ids[0],), {"target": np.zeros(6), "sigma": 1e-3})
    before = compile_count("levenberg_marquardt")
    for i in range(1, n):
        ids.append(wm.add_variable("pose_se3", np.zeros(6)))
        step = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.1])
        wm.add_factor("odom_se3", (ids[i - 1], ids[i]), {"measurement": step, "sigma": 0.1})
        x0, index = wm.pack_state()
        res = solve(wm.fg, x0, cfg=cfg)
        wm.update_from_state(res.x)
        assert float(res.cost) < 1e-12
    assert compile_count("levenberg_marquardt") - before == 1
    # change the prior target: the same compiled solver must use the new value
    fid = wm.factor_ids("prior")[0]
    wm.set_factor_params(fid, target=np.array([5.0, 0, 0, 0, 0, 0]))
    x0, index = wm.pack_state()
    res = solve(wm.fg, x0, cfg=cfg)
    np.testing.assert_allclose(res.x[slice(*index[ids[0]])][:3], [5.0, 0, 0], atol=1e-6)
    # remove the last factor: it no longer constrains the last pose's value
    last = wm.factor_ids("odom_se3")[-1]
    wm.remove_factor(last)
    x0, _ = wm.pack_state()
    res = solve(wm.fg, x0, cfg=cfg)
    assert compile_count("levenberg_marquardt") - before == 1
    assert float(res.cost) < 1e-10


def test_bad_input_raises_clear_errors():
    wm = new_model()
    v = wm.add_variable("voxel_cell3d", [0, 0, 0])
    with pytest.raises(KeyError, match="unknown variable type"):
        wm.add_variable("voxel", [0, 0, 0])
    with pytest.raises(ValueError, match="3 entries"):
        wm.add_variable("voxel_cell3d", [0, 0])
    with pytest.raises(ValueError, match="finite"):
        wm.add_variable("pose_se3", [0, 0, np.nan, 0, 0, 0])
    with pytest.raises(KeyError, match="no residual registered"):
        wm.add_factor("nope", (v,), {})
    with pytest.raises(KeyError, match="unknown variable id"):
        wm.add_factor("prior", (99,), {"target": np.zeros(3)})
    with pytest.raises(ValueError, match="finite"):
        wm.add_factor("prior", (v,), {"target": np.array([np.inf, 0, 0])})
    with pytest.raises(ValueError, match="residual failed"):
        wm.add_factor("prior", (v,), {"target": np.zeros(5)})
    with pytest.raises(ValueError, match="at most one"):
        wm.add_factor("prior", (v,), {"target": np.zeros(3), "weight": 1.0, "sigma": 1.0})
    with pytest.raises(ValueError, match="positive definite"):
        wm.add_factor("prior", (v,), {"target": np.zeros(3), "information": -np.eye(3)})
    with pytest.raises(ValueError, match="unknown robust kernel"):
        wm.add_factor("prior", (v,), {"target": np.zeros(3), "robust": "tukeyy"})
    f = wm.add_factor("prior", (v,), {"target": np.zeros(3)})
    with pytest.raises(ValueError, match="still has factors"):
        wm.remove_variable(v)
    wm.remove_factor(f)
    wm.remove_variable(v)
    assert wm.num_factors == 0 and wm.variable_ids == []


def test_add_factors_in_bulk_equals_one_by_one():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 3))
    targets = rng.normal(size=(6, 3))
    sigmas = rng.uniform(0.1, 1.0, size=6)
    infos = np.stack([np.diag(rng.uniform(1, 5, size=3)) for _ in range(6)])
    costs = []
    for bulk in (False, True):
        wm = new_model()
        ids = [wm.add_variable("voxel_cell3d", v) for v in values]
        if bulk:
            fids = wm.add_factors("voxel_point_obs", [[i] for i in ids], {"point_world": targets, "sigma": sigmas})
            wm.add_factors("prior", [[i] for i in ids], {"target": targets * 0, "information": infos, "robust": "huber"})
            assert list(fids) == list(range(6))
        else:
            for i, t, s in zip(ids, targets, sigmas):
                wm.add_factor("voxel_point_obs", (i,), {"point_world": t, "sigma": s})
            for i, info in zip(ids, infos):
                wm.add_factor("prior", (i,), {"target": np.zeros(3), "information": info, "robust": "huber"})
        x, _ = wm.pack_state()
        costs.append(float(graph_cost(wm.fg, x)))
    assert costs[0] == pytest.approx(costs[1], rel=1e-14)
    with pytest.raises(ValueError, match="stacked"):
        wm.add_factors("prior", [[ids[0]], [ids[1]]], {"target": np.zeros(3)})
    with pytest.raises(ValueError, match="same variable types"):
        p = wm.add_variable("pose_se3", np.zeros(6))
        wm.add_factors("prior", [[ids[0]], [p]], {"target": np.zeros((2, 3))})


def test_identical_graphs_of_two_models_share_one_compilation():
    def build():
        wm = new_model(var_capacity={"voxel_cell3d": 4}, factor_capacity={"prior": 4})
        v = wm.add_variable("voxel_cell3d", [1.0, 2.0, 3.0])
        wm.add_factor("prior", (v,), {"target": np.zeros(3)})
        return wm

    a, b = build(), build()
    assert jax.tree_util.tree_structure(a.fg) == jax.tree_util.tree_structure(b.fg)
    cfg = LMConfig(max_iters=7)  # a config no other test uses: a fresh cache entry
    before = compile_count("levenberg_marquardt")
    for wm in (a, b):
        x0, _ = wm.pack_state()
        np.testing.assert_allclose(solve(wm.fg, x0, cfg=cfg).x[:3], 0.0, atol=1e-9)
    assert compile_count("levenberg_marquardt") - before == 1


def test_removed_factors_free_their_slots_for_reuse():
    wm = new_model(var_capacity={"voxel_cell3d": 2}, factor_capacity={"prior": 2})
    v = wm.add_variable("voxel_cell3d", [0.0, 0.0, 0.0])
    for _ in range(10):  # add/remove many times within capacity 2: shapes never change
        f1 = wm.add_factor("prior", (v,), {"target": np.ones(3)})
        f2 = wm.add_factor("prior", (v,), {"target": np.ones(3)})
        assert wm.variable_factor_ids(v) == [f1, f2]
        wm.remove_factor(f1)
        wm.remove_factor(f2)
    assert wm.fg.batches[0].capacity == 2 and wm.variable_factor_ids(v) == []


def test_host_graph_is_the_device_graph_in_numpy_and_never_stale():
    """``host_graph`` (what the window passes to its jitted solve) holds the same arrays
    as ``fg``, read-only, rebuilt after every edit (an edit after a solve must not reach
    the arrays that solve read); both kinds of graph share one compiled solver."""
    wm = new_model(var_capacity={"pose_se3": 4}, factor_capacity={"odom_se3": 4, "prior": 1})
    a = wm.add_variable("pose_se3", np.zeros(6))
    b = wm.add_variable("pose_se3", np.zeros(6))
    wm.add_factor("prior", (a,), {"target": np.zeros(6), "sigma": 1e-3})
    fid = wm.add_factor("odom_se3", (a, b), {"measurement": np.array([1.0, 0, 0, 0, 0, 0]), "sigma": 0.1})
    host, dev = wm.host_graph, wm.fg
    assert wm.host_graph is host and wm.fg is dev  # cached while nothing changes
    host_leaves, dev_leaves = jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(dev)
    assert len(host_leaves) == len(dev_leaves) > 10
    for h, d in zip(host_leaves, dev_leaves):
        assert isinstance(h, np.ndarray) and not h.flags.writeable and isinstance(d, jax.Array)
        np.testing.assert_array_equal(h, np.asarray(d))
    with pytest.raises(ValueError):
        host.batches[0].sqrt_info[...] = 0.0
    cfg = LMConfig(max_iters=10)
    x0, index = wm.pack_state()
    before = compile_count("levenberg_marquardt")
    on_host = solve(host, x0, cfg=cfg)
    on_device = solve(dev, x0, cfg=cfg)
    np.testing.assert_array_equal(np.asarray(on_host.x), np.asarray(on_device.x))
    np.testing.assert_allclose(on_host.x[slice(*index[b])][:3], [1.0, 0.0, 0.0], atol=1e-6)
    wm.set_factor_params(fid, measurement=np.array([2.0, 0, 0, 0, 0, 0]))
    assert wm.host_graph is not host and wm.fg is not dev
    moved = solve(wm.host_graph, x0, cfg=cfg)
    np.testing.assert_allclose(moved.x[slice(*index[b])][:3], [2.0, 0.0, 0.0], atol=1e-6)
    assert compile_count("levenberg_marquardt") - before <= 1
    np.testing.assert_array_equal(np.asarray(on_host.x), np.asarray(on_device.x))  # the old result untouched
