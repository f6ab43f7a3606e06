"""Read and write pose graphs in the g2o text format (numpy + scipy only).

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
has been read.  An edge naming a vertex id that no VERTEX line declares anywhere is
an error (file, line and id in the message) unless ``missing_vertices="compose"``:
then each undeclared vertex is placed by composing edge measurements along a
spanning tree that prefers edges between consecutive ids (the odometry chain of a
sequential graph), starting from the declared vertices, or at the identity for a
connected group with no declared vertex.  Files holding only EDGE lines, such as
Olson's ``manhattan.g2o``, need this.

Information matrices must be positive definite over the observed tangent
components (all six in 3D; ``x, y, theta`` in 2D): an edge whose smallest
eigenvalue is not above ``INFORMATION_PD_RTOL`` times its largest is an error
naming the file, line and vertex ids, unless ``repair_information`` is given:

* ``"nearest_pd"``: eigenvalues raised to at least ``REPAIR_EIGEN_FLOOR`` times the
  largest (the nearest such matrix in the Frobenius norm; well-observed
  directions are kept exactly);
* ``"isotropic"``: ``(trace / size) * I`` per block, translation (m^-2) and
  rotation (rad^-2) separately, because one scalar across both would mix units.

Repaired edges are listed in ``PoseGraph.repaired_edges``.

SE(2) data is embedded in SE(3) with z = 0 and rotations about z; its 3x3
information over ``[x, y, theta]`` lands at tangent indices 0, 1 and 5 and every
entry involving ``z``, ``rx`` or ``ry`` is 0 (not observed); ``PoseGraph.planar`` is
then True.  ``slam.pose_graph.world_model_from_pose_graph`` then holds z, roll and
pitch of every pose fixed and whitens with the 3x3 block, which reproduces the
SE(2) cost of GTSAM's ``BetweenFactorPose2`` (SE(3)'s log of a rotation about z
with an in-plane translation equals SE(2)'s log).  ``FIX`` lines and unknown tags
are skipped and counted in ``PoseGraph.ignored``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from dsg_jit_ros.io import atomic_write_text

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

#: Largest accepted deviation of a file quaternion's norm from 1 before normalising.
QUAT_NORM_TOLERANCE = 1e-3
#: An information matrix counts as positive definite when its smallest eigenvalue
#: exceeds this fraction of its largest (parking-garage.g2o goes down to 4e-10).
INFORMATION_PD_RTOL = 1e-12
#: ``repair_information="nearest_pd"`` raises eigenvalues to this fraction of the largest.
REPAIR_EIGEN_FLOOR = 1e-6
#: Accepted values of ``read_g2o(repair_information=...)``.
REPAIR_OPTIONS = (None, "nearest_pd", "isotropic")
#: Accepted values of ``read_g2o(missing_vertices=...)``.
MISSING_VERTEX_OPTIONS = ("error", "compose")

# Number of values after the tag for each supported line type.
_FIELD_COUNTS = {"VERTEX_SE3:QUAT": 8, "EDGE_SE3:QUAT": 30, "VERTEX_SE2": 4, "EDGE_SE2": 11}
_TAG_DIM = {"VERTEX_SE3:QUAT": 3, "EDGE_SE3:QUAT": 3, "VERTEX_SE2": 2, "EDGE_SE2": 2}
# Tangent indices [x, y, theta] of an SE(2) information matrix inside the SE(3) 6x6.
_SE2_TANGENT = np.array([0, 1, 5])
# Translation / rotation blocks (indices into the observed information) per dimension.
_BLOCKS = {3: (np.arange(3), np.arange(3, 6)), 2: (np.arange(2), np.arange(2, 3))}


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


def quat_xyzw_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions ``[qx, qy, qz, qw]``, shape (..., 4) -> (..., 3, 3).

    The quaternion is normalised first; ``R @ p`` rotates a point p.
    """
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quat_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[qx, qy, qz, qw]`` (with ``qw >= 0``) from rotations, (..., 3, 3) -> (..., 4).

    Uses the symmetric matrix ``M = 4 q q^T`` built from the rotation entries and
    reads ``q`` off its row with the largest diagonal (Shepperd's method), which is
    accurate for every rotation angle.
    """
    r = np.asarray(rotation, dtype=np.float64)
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # Rows/columns ordered [w, x, y, z]; M[a, b] = 4 q_a q_b for an exact rotation.
    outer = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], axis=-1),
            np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], axis=-1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], axis=-1),
        ],
        axis=-2,
    )
    best = np.argmax(np.diagonal(outer, axis1=-2, axis2=-1), axis=-1)
    row = np.take_along_axis(outer, best[..., None, None], axis=-2)[..., 0, :]
    q_wxyz = row / np.linalg.norm(row, axis=-1, keepdims=True)
    q_wxyz = np.where(q_wxyz[..., :1] < 0, -q_wxyz, q_wxyz)
    return np.concatenate([q_wxyz[..., 1:], q_wxyz[..., :1]], axis=-1)


def _transforms(translation: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Stack (k, 3) translations and (k, 3, 3) rotations into (k, 4, 4) transforms."""
    out = np.zeros((len(translation), 4, 4))
    out[:, :3, :3] = rotation
    out[:, :3, 3] = translation
    out[:, 3, 3] = 1.0
    return out


def _yaw_matrices(theta: np.ndarray) -> np.ndarray:
    """(k,) yaw angles in radians -> (k, 3, 3) rotations about +z."""
    c, s = np.cos(theta), np.sin(theta)
    rot = np.zeros((len(theta), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
    rot[:, 2, 2] = 1.0
    return rot


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


def _information_from_upper(upper: np.ndarray, size: int) -> np.ndarray:
    """(k, size*(size+1)/2) row-major upper-triangular entries -> (k, size, size) symmetric."""
    rows, cols = np.triu_indices(size)
    info = np.zeros((len(upper), size, size))
    info[:, rows, cols] = upper
    info[:, cols, rows] = upper
    return info


def _observed_index(dim: int) -> np.ndarray:
    """Tangent indices of the 6x6 information that a ``dim``-D edge observes."""
    return _SE2_TANGENT if dim == 2 else np.arange(6)


def _not_positive_definite(info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bad mask (m,), eigenvalues (m, d) ascending) of (m, d, d) symmetric matrices.

    Bad = smallest eigenvalue not above ``INFORMATION_PD_RTOL`` times the largest
    (or no positive eigenvalue at all): the Cholesky whitening would fail or be
    meaningless.
    """
    if len(info) == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, info.shape[-1]))
    eig = np.linalg.eigvalsh(info)
    bad = (eig[:, -1] <= 0.0) | (eig[:, 0] <= INFORMATION_PD_RTOL * eig[:, -1])
    return bad, eig


def _repair_information(info: np.ndarray, eig: np.ndarray, method: str, dim: int) -> np.ndarray:
    """Positive definite replacements for (r, d, d) information matrices (``method``).

    ``nearest_pd``: eigenvalues clipped below at ``REPAIR_EIGEN_FLOOR`` times the
    largest, eigenvectors kept.  ``isotropic``: ``trace(block) / size * I`` for the
    translation and the rotation block.  Returns the repaired (r, d, d) stack and
    a (r,) mask of matrices that could not be repaired (no positive eigenvalue, or
    a block with a non-positive trace).
    """
    if method == "nearest_pd":
        failed = eig[:, -1] <= 0.0
        _, vecs = np.linalg.eigh(info)
        clipped = np.maximum(eig, REPAIR_EIGEN_FLOOR * eig[:, -1:])
        return (vecs * clipped[:, None, :]) @ np.swapaxes(vecs, 1, 2), failed
    out = np.zeros_like(info)
    failed = np.zeros(len(info), dtype=bool)
    for block in _BLOCKS[dim]:
        scale = np.trace(info[:, block[:, None], block[None, :]], axis1=1, axis2=2) / len(block)
        failed |= scale <= 0.0
        out[:, block, block] = scale[:, None]
    return out, failed


def _check_information(
    information: np.ndarray, dim: int, repair: str | None, path: str, lines: list[int], edge_ids: np.ndarray
) -> np.ndarray:
    """Validate (and with ``repair`` fix, in place) the observed information blocks.

    Returns the (r,) int64 rows of the repaired edges; raises ValueError naming the
    first offending edge (file, line, vertex ids) when ``repair`` is None or cannot
    fix it.
    """
    obs = _observed_index(dim)
    block = information[:, obs[:, None], obs[None, :]]
    bad, eig = _not_positive_definite(block)
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return rows.astype(np.int64)
    tag = "EDGE_SE2" if dim == 2 else "EDGE_SE3:QUAT"

    def where(e: int) -> str:
        return f"{path} line {lines[e]}: {tag} {edge_ids[e, 0]} {edge_ids[e, 1]}"

    if repair is None:
        e = rows[0]
        raise ValueError(
            f"{where(e)}: information matrix is not positive definite (eigenvalues {eig[e, 0]:.6g} .. "
            f"{eig[e, -1]:.6g}; {rows.size} of {len(block)} edges in the file are affected). "
            f"To read the file anyway pass read_g2o(..., repair_information='nearest_pd') to raise eigenvalues "
            f"to {REPAIR_EIGEN_FLOOR:g} x the largest (keeps the well-observed directions), or "
            f"repair_information='isotropic' to replace each by trace/size times the identity per "
            f"translation/rotation block"
        )
    repaired, failed = _repair_information(block[rows], eig[rows], repair, dim)
    if failed.any():
        e = rows[np.flatnonzero(failed)[0]]
        raise ValueError(
            f"{where(e)}: information matrix (eigenvalues {eig[e, 0]:.6g} .. {eig[e, -1]:.6g}) cannot be "
            f"repaired with repair_information={repair!r}: "
            + ("it has no positive eigenvalue" if repair == "nearest_pd" else "a block has a non-positive trace")
        )
    information[rows[:, None, None], obs[None, :, None], obs[None, None, :]] = repaired
    return rows.astype(np.int64)


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
    missing_vertices: str = "error",
) -> PoseGraph:
    """Read a 2D (``VERTEX_SE2``/``EDGE_SE2``) or 3D (``*_SE3:QUAT``) g2o file.

    VERTEX and EDGE lines may appear in any order.

    Args:
        path: the file.
        repair_information: None (default: a non positive definite information
            matrix is an error), ``"nearest_pd"`` or ``"isotropic"`` (see the
            module docstring); repaired edge rows go to ``PoseGraph.repaired_edges``.
        missing_vertices: ``"error"`` (default) or ``"compose"``: place vertices
            that only edges mention by composing measurements (module docstring).
            Undeclared vertices follow the declared ones, in ascending id order.

    Raises:
        ValueError: on a malformed line (wrong number of fields, non-integer id,
            non-numeric or non-finite value, quaternion norm off by more than
            ``QUAT_NORM_TOLERANCE``, duplicate vertex id, mixing 2D and 3D tags),
            an edge whose vertex is declared nowhere in the file (unless
            ``missing_vertices="compose"``) or an information matrix that is not
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
            f"the file declares it; {undeclared.size} ids are undeclared; read_g2o(..., missing_vertices="
            f"'compose') places such vertices by composing edge measurements)"
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
        information = _information_from_upper(edges[:, 7:], 6)
    else:
        zeros_v, zeros_e = np.zeros((len(vertices), 1)), np.zeros((len(edges), 1))
        poses = _transforms(np.hstack([vertices[:, :2], zeros_v]), _yaw_matrices(vertices[:, 2]))
        measurements = _transforms(np.hstack([edges[:, :2], zeros_e]), _yaw_matrices(edges[:, 2]))
        information = np.zeros((len(edges), 6, 6))
        information[:, _SE2_TANGENT[:, None], _SE2_TANGENT[None, :]] = _information_from_upper(edges[:, 3:], 3)
    repaired = _check_information(information, dim, repair_information, path, edge_lines, edge_id_arr)

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
    )


def _format_row(values: np.ndarray) -> str:
    """Space-separated shortest round-trip (``repr``) representation of floats."""
    return " ".join(map(repr, np.asarray(values, dtype=np.float64).tolist()))


#: Largest out-of-plane entry (z in metres, rotation matrix entries) ``write_g2o``
#: accepts in a planar graph it writes as SE(2) lines.
PLANAR_WRITE_TOLERANCE = 1e-9


def _off_plane(transforms: np.ndarray) -> float:
    """Largest deviation of (k, 4, 4) transforms from z = 0 with rotation about z."""
    if len(transforms) == 0:
        return 0.0
    t = transforms
    return float(max(np.abs(t[:, 2, 3]).max(), np.abs(t[:, 2, :2]).max(), np.abs(t[:, :2, 2]).max(),
                     np.abs(t[:, 2, 2] - 1.0).max()))


def _se2_lines(graph: PoseGraph) -> list[str]:
    """``VERTEX_SE2`` / ``EDGE_SE2`` lines of a planar graph (x, y in m, yaw in rad)."""
    for name in ("poses", "measurements"):
        dev = _off_plane(getattr(graph, name))
        if dev > PLANAR_WRITE_TOLERANCE:
            raise ValueError(f"write_g2o: planar graph.{name} is off the plane by {dev:.3g}")
    unobserved = np.setdiff1d(np.arange(6), _SE2_TANGENT)
    if np.any(graph.information[:, unobserved, :]) or np.any(graph.information[:, :, unobserved]):
        raise ValueError("write_g2o: planar graph.information has entries in the z, roll or pitch rows")

    def xy_yaw(t: np.ndarray) -> np.ndarray:
        return np.stack([t[:, 0, 3], t[:, 1, 3], np.arctan2(t[:, 1, 0], t[:, 0, 0])], axis=1)

    rows, cols = np.triu_indices(3)
    info = graph.information[:, _SE2_TANGENT[:, None], _SE2_TANGENT[None, :]]
    lines = [f"VERTEX_SE2 {vid} {_format_row(v)}" for vid, v in zip(graph.ids.tolist(), xy_yaw(graph.poses))]
    id_i, id_j = graph.ids[graph.edge_i].tolist(), graph.ids[graph.edge_j].tolist()
    lines += [
        f"EDGE_SE2 {a} {b} {_format_row(z)} {_format_row(w[rows, cols])}"
        for a, b, z, w in zip(id_i, id_j, xy_yaw(graph.measurements), info)
    ]
    return lines


def write_g2o(path: str | os.PathLike[str], graph: PoseGraph) -> None:
    """Write ``graph`` as g2o text, atomically: ``*_SE3:QUAT`` lines, or ``*_SE2`` if planar.

    Floats are written with ``repr`` (shortest exact round trip), so re-reading
    reproduces translations and information exactly and rotations to ~1e-15.
    Planar graphs (``graph.planar``) are written as ``VERTEX_SE2`` / ``EDGE_SE2``
    with their 3x3 information over (x, y, yaw): in the 3D format their zero z,
    roll and pitch rows would make the information singular, which ``read_g2o``
    rejects.

    Raises:
        ValueError: if any pose, measurement or information entry is non-finite,
            or a planar graph has a pose or measurement off the plane (more than
            ``PLANAR_WRITE_TOLERANCE``) or information on z, roll or pitch.
    """
    for name in ("poses", "measurements", "information"):
        if not np.all(np.isfinite(getattr(graph, name))):
            raise ValueError(f"write_g2o: graph.{name} has non-finite entries")
    if graph.planar:
        lines = _se2_lines(graph)
        atomic_write_text(path, "\n".join(lines) + "\n" if lines else "")
        return
    pose_q = matrix_to_quat_xyzw(graph.poses[:, :3, :3])
    meas_q = matrix_to_quat_xyzw(graph.measurements[:, :3, :3])
    rows, cols = np.triu_indices(6)
    lines = [
        f"VERTEX_SE3:QUAT {vid} {_format_row(T[:3, 3])} {_format_row(q)}"
        for vid, T, q in zip(graph.ids.tolist(), graph.poses, pose_q)
    ]
    id_i, id_j = graph.ids[graph.edge_i].tolist(), graph.ids[graph.edge_j].tolist()
    lines += [
        f"EDGE_SE3:QUAT {a} {b} {_format_row(T[:3, 3])} {_format_row(q)} {_format_row(info[rows, cols])}"
        for a, b, T, q, info in zip(id_i, id_j, graph.measurements, meas_q, graph.information)
    ]
    atomic_write_text(path, "\n".join(lines) + "\n" if lines else "")
