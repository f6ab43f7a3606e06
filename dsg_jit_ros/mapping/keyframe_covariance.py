"""The newest keyframe's pose covariance as the node publishes it: (6, 6), tangent
``[rho, phi]`` of ``T_map_body``, in the body frame.

It comes from the window's last solve (``SlidingWindow.newest_covariance``: at its
last linearisation point), or from the Hessian at the current state when the solver
keeps no factor.  Planar mode: the window's pose is the planar part P of T = P L;
the fixed components (z, roll, pitch) have zero variance, and the block is moved to
the body by Ad(L^-1) (T = P exp(d) L = T exp(Ad(L^-1) d)).
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.geometry.poses import adjoint_matrix
from dsg_jit_ros.mapping.planar import PLANAR_FIXED
from dsg_jit_ros.optimization.covariance import marginal_covariance


def newest_keyframe_covariance(window) -> np.ndarray:
    """(6, 6) covariance of ``window``'s (a ``SlidingWindow`` with a keyframe) newest
    keyframe pose, tangent [rho, phi], body frame (see the module doc)."""
    cov = window.newest_covariance()  # from the last solve's reduced system
    if cov is None:
        wm = window.wm
        x, _ = wm.pack_state()
        graph = wm.fg
        pos = graph.layout.position("pose_se3")
        cov = np.array(marginal_covariance(graph, x, pos, wm.variable_slot(window.newest_keyframe_var)))
    if window.planar:
        cov[PLANAR_FIXED] = 0.0
        cov[:, PLANAR_FIXED] = 0.0
        ad = adjoint_matrix(np.linalg.inv(window.newest_level))
        cov = ad @ cov @ ad.T
    return cov
