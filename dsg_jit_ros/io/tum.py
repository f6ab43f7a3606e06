"""TUM RGB-D trajectory files: one pose per line, ``t tx ty tz qx qy qz qw``.

``t`` is a timestamp in seconds; ``tx ty tz`` (metres) and the unit quaternion
``qx qy qz qw`` (scalar last) give ``T_world_body`` at that time.  Blank lines and
lines starting with ``#`` are skipped when reading.
"""

from __future__ import annotations

import math
import os

import numpy as np

from dsg_jit_ros.io import atomic_write_text
from dsg_jit_ros.io.text_numbers import finite_floats
from dsg_jit_ros.geometry.poses import QUAT_NORM_TOLERANCE, matrix_to_quat_xyzw, quat_xyzw_to_matrix

__all__ = ["write_tum", "read_tum"]


def write_tum(path: str | os.PathLike[str], stamps: np.ndarray, poses: np.ndarray) -> None:
    """Write (n,) timestamps [s] and (n, 4, 4) ``T_world_body`` poses [m] atomically.

    Values are written with ``repr`` so a round trip is exact up to the
    rotation -> quaternion -> rotation conversion (~1e-15).

    Raises:
        ValueError: on mismatched shapes or non-finite values.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    if stamps.ndim != 1 or poses.shape != (len(stamps), 4, 4):
        raise ValueError(f"write_tum: need stamps (n,) and poses (n, 4, 4), got {stamps.shape} and {poses.shape}")
    if not (np.all(np.isfinite(stamps)) and np.all(np.isfinite(poses))):
        raise ValueError("write_tum: non-finite stamps or poses")
    quats = matrix_to_quat_xyzw(poses[:, :3, :3])
    rows = np.column_stack([stamps, poses[:, :3, 3], quats]).tolist()
    text = "".join(" ".join(map(repr, row)) + "\n" for row in rows)
    atomic_write_text(path, "# timestamp tx ty tz qx qy qz qw\n" + text)


def read_tum(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory; returns ``(stamps (n,) [s], poses (n, 4, 4) T_world_body [m])``.

    Raises:
        ValueError: naming the 1-based line of a row without exactly 8 numbers, with
            a non-finite value, or with a quaternion whose norm differs from 1 by
            more than ``QUAT_NORM_TOLERANCE``.
    """
    path = os.fspath(path)
    rows: list[list[float]] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            if len(tokens) != 8:
                raise ValueError(f"{path} line {lineno}: expected 8 values, got {len(tokens)}")
            values = finite_floats(tokens, path, lineno)
            norm = math.sqrt(sum(v * v for v in values[4:]))
            if abs(norm - 1.0) > QUAT_NORM_TOLERANCE:
                raise ValueError(f"{path} line {lineno}: quaternion norm {norm:.6g} is not 1")
            rows.append(values)
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    poses = np.zeros((len(data), 4, 4))
    poses[:, :3, :3] = quat_xyzw_to_matrix(data[:, 4:])
    poses[:, :3, 3] = data[:, 1:4]
    poses[:, 3, 3] = 1.0
    return data[:, 0].copy(), poses
