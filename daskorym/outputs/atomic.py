"""Atomic writes: build a hidden temporary beside the target, fsync it, then rename it in.

A reader (or a later run after a crash) sees either the old content or the new content,
never a half-written file. Temporaries are named ``.<name>.tmp-<random>`` (files and new
directories) and ``.<name>.tmp-old-<random>`` (a replaced directory moved aside), in the
target's own directory so that every rename stays on one file system.

Replacing a directory takes two renames (old aside, new in). If a process dies between
them, :func:`restore_interrupted` puts the old directory back; :func:`atomic_dir` calls it,
and removes temporaries left by killed writers, before it starts (:func:`atomic_file` removes
those of its file). A write that fails because the disk is full raises
:class:`~daskorym.outputs.errors.DiskFullError` naming the target.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import DiskFullError

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_save_npy",
    "atomic_write_bytes",
    "atomic_write_text",
    "disk_full_error",
    "fsync_dir",
    "remove_stale_temps",
    "restore_interrupted",
    "temp_sibling",
]

_OLD_TAG = "tmp-old"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full_error(err: BaseException, target: Path, kept: str = "") -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``target`` if ``err`` says the disk is full, else None.

    ``kept`` says what is left of the earlier content (default: the previous file, if any,
    is unchanged).

    ``np.save`` reports a short write as ``OSError('N requested and M written')`` without an
    errno; that is taken as a full disk too.
    """
    if not isinstance(err, OSError) or isinstance(err, DiskFullError):
        return None
    if err.errno not in _DISK_FULL and not (err.errno is None and "requested and" in str(err)):
        return None
    try:
        free = f"{shutil.disk_usage(target.parent).free} bytes free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        err.errno or errno.ENOSPC,
        f"cannot write {target}: the disk is full ({err.strerror or err}; {free} in "
        f"{target.parent}); {kept or f'the previous {target.name}, if any, was left as it was'}"
        ": free some space or choose another output folder",
    )


def temp_sibling(target: Path, tag: str = "tmp") -> Path:
    """Hidden, unique sibling ``.<name>.<tag>-<random>`` of ``target``."""
    return target.with_name(f".{target.name}.{tag}-{secrets.token_hex(6)}")


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (bottom-up), then ``root`` itself."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            _fsync_file(Path(dirpath, name))
        fsync_dir(Path(dirpath))


def _remove(path: Path) -> None:
    """Remove a file or directory tree if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _check_parent(target: Path) -> None:
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}: directory {target.parent} does not exist"
        )


@contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write a file into; fsync and rename it to ``target`` on success.

    Temporaries of ``target`` left by killed writers are removed first (one writer per
    target is assumed). On any exception the temporary is removed and an existing ``target``
    is left as it was; a full disk raises :class:`DiskFullError` naming ``target``.

    Parameters
    ----------
    target : path-like
        Final file path; its directory must exist.

    Yields
    ------
    tmp : Path
        Path of the file to create (it does not exist yet).
    """
    target = Path(target)
    _check_parent(target)
    remove_stale_temps(target)
    tmp = temp_sibling(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException as err:
        _remove(tmp)
        full = disk_full_error(err, target)
        if full is not None:
            raise full from err
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename). Returns the path."""
    with atomic_file(path) as tmp:
        with open(tmp, "xb") as handle:
            handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike[str], arr: np.ndarray) -> Path:
    """Save ``arr`` as ``.npy`` atomically, without pickle. Returns the path.

    Parameters
    ----------
    path : path-like
        Target file, normally ending in ``.npy``.
    arr : ndarray, any shape, non-object dtype
        Array to save; object arrays raise ``ValueError`` (pickle is not allowed).
    """
    with atomic_file(path) as tmp:
        with open(tmp, "xb") as handle:
            np.save(handle, np.asanyarray(arr), allow_pickle=False)
    return Path(path)


def restore_interrupted(target: str | os.PathLike[str]) -> bool:
    """Put back a directory moved aside by a replace that was killed before it finished.

    Returns True if ``target`` was missing and an aside copy ``.<name>.tmp-old-*`` was
    restored (the newest one, by modification time).
    """
    target = Path(target)
    if target.exists() or target.is_symlink() or not target.parent.is_dir():
        return False
    asides = sorted(target.parent.glob(f".{target.name}.{_OLD_TAG}-*"), key=os.path.getmtime)
    if not asides:
        return False
    os.rename(asides[-1], target)
    fsync_dir(target.parent)
    return True


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries ``.<name>.tmp*`` left beside ``target`` by killed writers.

    Only call this when no other process is writing ``target``. Returns the removed paths.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = sorted(target.parent.glob(f".{target.name}.tmp-*"))
    for path in stale:
        _remove(path)
    return stale


def _install_dir(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target``; keep the old one until then."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    old = temp_sibling(target, _OLD_TAG)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    fsync_dir(target.parent)
    _remove(old)


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; rename it into place on success.

    Before starting, a directory left moved aside by a killed replace is restored and stale
    temporaries of ``target`` are removed (one writer per target is assumed). On success
    every file in the temporary is fsynced, then it replaces ``target`` (the old directory
    is moved aside, the new one moved in, the old one deleted; if the second move fails the
    old one is moved back). On any exception the temporary is removed and ``target`` is
    left as it was; a full disk raises :class:`DiskFullError` naming ``target``.

    Parameters
    ----------
    target : path-like
        Final directory path; its parent must exist.

    Yields
    ------
    tmp : Path
        An existing, empty directory to fill.
    """
    target = Path(target)
    _check_parent(target)
    restore_interrupted(target)
    remove_stale_temps(target)
    tmp = temp_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        _install_dir(tmp, target)
    except BaseException as err:
        _remove(tmp)
        full = disk_full_error(err, target)
        if full is not None:
            raise full from err
        raise
    fsync_dir(target.parent)
