"""Atomic creation of a file or directory: write to a hidden sibling, then rename."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_target", "remove_path"]


def remove_path(path: Path) -> None:
    """Remove a file, link or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _sibling(path: Path, tag: str) -> Path:
    """Hidden sibling path ``.name.<tag>-<random>`` in the same directory as ``path``."""
    return path.with_name(f".{path.name}.{tag}-{secrets.token_hex(4)}")


def _install(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``target``, replacing it only if ``overwrite``."""
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
        if tmp.is_file() and target.is_file():
            os.replace(tmp, target)  # atomic on POSIX
            return
        old = _sibling(target, "old")
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(old, target)
            raise
        remove_path(old)
        return
    os.rename(tmp, target)


@contextmanager
def atomic_target(target: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling path to write into; move it to ``target`` on success.

    The temporary is ``.<name>.tmp-<random>`` in ``target``'s directory, so the final rename
    stays on one file system. On any exception the temporary is removed and an existing
    ``target`` is left untouched.

    Parameters
    ----------
    target : path-like
        Final location (a file, or a directory for directory stores).
    overwrite : bool
        Replace an existing ``target`` once the new one is complete. When False an existing
        ``target`` raises :class:`FileExistsError`, checked before and after writing.

    Yields
    ------
    tmp : Path
        Path to create; it does not exist yet.
    """
    target = Path(target)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"directory {target.parent} does not exist (writing {target.name})")
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        _install(tmp, target, overwrite)
    except BaseException:
        remove_path(tmp)
        raise
