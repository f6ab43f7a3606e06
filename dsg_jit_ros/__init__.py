"""dsg_jit_ros: online, differentiable factor-graph SLAM on JAX.

Importing the package enables JAX float64 support (``jax_enable_x64``): Gauss-Newton
normal equations of pose graphs lose about half their digits in float32, and the
oracle tests compare against GTSAM (double precision) at 1e-6 relative.  Arrays a
caller creates as float32 stay float32; the WorldModel packs its state in float64.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
