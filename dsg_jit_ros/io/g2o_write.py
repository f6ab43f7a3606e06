"""Write pose graphs as g2o text: ``write_g2o`` and its SE(3) / SE(2) line formatting.

3D graphs become ``VERTEX_SE3:QUAT`` / ``EDGE_SE3:QUAT`` lines; planar graphs
(``PoseGraph.planar``) become ``VERTEX_SE2`` / ``EDGE_SE2`` lines with their 3x3
information over ``x, y, yaw``.  Conventions are those of ``dsg_jit_ros.io.g2o``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from dsg_jit_ros.io import atomic_write_text
from dsg_jit_ros.io.g2o_information import SE2_TANGENT
from dsg_jit_ros.geometry.poses import matrix_to_quat_xyzw, yaw_of

if TYPE_CHECKING:  # annotations only, never at run time: g2o.py imports this module
    from dsg_jit_ros.io.g2o import PoseGraph

__all__ = ["write_g2o", "PLANAR_WRITE_TOLERANCE"]


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
    unobserved = np.setdiff1d(np.arange(6), SE2_TANGENT)
    if np.any(graph.information[:, unobserved, :]) or np.any(graph.information[:, :, unobserved]):
        raise ValueError("write_g2o: planar graph.information has entries in the z, roll or pitch rows")

    def xy_yaw(t: np.ndarray) -> np.ndarray:
        return np.stack([t[:, 0, 3], t[:, 1, 3], yaw_of(t)], axis=1)

    rows, cols = np.triu_indices(3)
    info = graph.information[:, SE2_TANGENT[:, None], SE2_TANGENT[None, :]]
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
