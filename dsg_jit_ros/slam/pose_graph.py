"""Building a WorldModel from a pose graph (g2o / GTSAM style).

Poses become ``pose_se3`` variables, edges ``between_se3`` factors weighted by
their 6x6 information (translation-first, as g2o stores it), and one isotropic
``prior`` anchors the gauge (GTSAM's examples do the same).

Planar graphs (``PoseGraph.planar``, read from ``VERTEX_SE2``/``EDGE_SE2``) observe
only x, y and yaw: their information is zero in the z, roll and pitch rows, which
no Cholesky whitening accepts.  Those three tangent components of every pose are
held fixed (``WorldModel.set_fixed_dofs`` with ``mapping.planar.PLANAR_FIXED``)
and the unobserved diagonal is set to 1: with all poses and measurements planar
the residual's z, roll and pitch components are identically zero and have zero
derivative with respect to x, y and yaw, so that weight changes neither the cost
nor the steps.  The remaining cost ``0.5 * sum e' Omega e`` over ``[x, y, yaw]``,
with ``e`` the SE(3) log of ``Z^-1 T_i^-1 T_j``, is exactly GTSAM's
``BetweenFactorPose2`` cost: for a rotation about z and an in-plane translation
the SE(3) log equals SE(2)'s ``Pose2.Logmap`` (``test/test_posegraph_2d.py``
checks both numerically).
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.geometry.poses import pose_values, yaw_of
from dsg_jit_ros.io.g2o import PoseGraph
from dsg_jit_ros.mapping.planar import PLANAR_FIXED
from dsg_jit_ros.slam.measurements import between_se3_residual, prior_residual
from dsg_jit_ros.world.model import WorldModel

ANCHOR_SIGMA = 1e-6  # metres / radians: effectively fixes the anchor pose
#: Largest |z| (m) or out-of-plane rotation entry accepted in the starting poses of
#: a planar graph; smaller deviations (round-off of an initialiser) are projected away.
PLANAR_POSE_TOLERANCE = 1e-6
_UNOBSERVED_PLANAR = np.flatnonzero(PLANAR_FIXED)  # [rho_z, phi_x, phi_y]


def planar_information(information: np.ndarray) -> np.ndarray:
    """(m, 6, 6) copy of a planar graph's information with 1 on the unobserved diagonal.

    The z, roll and pitch rows/columns of an SE(2) edge's information are zero; a
    unit diagonal there makes the matrix positive definite without coupling to
    x, y, yaw.  Only valid when those components are held fixed (see module doc).
    """
    info = np.array(information, dtype=np.float64, copy=True)
    if np.any(info[:, _UNOBSERVED_PLANAR, :]) or np.any(info[:, :, _UNOBSERVED_PLANAR]):
        raise ValueError("planar graph information must be zero in the z, roll and pitch rows and columns")
    info[:, _UNOBSERVED_PLANAR, _UNOBSERVED_PLANAR] = 1.0
    return info


def project_planar(poses: np.ndarray) -> np.ndarray:
    """(n, 4, 4) poses with z = 0 and rotations about z only (yaw kept), exactly.

    Raises ValueError when a pose is further than ``PLANAR_POSE_TOLERANCE`` from
    the plane (z in metres, out-of-plane rotation matrix entries).
    """
    t = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    off_plane = np.concatenate([np.abs(t[:, 2, 3:4]), np.abs(t[:, 2, :2]), np.abs(t[:, :2, 2]),
                                np.abs(t[:, 2, 2:3] - 1.0)], axis=1)
    if off_plane.size and off_plane.max() > PLANAR_POSE_TOLERANCE:
        k = int(np.argmax(off_plane.max(axis=1)))
        raise ValueError(f"planar graph: starting pose row {k} is off the plane by {off_plane[k].max():.3g} "
                         f"(> {PLANAR_POSE_TOLERANCE:g}); planar graphs need z = 0 and rotations about z")
    yaw = yaw_of(t)
    out = np.tile(np.eye(4), (t.shape[0], 1, 1))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = np.cos(yaw), -np.sin(yaw), np.sin(yaw), np.cos(yaw)
    out[:, :2, 3] = t[:, :2, 3]
    return out


def world_model_from_pose_graph(
    graph: PoseGraph,
    initial_poses: np.ndarray | None = None,
    anchor: int = 0,
    anchor_sigma: float = ANCHOR_SIGMA,
) -> tuple[WorldModel, list[int]]:
    """(WorldModel, variable id per pose row) for ``graph``, started at ``initial_poses``.

    For a planar graph the starting poses are projected onto the plane (see
    ``project_planar``), z, roll and pitch of every pose are fixed and the edges
    are whitened by ``planar_information`` (module docstring).
    """
    poses = graph.poses if initial_poses is None else initial_poses
    information = graph.information
    if graph.planar:
        poses = project_planar(poses)
        information = planar_information(information)
    n, m = poses.shape[0], graph.edge_i.shape[0]
    wm = WorldModel(var_capacity={"pose_se3": n}, factor_capacity={"between_se3": m, "prior": 1})
    wm.register_residual("between_se3", between_se3_residual)
    wm.register_residual("prior", prior_residual)
    values = pose_values(poses)
    ids = [wm.add_variable("pose_se3", v) for v in values]
    if graph.planar:
        wm.set_fixed_dofs(ids, PLANAR_FIXED)
    wm.add_factor("prior", (ids[anchor],), {"target": values[anchor], "sigma": anchor_sigma})
    if m:
        id_arr = np.asarray(ids)
        pairs = np.stack([id_arr[graph.edge_i], id_arr[graph.edge_j]], axis=1)
        wm.add_factors("between_se3", pairs, {"T_ij": graph.measurements, "information": information})
    return wm, ids
