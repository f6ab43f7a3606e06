"""dsg_jit_ros: online, differentiable factor-graph SLAM on JAX.

Importing the package
- enables JAX float64 support (``jax_enable_x64``): Gauss-Newton normal equations
  of pose graphs lose about half their digits in float32, and the oracle tests
  compare against GTSAM (double precision) at 1e-6 relative.  Arrays a caller
  creates as float32 stay float32; the WorldModel packs its state in float64.
- defaults ``OPENBLAS_NUM_THREADS`` to 1 (unless set): JAX's CPU LAPACK calls
  (Cholesky) run in scipy's OpenBLAS, whose threads otherwise fight XLA's for
  the cores; measured on 2 cores: a 162x162 Cholesky inside LM took 0.27 s
  instead of 0.2 ms.  Effective only if numpy/scipy are not yet imported.
- adds ``--xla_cpu_use_fusion_emitters=false`` to ``XLA_FLAGS`` unless the variable
  already sets that flag or ``DSG_JIT_ROS_KEEP_XLA_FLAGS=1``: on CPU it halves
  the compile time of our solvers (measured 6.5 s -> 3.4 s for LM on a pose
  graph) at equal run time.  It only takes effect if the package is imported
  before JAX first runs a computation.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_FLAG = "--xla_cpu_use_fusion_emitters=false"
if os.environ.get("DSG_JIT_ROS_KEEP_XLA_FLAGS") != "1" and "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
