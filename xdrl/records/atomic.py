"""Atomic file writes: a crash leaves the previous file or the complete new one, never a torn file."""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

#: Suffix of the temporary files :func:`atomic_write` renames into place; a leftover is a write a crash cut.
TEMPORARY_SUFFIX = ".tmp"


def atomic_write(path: pathlib.Path, write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` fill a temporary file in the same directory, fsync it, then rename it to ``path``.

    The temporary file is ``.<name>.<random>.tmp`` beside ``path`` (see
    :func:`remove_partial_writes`).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_torch_save(obj: Any, path: pathlib.Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_partial_writes(*directories: pathlib.Path) -> list[pathlib.Path]:
    """Delete the temporary files that a process killed during :func:`atomic_write` left in ``directories``.

    Only the directories themselves are searched (not below): a run passes the
    folders it writes atomically into. Returns what was removed.

    Examples:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / ".trainer_00000003.pt.k2j1x.tmp").write_bytes(b"half")
        >>> [p.name for p in remove_partial_writes(folder)]
        ['.trainer_00000003.pt.k2j1x.tmp']
    """
    removed = []
    for directory in directories:
        if not pathlib.Path(directory).is_dir():
            continue
        for path in pathlib.Path(directory).glob(f".*{TEMPORARY_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
