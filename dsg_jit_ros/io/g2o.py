"""Read g2o pose graph files into a ``PoseGraph`` (numpy + scipy only).

Conventions used throughout:

* ``poses[k]`` is ``T_world_body`` of vertex ``ids[k]``: a 4x4 homogeneous transform
  mapping body-frame points to the world frame; translations in metres.
* ``measurements[e]`` is ``T_i_j`` for edge ``e``: the pose of body ``j`` expressed in
  body ``i``'s frame, so that ideally ``T_world_j = T_world_i @ T_i_j``.
* ``information[e]`` is the 6x6 information matrix (inverse covariance) of the edge,
  in tangent order ``[tx, ty, tz, rx, ry, rz]`` (translation in metres first,
  rotation in radians second), exactly as ``EDGE_SE3:QUAT`` stores it.
* Quaternions in files are ``qx qy qz qw`` (scalar last, Hamilton convention).

Supported lines::

    VERTEX_SE3:QUAT id x y z qx qy qz qw
    EDGE_SE3:QUAT   i j x y z qx qy qz qw  I11 I12 .. I16 I22 .. I66   (21 upper-tri)
    VERTEX_SE2      id x y theta
    EDGE_SE2        i j dx dy dtheta  I11 I12 I13 I22 I23 I33           (over x, y, theta)

Line order: VERTEX and EDGE lines may come in any order (g2o does not require
vertices first); edges are resolved against the vertices of the whole file once it
has been read.  A vertex id that edges name but no VERTEX line declares is, by
default (``missing_vertices="compose"``), placed by composing edge measurements
along a spanning tree that prefers edges between consecutive ids (the odometry
chain of a sequential graph), starting from the declared vertices, or at the
identity for a connected group with no declared vertex; ``PoseGraph.composed_vertices``
counts them.  This reads files holding only EDGE lines, such as Olson's
``manhattan.g2o``, as GTSAM's ``readG2o`` does (it chains odometry for them).
``missing_vertices="error"`` is the strict option: an undeclared id is then an
error naming the file, line and id.

Information matrices are parsed, checked for positive definiteness and optionally
repaired by ``dsg_jit_ros.io.g2o_information``; repaired edges are listed in
``PoseGraph.repaired_edges``.

SE(2) data is embedded in SE(3) with z = 0 and rotations about z; its 3x3
information over ``[x, y, theta]`` lands at tangent indices 0, 1 and 5 and every
entry involving ``z``, ``rx`` or ``ry`` is 0 (not observed); ``PoseGraph.planar`` is
then True.  ``slam.pose_graph.world_model_from_pose_graph`` then holds z, roll and
pitch of every pose fixed and whitens with the 3x3 block, which reproduces the
SE(2) cost of GTSAM's ``BetweenFactorPose2`` (SE(3)'s log of a rotation about z
with an in-plane translation equals SE(2)'s log).  ``FIX`` lines and unknown tags
are skipped and counted in ``PoseGraph.ignored``.

Writing lives in ``dsg_jit_ros.io.g2o_write`` and the quaternion conversions in
``dsg_jit_ros.geometry.poses``; ``write_g2o``, the conversions and the information
constants are re-exported here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from dsg_jit_ros.io.g2o_information import (
    INFORMATION_PD_RTOL,
    REPAIR_EIGEN_FLOOR,
    REPAIR_OPTIONS,
    SE2_TANGENT,
    check_information,
    information_from_upper,
)
from dsg_jit_ros.io.g2o_write import write_g2o
from dsg_jit_ros.geometry.poses import QUAT_NORM_TOLERANCE, matrix_to_quat_xyzw, quat_xyzw_to_matrix, yaw_matrices

__all__ = [
    "PoseGraph",
    "read_g2o",
    "write_g2o",
    "quat_xyzw_to_matrix",
    "matrix_to_quat_xyzw",
    "QUAT_NORM_TOLERANCE",
    "INFORMATION_PD_RTOL",
    "REPAIR_EIGEN_FLOOR",
    "REPAIR_OPTIONS",
    "MISSING_VERTEX_OPTIONS",
]

#: Accepted values of ``read_g2o(missing_vertices=...)``.
MISSING_VERTEX_OPTIONS = ("error", "compose")

# Number of values after the tag for each supported line type.
_FIELD_COUNTS = {"VERTEX_SE3:QUAT": 8, "EDGE_SE3:QUAT": 30, "VERTEX_SE2": 4, "EDGE_SE2": 11}
_TAG_DIM = {"VERTEX_SE3:QUAT": 3, "EDGE_SE3:QUAT": 3, "VERTEX_SE2": 2, "EDGE_SE2": 2}


@dataclass
class PoseGraph:
    """A pose graph with vertices stored in file order.

    Attributes:
        dim: 2 for graphs read from SE(2) lines, 3 otherwise.
        ids: (n,) int64 vertex ids as written in the file.
        poses: (n, 4, 4) float64 ``T_world_body`` per vertex (metres).
        edge_i, edge_j: (m,) int64 row indices into ``poses`` (not raw ids).
        measurements: (m, 4, 4) float64 ``T_i_j``, pose of ``j`` in ``i``'s frame.
        information: (m, 6, 6) float64 inverse covariance over
            ``[tx, ty, tz, rx, ry, rz]`` (metres, radians).
        planar: True when only ``x, y, yaw`` are observed (SE(2) source); the
            ``z, rx, ry`` rows and columns of ``information`` are then zero.
        ignored: count of skipped lines per tag (``FIX`` and unknown tags).
        repaired_edges: (r,) int64 edge rows whose information ``read_g2o``
            replaced because it was not positive definite (``repair_information``).
        composed_vertices: how many vertices ``read_g2o`` placed by composing edge
            measurements because no VERTEX line declared them (0 when all were).
    """

    dim: int
    ids: np.ndarray
    poses: np.ndarray
    edge_i: np.ndarray
    edge_j: np.ndarray
    measurements: np.ndarray
    information: np.ndarray
    planar: bool = False
    ignored: dict[str, int] = field(default_factory=dict)
    repaired_edges: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    composed_vertices: int = 0

    def __post_init__(self) -> None:
        n, m = len(self.ids), len(self.edge_i)
        shapes = {
            "ids": (self.ids.shape, (n,)),
            "poses": (self.poses.shape, (n, 4, 4)),
            "edge_j": (self.edge_j.shape, (m,)),
            "measurements": (self.measurements.shape, (m, 4, 4)),
            "information": (self.information.shape, (m, 6, 6)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"PoseGraph.{name} has shape {got}, expected {want}")
        if self.dim not in (2, 3):
            raise ValueError(f"PoseGraph.dim must be 2 or 3, got {self.dim}")
        for name in ("edge_i", "edge_j"):
            idx = getattr(self, name)
            if m and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"PoseGraph.{name} holds row indices outside [0, {n})")

    @property
    def num_poses(self) -> int:
        """Number of vertices ``n``."""
        return int(len(self.ids))

    @property
    def num_edges(self) -> int:
        """Number of edges ``m``."""
        return int(len(self.edge_i))


def _transforms(translation: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Stack (k, 3) translations and (k, 3, 3) rotations into (k, 4, 4) transforms."""
    out = np.zeros((len(translation), 4, 4))
    out[:, :3, :3] = rotation
    out[:, :3, 3] = translation
    out[:, 3, 3] = 1.0
    return out



def _unit_quats(q_xyzw: np.ndarray, lines: np.ndarray, path: str) -> np.ndarray:
    """Normalise (k, 4) file quaternions; raise ValueError naming the first bad line."""
    norms = np.linalg.norm(q_xyzw, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > QUAT_NORM_TOLERANCE)
    if bad.size:
        k = bad[0]
        raise ValueError(f"{path} line {lines[k]}: quaternion norm {norms[k]:.6g} is not 1")
    return q_xyzw / norms[:, None]


def _parse_values(tokens: list[str], n_ids: int, lineno: int, path: str) -> tuple[list[int], list[float]]:
    """Split the tokens after a tag into integer ids and finite floats."""
    try:
        ids = [int(tok) for tok in tokens[:n_ids]]
    except ValueError:
        raise ValueError(f"{path} line {lineno}: vertex ids must be integers: {tokens[:n_ids]}") from None
    try:
        values = [float(tok) for tok in tokens[n_ids:]]
    except ValueError as exc:
        raise ValueError(f"{path} line {lineno}: non-numeric value ({exc})") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{path} line {lineno}: non-finite value")
    return ids, values


def _compose_undeclared(
    n: int, declared: np.ndarray, declared_poses: np.ndarray, ids: np.ndarray,
    edge_rows: np.ndarray, measurements: np.ndarray,
) -> np.ndarray:
    """(n, 4, 4) poses: declared rows kept, the others composed along a spanning tree.

    The tree is a minimum spanning tree with edge cost ``1 + |id_i - id_j|`` (so
    odometry edges between consecutive ids are preferred over loop closures) on the
    vertices plus a virtual root joined to every declared vertex at cost 0.5.  A
    vertex reached from ``p`` over edge ``e`` gets ``T_p @ Z_e`` (edge p -> v) or
    ``T_p @ inv(Z_e)`` (edge v -> p).  A group of vertices with no declared vertex
    is rooted at its smallest id, placed at the identity.
    """
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[declared] = declared_poses
    root = n  # virtual root
    a, b = edge_rows[:, 0], edge_rows[:, 1]
    keep = a != b
    cost = 1.0 + np.abs(ids[a] - ids[b]).astype(np.float64)
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    src = np.concatenate([lo, np.full(declared.size, root)])
    dst = np.concatenate([hi, declared])
    weight = np.concatenate([cost[keep], np.full(declared.size, 0.5)])
    # Duplicate pairs: keep the cheapest entry (coo -> csr would sum them).
    order = np.lexsort((weight, dst, src))
    src, dst, weight = src[order], dst[order], weight[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    graph = sp.csr_matrix((weight[first], (src[first], dst[first])), shape=(n + 1, n + 1))
    tree = minimum_spanning_tree(graph)
    tree = tree + tree.T
    # Edge index per unordered vertex pair (first edge in file order).
    edge_of = {}
    for e in np.flatnonzero(keep)[::-1].tolist():
        edge_of[(int(min(a[e], b[e])), int(max(a[e], b[e])))] = e
    _, labels = connected_components(tree, directed=False)
    placed = np.zeros(n + 1, dtype=bool)
    placed[declared] = True
    placed[root] = True
    by_id = np.argsort(ids, kind="stable")
    group, first = np.unique(labels[by_id], return_index=True)
    starts = [root] + by_id[first[group != labels[root]]].tolist()  # smallest id of each other group
    for start in starts:
        order, pred = breadth_first_order(tree, start, directed=False, return_predecessors=True)
        for v in order[1:].tolist():
            p = int(pred[v])
            if placed[v] or p == root:
                continue
            e = edge_of[(min(p, v), max(p, v))]
            z = measurements[e] if a[e] == p else np.linalg.inv(measurements[e])
            poses[v] = poses[p] @ z
            placed[v] = True
    return poses


def read_g2o(
    path: str | os.PathLike[str],
    *,
    repair_information: str | None = None,
    missing_vertices: str = "compose",
) -> PoseGraph:
    """Read a 2D (``VERTEX_SE2``/``EDGE_SE2``) or 3D (``*_SE3:QUAT``) g2o file.

    VERTEX and EDGE lines may appear in any order.

    Args:
        path: the file.
        repair_information: None (default: a non positive definite information
            matrix is an error), ``"nearest_pd"`` or ``"isotropic"`` (see the
            module docstring); repaired edge rows go to ``PoseGraph.repaired_edges``.
        missing_vertices: ``"compose"`` (default; as GTSAM's ``readG2o``): place
            vertices that only edges mention by composing measurements (module
            docstring), counted in ``PoseGraph.composed_vertices``; they follow the
            declared ones, in ascending id order.  ``"error"``: reject them.

    Raises:
        ValueError: on a malformed line (wrong number of fields, non-integer id,
            non-numeric or non-finite value, quaternion norm off by more than
            ``QUAT_NORM_TOLERANCE``, duplicate vertex id, mixing 2D and 3D tags),
            an edge whose vertex is declared nowhere in the file (only with
            ``missing_vertices="error"``) or an information matrix that is not
            positive definite (unless repaired).  The message names the file and
            the 1-based line number.
    """
    if repair_information not in REPAIR_OPTIONS:
        raise ValueError(f"repair_information must be one of {REPAIR_OPTIONS}, got {repair_information!r}")
    if missing_vertices not in MISSING_VERTEX_OPTIONS:
        raise ValueError(f"missing_vertices must be one of {MISSING_VERTEX_OPTIONS}, got {missing_vertices!r}")
    path = os.fspath(path)
    dim = 0
    vertex_lines: list[int] = []
    vertex_ids: list[int] = []
    vertex_values: list[list[float]] = []
    edge_lines: list[int] = []
    edge_ids: list[list[int]] = []
    edge_values: list[list[float]] = []
    ignored: dict[str, int] = {}
    declared_ids: set[int] = set()

    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            tag = tokens[0]
            if tag not in _FIELD_COUNTS:
                ignored[tag] = ignored.get(tag, 0) + 1
                continue
            if len(tokens) - 1 != _FIELD_COUNTS[tag]:
                raise ValueError(
                    f"{path} line {lineno}: {tag} needs {_FIELD_COUNTS[tag]} values, got {len(tokens) - 1}"
                )
            if dim and _TAG_DIM[tag] != dim:
                raise ValueError(f"{path} line {lineno}: {tag} in a {dim}D graph (mixed 2D/3D tags)")
            dim = _TAG_DIM[tag]
            is_edge = tag.startswith("EDGE")
            ids, values = _parse_values(tokens[1:], 2 if is_edge else 1, lineno, path)
            if is_edge:
                edge_lines.append(lineno)
                edge_ids.append(ids)
                edge_values.append(values)
            else:
                if ids[0] in declared_ids:
                    raise ValueError(f"{path} line {lineno}: duplicate vertex id {ids[0]}")
                declared_ids.add(ids[0])
                vertex_lines.append(lineno)
                vertex_ids.append(ids[0])
                vertex_values.append(values)

    # Edges are resolved only now, so an edge may precede its vertices in the file.
    n_declared = len(vertex_ids)
    edge_id_arr = np.asarray(edge_ids, dtype=np.int64).reshape(-1, 2)
    undeclared = np.setdiff1d(edge_id_arr.ravel(), np.asarray(vertex_ids, dtype=np.int64))
    if undeclared.size and missing_vertices == "error":
        e = int(np.flatnonzero(np.isin(edge_id_arr, undeclared).any(axis=1))[0])
        vid = next(v for v in edge_ids[e] if v not in declared_ids)
        raise ValueError(
            f"{path} line {edge_lines[e]}: edge references unknown vertex id {vid} (no VERTEX line anywhere in "
            f"the file declares it; {undeclared.size} ids are undeclared; missing_vertices='error' was asked for, "
            f"the default missing_vertices='compose' places such vertices by composing edge measurements)"
        )
    ids = np.concatenate([np.asarray(vertex_ids, dtype=np.int64), undeclared])
    by_id = np.argsort(ids, kind="stable")
    edge_rows = by_id[np.searchsorted(ids[by_id], edge_id_arr)].astype(np.int64)

    dim = dim or 3
    width = {3: (7, 28), 2: (3, 9)}[dim]
    vertices = np.asarray(vertex_values, dtype=np.float64).reshape(-1, width[0])
    edges = np.asarray(edge_values, dtype=np.float64).reshape(-1, width[1])
    if dim == 3:
        vertex_q = _unit_quats(vertices[:, 3:7], np.array(vertex_lines), path)
        edge_q = _unit_quats(edges[:, 3:7], np.array(edge_lines), path)
        poses = _transforms(vertices[:, :3], quat_xyzw_to_matrix(vertex_q))
        measurements = _transforms(edges[:, :3], quat_xyzw_to_matrix(edge_q))
        information = information_from_upper(edges[:, 7:], 6)
    else:
        zeros_v, zeros_e = np.zeros((len(vertices), 1)), np.zeros((len(edges), 1))
        poses = _transforms(np.hstack([vertices[:, :2], zeros_v]), yaw_matrices(vertices[:, 2]))
        measurements = _transforms(np.hstack([edges[:, :2], zeros_e]), yaw_matrices(edges[:, 2]))
        information = np.zeros((len(edges), 6, 6))
        information[:, SE2_TANGENT[:, None], SE2_TANGENT[None, :]] = information_from_upper(edges[:, 3:], 3)
    repaired = check_information(information, dim, repair_information, path, edge_lines, edge_id_arr)

    if undeclared.size:
        poses = _compose_undeclared(len(ids), np.arange(n_declared), poses, ids, edge_rows, measurements)

    return PoseGraph(
        dim=dim,
        ids=ids,
        poses=poses,
        edge_i=edge_rows[:, 0].copy(),
        edge_j=edge_rows[:, 1].copy(),
        measurements=measurements,
        information=information,
        planar=dim == 2,
        ignored=ignored,
        repaired_edges=repaired,
        composed_vertices=int(undeclared.size),
    )

