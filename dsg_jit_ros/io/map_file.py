"""The map file (``map.npz``): every keyframe with its pose and voxel observations.

A numpy ``.npz`` archive (uncompressed, no pickled objects) with these arrays:

- ``format``: the string ``"dsg_jit_ros.map"``; ``version``: int (written: 2; this
  reader also reads version 1, which has no loop edges);
- ``voxel_size`` (m), ``planar`` (bool: poses are planar parts, see ``mapping.planar``);
- per keyframe (n): ``stamps`` (s), ``poses`` (n, 4, 4) ``T_map_body`` as estimated
  (planar part in planar mode), ``levels`` (n, 4, 4) with ``T_map_body = pose @ level``,
  ``key_poses`` (n, 4, 4) the pose its observations were keyed under;
- the observations of all keyframes, concatenated (m rows), keyframe ``i`` owning rows
  ``cell_offsets[i]:cell_offsets[i + 1]``: ``keys`` (packed voxel keys), ``count``,
  ``mean_body`` (m, 3) and ``scatter_body`` (m, 3, 3) in the keyframe's body frame (m, m^2);
- the loop edges of the global graph (L, version 2): ``loop_nodes`` (L, 2) the
  keyframe indices (older, newer), ``loop_poses`` (L, 4, 4) the measured
  ``T_older_newer`` and ``loop_sqrt_info`` (L, 6, 6) each edge's square-root
  information (whitened residual ``W log(Z^-1 T_older^-1 T_newer)``, tangent
  [rho (m), phi (rad)] in the newer keyframe's frame; rows of zeros: directions the
  loop leaves free, see ``mapping.loop_information``).

Written atomically; read with every field checked, so a truncated, corrupted or
foreign file gives one ``MapFileError`` sentence naming what is wrong.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.io import atomic_write_bytes

FORMAT = "dsg_jit_ros.map"
VERSION = 2
READABLE = (1, 2)  # version 1: no loop edges
__all__ = ["FORMAT", "VERSION", "MapFileError", "MapState", "read_map", "write_map"]


class MapFileError(ValueError):
    """A map file that cannot be used (the message says why)."""


@dataclass(frozen=True)
class MapState:
    """What a map file holds (see the module doc for units and frames)."""

    voxel_size: float
    planar: bool
    stamps: np.ndarray
    poses: np.ndarray
    levels: np.ndarray
    key_poses: np.ndarray
    cell_offsets: np.ndarray
    keys: np.ndarray
    count: np.ndarray
    mean_body: np.ndarray
    scatter_body: np.ndarray
    loop_nodes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    loop_poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    loop_sqrt_info: np.ndarray = field(default_factory=lambda: np.zeros((0, 6, 6)))

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    def rows(self, i: int) -> slice:
        """Observation rows of keyframe ``i``."""
        return slice(int(self.cell_offsets[i]), int(self.cell_offsets[i + 1]))


_ARRAYS = ("stamps", "poses", "levels", "key_poses", "cell_offsets", "keys", "count", "mean_body", "scatter_body")
_LOOP_ARRAYS = ("loop_nodes", "loop_poses", "loop_sqrt_info")  # version 2


def write_map(path: str | os.PathLike[str], state: MapState) -> None:
    """Write ``state`` to ``path`` (``.npz``) atomically; ValueError if it is inconsistent."""
    _check(state, "write_map")
    buf = io.BytesIO()
    np.savez(buf, format=np.array(FORMAT), version=np.array(VERSION), voxel_size=np.array(float(state.voxel_size)),
             planar=np.array(bool(state.planar)), **{k: getattr(state, k) for k in _ARRAYS + _LOOP_ARRAYS})
    atomic_write_bytes(path, buf.getvalue())


def read_map(path: str | os.PathLike[str]) -> MapState:
    """Read and check a map file; ``MapFileError`` naming the problem otherwise."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise MapFileError(f"map file {name}: no such file")
    try:
        with np.load(name, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise MapFileError(f"map file {name}: not readable (truncated or corrupted?): {err}") from None
    if "format" not in fields or str(fields["format"]) != FORMAT:
        raise MapFileError(f"map file {name}: not a {FORMAT} file")
    version = int(fields.get("version", -1))
    if version not in READABLE:
        raise MapFileError(f"map file {name}: format version {version}, this reader reads versions "
                           f"{', '.join(map(str, READABLE))}")
    loops = _LOOP_ARRAYS if version >= 2 else ()
    missing = [k for k in _ARRAYS + loops + ("voxel_size", "planar") if k not in fields]
    if missing:
        raise MapFileError(f"map file {name}: missing {', '.join(missing)}")
    state = MapState(float(fields["voxel_size"]), bool(fields["planar"]), *(fields[k] for k in _ARRAYS),
                     **{k: fields[k] for k in loops})
    try:
        _check(state, f"map file {name}")
    except ValueError as err:
        raise MapFileError(str(err)) from None
    return state


def _check(s: MapState, where: str) -> None:
    n, m = len(s.stamps), len(s.keys)
    shapes = {"poses": (n, 4, 4), "levels": (n, 4, 4), "key_poses": (n, 4, 4), "cell_offsets": (n + 1,),
              "count": (m,), "mean_body": (m, 3), "scatter_body": (m, 3, 3)}
    n_loops = len(s.loop_nodes)
    shapes.update({"loop_nodes": (n_loops, 2), "loop_poses": (n_loops, 4, 4), "loop_sqrt_info": (n_loops, 6, 6)})
    for k, shape in shapes.items():
        if getattr(s, k).shape != shape:
            raise ValueError(f"{where}: {k} has shape {getattr(s, k).shape}, expected {shape}")
    if s.stamps.ndim != 1 or s.keys.ndim != 1:
        raise ValueError(f"{where}: stamps and keys must be 1-D")
    if not s.voxel_size > 0:
        raise ValueError(f"{where}: voxel_size must be positive, got {s.voxel_size}")
    for k in ("stamps", "poses", "levels", "key_poses", "count", "mean_body", "scatter_body", "loop_poses",
              "loop_sqrt_info"):
        if not np.all(np.isfinite(getattr(s, k))):
            raise ValueError(f"{where}: {k} holds non-finite values")
    off = s.cell_offsets
    if n and (off[0] != 0 or off[-1] != m or np.any(np.diff(off) < 0)):
        raise ValueError(f"{where}: cell_offsets do not partition the {m} observations")
    if np.any(np.diff(s.stamps) <= 0):
        raise ValueError(f"{where}: keyframe stamps are not increasing")
    nodes = s.loop_nodes
    if n_loops and (not np.issubdtype(nodes.dtype, np.integer) or nodes.min() < 0 or nodes.max() >= n
                    or np.any(nodes[:, 0] >= nodes[:, 1])):
        raise ValueError(f"{where}: loop_nodes must be keyframe indices (older, newer), older first")
    for k in ("poses", "levels", "key_poses", "loop_poses"):
        r = getattr(s, k)[:, :3, :3]
        if len(r) and np.abs(r @ np.swapaxes(r, 1, 2) - np.eye(3)).max() > 1e-6:
            raise ValueError(f"{where}: {k} are not rigid transforms")
    if m and np.any(s.count <= 0):
        raise ValueError(f"{where}: observation counts must be positive")
