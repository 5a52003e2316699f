"""Write a file or a directory so that readers see the old one or the new one, never half
of either, and the new one survives a power cut once the write has returned.

A directory is staged in a hidden sibling (``.<name>.tmp-<pid>``) and swapped in with one
``renameat2(RENAME_EXCHANGE)`` (Linux), so there is no moment when the target is missing;
elsewhere it falls back to two renames. Staged files and the parent directory are fsynced
before and after the swap. Leftover siblings of a killed writer (whose process is gone) are
removed by the next write. Hand-written: no library in the field does atomic *directory*
replacement (``atomicwrites`` and ``os.replace`` handle single files only).
"""

import ctypes
import ctypes.util
import functools
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``target``; on success swap it in atomically.

    On failure (or a kill) the temporary directory is removed, now or by the next write, and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        if target.exists() and _exchange(staging, target):
            shutil.rmtree(staging)  # it now holds the previous version
        else:
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            if target.exists():
                target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        fsync_path(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_siblings(target: Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` and ``.<name>.old-<pid>`` siblings left by a writer
    that was killed (its process no longer runs); returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)")
    removed = []
    for sibling in target.parent.glob(f".{target.name}.*-*"):
        match = pattern.fullmatch(sibling.name)
        if match and not _running(int(match.group(1))):
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` (``root`` included) to disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _renameat2():
    path = ctypes.util.find_library("c")
    function = getattr(ctypes.CDLL(path, use_errno=True), "renameat2", None) if path else None
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where that is not available."""
    function = _renameat2()
    if function is None:
        return False
    at_cwd = -100  # AT_FDCWD
    return function(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


class LocalPathDataset:
    """What the directory datasets share: a local ``filepath``, optional ``metadata``
    and a description for kedro-viz."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _damaged(self, error: Exception) -> Exception:
        """The error for a directory whose files fail to parse (a truncated safetensors, a
        broken config): it names the directory and how to rebuild it."""
        from kedro.io import DatasetError

        return DatasetError(
            f"{self._filepath} is damaged or truncated ({type(error).__name__}: {error}); "
            "write it again with `dvc repro` (or the `kedro run` of the stage that makes it)"
        )
