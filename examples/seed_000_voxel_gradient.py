"""Seed 000, "Differentiable Voxel Observations", as written (import prefix dsg_jit_ros).

A voxel at [-0.5, 0.2, 0] with a weak prior toward 0 and a strong observation at
[1, 0, 0]; Gauss-Newton moves it to the weighted optimum and jax.grad of the
post-solve loss w.r.t. the initial state is taken through the solver.
"""

import json

import jax
import jax.numpy as jnp

from dsg_jit_ros.optimization.solvers import GNConfig, gauss_newton_manifold
from dsg_jit_ros.slam.manifold import build_manifold_metadata
from dsg_jit_ros.slam.measurements import prior_residual, voxel_point_observation_residual
from dsg_jit_ros.world.model import WorldModel

wm = WorldModel()
wm.register_residual("prior", prior_residual)
wm.register_residual("voxel_point_obs", voxel_point_observation_residual)
voxel_id = wm.add_variable(var_type="voxel_cell3d", value=jnp.array([-0.5, 0.2, 0.0], dtype=jnp.float32))
wm.add_factor(f_type="prior", var_ids=(voxel_id,),
              params={"target": jnp.array([0.0, 0.0, 0.0], dtype=jnp.float32), "weight": 0.1})
target = jnp.array([1.0, 0.0, 0.0], dtype=jnp.float32)
wm.add_factor(f_type="voxel_point_obs", var_ids=(voxel_id,), params={"point_world": target, "weight": 10.0})

x0, index = wm.pack_state()
block_slices, manifold_types = build_manifold_metadata(packed_state=(x0, index), fg=wm.fg)
residual_fn = wm.build_residual()
voxel_slice = slice(*index[voxel_id])


def solve_and_loss(x0, cfg):
    x_opt = gauss_newton_manifold(residual_fn, x0, block_slices, manifold_types, cfg)
    return jnp.sum((x_opt[voxel_slice] - target) ** 2)


if __name__ == "__main__":
    out = {}
    for iters in (10, 1):
        cfg = GNConfig(max_iters=iters, damping=1e-3, max_step_norm=1.0)
        loss = jax.jit(lambda x: solve_and_loss(x, cfg))
        grad = jax.jit(jax.grad(lambda x: solve_and_loss(x, cfg)))
        g = grad(x0)
        x_opt = gauss_newton_manifold(residual_fn, x0, block_slices, manifold_types, cfg)
        out[f"gn_{iters}_iters"] = {
            "voxel_opt": [float(c) for c in x_opt[voxel_slice]],
            "loss": float(loss(x0)),
            "grad": [float(c) for c in g],
            "loss_after_grad_step": float(loss(x0 - 0.1 * g)),
        }
    out["closed_form_optimum_x"] = 100.0 / 100.01
    print(json.dumps(out, indent=1))
