"""Building a WorldModel from a pose graph (g2o / GTSAM style).

Poses become ``pose_se3`` variables, edges ``between_se3`` factors weighted by
their 6x6 information (translation-first, as g2o stores it), and one isotropic
``prior`` anchors the gauge (GTSAM's examples do the same).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from dsg_jit_ros.io.g2o import PoseGraph
from dsg_jit_ros.slam.measurements import between_se3_residual, prior_residual
from dsg_jit_ros.world.model import WorldModel

ANCHOR_SIGMA = 1e-6  # metres / radians: effectively fixes the anchor pose


# Host (numpy / scipy) conversions, the same maps as ``se3.matrix_to_vec`` /
# ``se3.vec_to_matrix``: no jit, so no compile for each new number of poses
# (the online window converts 1..window poses at a time).


def pose_values(poses: np.ndarray) -> np.ndarray:
    """(n, 4, 4) T_world_body -> (n, 6) pose values [t, rotation vector] (angle in [0, pi])."""
    t = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    if t.shape[0] == 0:
        return np.zeros((0, 6))
    return np.concatenate([t[:, :3, 3], Rotation.from_matrix(t[:, :3, :3]).as_rotvec()], axis=1)


def pose_matrices(values: np.ndarray) -> np.ndarray:
    """(n, 6) pose values [t, rotation vector] -> (n, 4, 4) T_world_body."""
    v = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    out = np.zeros((v.shape[0], 4, 4))
    if v.shape[0]:
        out[:, :3, :3] = Rotation.from_rotvec(v[:, 3:]).as_matrix()
    out[:, :3, 3] = v[:, :3]
    out[:, 3, 3] = 1.0
    return out


def world_model_from_pose_graph(
    graph: PoseGraph,
    initial_poses: np.ndarray | None = None,
    anchor: int = 0,
    anchor_sigma: float = ANCHOR_SIGMA,
) -> tuple[WorldModel, list[int]]:
    """(WorldModel, variable id per pose row) for ``graph``, started at ``initial_poses``."""
    poses = graph.poses if initial_poses is None else initial_poses
    n, m = poses.shape[0], graph.edge_i.shape[0]
    wm = WorldModel(var_capacity={"pose_se3": n}, factor_capacity={"between_se3": m, "prior": 1})
    wm.register_residual("between_se3", between_se3_residual)
    wm.register_residual("prior", prior_residual)
    values = pose_values(poses)
    ids = [wm.add_variable("pose_se3", v) for v in values]
    wm.add_factor("prior", (ids[anchor],), {"target": values[anchor], "sigma": anchor_sigma})
    if m:
        id_arr = np.asarray(ids)
        pairs = np.stack([id_arr[graph.edge_i], id_arr[graph.edge_j]], axis=1)
        wm.add_factors("between_se3", pairs, {"T_ij": graph.measurements, "information": graph.information})
    return wm, ids
