"""File input/output: g2o pose graphs, TUM trajectories and ASCII PLY point clouds.

The submodules (``g2o``, ``tum``, ``ply``) use numpy only.  This package module holds
just the shared atomic-write helper, so importing a submodule never pulls in the
others.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write_text"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new file.

    The text goes to a temporary file in the destination directory, is flushed and
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
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as handle:
            handle.write(text)
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
