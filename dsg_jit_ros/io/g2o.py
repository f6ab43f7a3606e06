"""Read and write pose graphs in the g2o text format (numpy only).

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

SE(2) data is embedded in SE(3) with z = 0 and rotations about z; its 3x3
information over ``[x, y, theta]`` lands at tangent indices 0, 1 and 5 and every
entry involving ``z``, ``rx`` or ``ry`` is 0 (not observed); ``PoseGraph.planar`` is
then True.  ``FIX`` lines and unknown tags are skipped and counted in
``PoseGraph.ignored``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.io import atomic_write_text

__all__ = [
    "PoseGraph",
    "read_g2o",
    "write_g2o",
    "quat_xyzw_to_matrix",
    "matrix_to_quat_xyzw",
    "QUAT_NORM_TOLERANCE",
]

#: Largest accepted deviation of a file quaternion's norm from 1 before normalising.
QUAT_NORM_TOLERANCE = 1e-3

# Number of values after the tag for each supported line type.
_FIELD_COUNTS = {"VERTEX_SE3:QUAT": 8, "EDGE_SE3:QUAT": 30, "VERTEX_SE2": 4, "EDGE_SE2": 11}
_TAG_DIM = {"VERTEX_SE3:QUAT": 3, "EDGE_SE3:QUAT": 3, "VERTEX_SE2": 2, "EDGE_SE2": 2}
# Tangent indices [x, y, theta] of an SE(2) information matrix inside the SE(3) 6x6.
_SE2_TANGENT = np.array([0, 1, 5])


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


def read_g2o(path: str | os.PathLike[str]) -> PoseGraph:
    """Read a 2D (``VERTEX_SE2``/``EDGE_SE2``) or 3D (``*_SE3:QUAT``) g2o file.

    Raises:
        ValueError: on a malformed line (wrong number of fields, non-integer id,
            non-numeric or non-finite value, quaternion norm off by more than
            ``QUAT_NORM_TOLERANCE``, duplicate vertex id, mixing 2D and 3D tags) or
            an edge whose vertex is not declared anywhere in the file.  The message
            names the 1-based line number.
    """
    path = os.fspath(path)
    dim = 0
    vertex_lines: list[int] = []
    vertex_ids: list[int] = []
    vertex_values: list[list[float]] = []
    edge_lines: list[int] = []
    edge_ids: list[list[int]] = []
    edge_values: list[list[float]] = []
    ignored: dict[str, int] = {}
    row_of_id: dict[int, int] = {}

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
                if ids[0] in row_of_id:
                    raise ValueError(f"{path} line {lineno}: duplicate vertex id {ids[0]}")
                row_of_id[ids[0]] = len(vertex_ids)
                vertex_lines.append(lineno)
                vertex_ids.append(ids[0])
                vertex_values.append(values)

    edge_rows = np.zeros((len(edge_ids), 2), dtype=np.int64)
    for k, (pair, lineno) in enumerate(zip(edge_ids, edge_lines)):
        for col, vid in enumerate(pair):
            if vid not in row_of_id:
                raise ValueError(f"{path} line {lineno}: edge references unknown vertex id {vid}")
            edge_rows[k, col] = row_of_id[vid]

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

    return PoseGraph(
        dim=dim,
        ids=np.asarray(vertex_ids, dtype=np.int64),
        poses=poses,
        edge_i=edge_rows[:, 0].copy(),
        edge_j=edge_rows[:, 1].copy(),
        measurements=measurements,
        information=information,
        planar=dim == 2,
        ignored=ignored,
    )


def _format_row(values: np.ndarray) -> str:
    """Space-separated shortest round-trip (``repr``) representation of floats."""
    return " ".join(map(repr, np.asarray(values, dtype=np.float64).tolist()))


def write_g2o(path: str | os.PathLike[str], graph: PoseGraph) -> None:
    """Write ``graph`` as ``VERTEX_SE3:QUAT`` / ``EDGE_SE3:QUAT`` lines, atomically.

    Floats are written with ``repr`` (shortest exact round trip), so re-reading
    reproduces translations and information exactly and rotations to ~1e-15.
    Planar (SE(2)-sourced) graphs are written in the 3D format as well; the zero
    rows of their information matrices are kept.

    Raises:
        ValueError: if any pose, measurement or information entry is non-finite.
    """
    for name in ("poses", "measurements", "information"):
        if not np.all(np.isfinite(getattr(graph, name))):
            raise ValueError(f"write_g2o: graph.{name} has non-finite entries")
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
