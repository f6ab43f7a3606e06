"""ASCII PLY point clouds: ``x y z`` as doubles (metres, in whatever frame the
caller's points are expressed, typically world) plus optional ``red green blue``
as uchar.

``read_ply`` accepts the files ``write_ply`` produces and, more generally, ASCII
PLY whose only non-empty element is ``vertex`` with scalar properties including
``x``, ``y``, ``z`` (other vertex properties are ignored).
"""

from __future__ import annotations

import os

import numpy as np

from dsg_jit_ros.io import atomic_write_text

__all__ = ["write_ply", "read_ply"]

_COLOR_NAMES = ("red", "green", "blue")


def write_ply(path: str | os.PathLike[str], points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write (n, 3) points [m] and optional (n, 3) uint8 RGB colours as ASCII PLY, atomically.

    Coordinates are written with ``repr`` (exact float64 round trip).

    Raises:
        ValueError: on wrong shapes, non-finite points, or colours outside 0..255.
        TypeError: if ``colors`` is not an integer array.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"write_ply: points must be (n, 3), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("write_ply: non-finite points")
    header = ["ply", "format ascii 1.0", "comment dsg_jit_ros", f"element vertex {len(pts)}"]
    header += [f"property double {axis}" for axis in "xyz"]
    rows = [" ".join(map(repr, p)) for p in pts.tolist()]
    if colors is not None:
        rgb = np.asarray(colors)
        if rgb.shape != pts.shape:
            raise ValueError(f"write_ply: colors must be {pts.shape}, got {rgb.shape}")
        if not np.issubdtype(rgb.dtype, np.integer):
            raise TypeError(f"write_ply: colors must be uint8 (integer), got {rgb.dtype}")
        if rgb.size and (rgb.min() < 0 or rgb.max() > 255):
            raise ValueError("write_ply: colors outside 0..255")
        header += [f"property uchar {name}" for name in _COLOR_NAMES]
        rows = [f"{row} {r} {g} {b}" for row, (r, g, b) in zip(rows, rgb.tolist())]
    header.append("end_header")
    atomic_write_text(path, "\n".join(header + rows) + "\n")


def _parse_header(lines: list[str], path: str) -> tuple[int, list[str], int]:
    """Return (vertex count, vertex property names, index of the first data line)."""
    if not lines or lines[0].strip() != "ply":
        raise ValueError(f"{path} line 1: not a PLY file")
    count, names, current = 0, [], None
    for k, line in enumerate(lines[1:], start=1):
        tokens = line.split()
        if not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        if tokens[0] == "end_header":
            if current is None:
                raise ValueError(f"{path}: no vertex element")
            return count, names, k + 1
        if tokens[0] == "format":
            if tokens[1:2] != ["ascii"]:
                raise ValueError(f"{path} line {k + 1}: only ASCII PLY is supported")
        elif tokens[0] == "element" and len(tokens) == 3:
            current = tokens[1]
            if current == "vertex":
                count = int(tokens[2])
            elif int(tokens[2]) != 0:
                raise ValueError(f"{path} line {k + 1}: unsupported non-empty element {current!r}")
        elif tokens[0] == "property" and current == "vertex":
            if len(tokens) != 3:
                raise ValueError(f"{path} line {k + 1}: list properties are not supported")
            names.append(tokens[2])
    raise ValueError(f"{path}: missing end_header")


def read_ply(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ASCII PLY; returns ``(points (n, 3) float64, colors (n, 3) uint8 or None)``.

    Raises:
        ValueError: on a malformed header, missing ``x``/``y``/``z``, a data line
            with the wrong number of values, or fewer data lines than declared.
    """
    path = os.fspath(path)
    with open(path, encoding="ascii") as handle:
        lines = handle.read().splitlines()
    count, names, start = _parse_header(lines, path)
    if not {"x", "y", "z"} <= set(names):
        raise ValueError(f"{path}: vertex element lacks x/y/z properties")
    body = lines[start : start + count]
    if len(body) != count:
        raise ValueError(f"{path}: header declares {count} vertices, file has {len(body)} data lines")
    data = np.zeros((count, len(names)))
    for k, line in enumerate(body):
        tokens = line.split()
        if len(tokens) != len(names):
            raise ValueError(f"{path} line {start + k + 1}: expected {len(names)} values, got {len(tokens)}")
        try:
            data[k] = [float(tok) for tok in tokens]
        except ValueError as exc:
            raise ValueError(f"{path} line {start + k + 1}: non-numeric value ({exc})") from None
    points = data[:, [names.index(axis) for axis in "xyz"]]
    colors = None
    if set(_COLOR_NAMES) <= set(names):
        colors = data[:, [names.index(c) for c in _COLOR_NAMES]].astype(np.uint8)
    return points, colors
