"""File input/output: g2o pose graphs, TUM trajectories, ASCII PLY point clouds, map files.

The submodules use numpy only (``g2o`` also scipy): ``g2o`` (reading, ``PoseGraph``),
``g2o_information`` (edge information matrices), ``g2o_write``, ``quaternion``
(rotation conversions shared by g2o and TUM), ``tum``, ``ply``, ``map_file``.  This
package module holds just the shared atomic-write helpers, so importing a submodule
pulls in only the submodules it uses.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ASCII ``text`` to ``path`` atomically (``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("ascii"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file.

    The bytes go to a temporary file in the destination directory, are flushed and
    fsynced, then renamed over ``path`` with ``os.replace`` (atomic on POSIX within
    one filesystem).  An existing file's permission bits are kept; a new file gets
    0o644.  On any error the temporary file is removed and ``path`` is untouched.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(target) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
