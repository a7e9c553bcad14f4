"""``loss.csv``: the append-only loss log, one row per batch.

Columns ``epoch,batch,loss,seconds`` (``batch`` is the batch index within the epoch,
``seconds`` the wall time of the batch or since the start, as the caller chooses). Rows are
appended and flushed as they come; this file is the one output that is not replaced
atomically. A row torn by a crash (no final newline) is ignored when reading and dropped by the next
:func:`append_loss` or by :func:`truncate_loss`, which a resumed run calls to forget the rows
written after its checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write_text, disk_full_error

__all__ = ["LOSS_CSV", "LOSS_HEADER", "append_loss", "read_loss", "truncate_loss"]

LOSS_CSV = "loss.csv"
LOSS_HEADER = "epoch,batch,loss,seconds"


def append_loss(path: Path, epoch: int, batch: int, loss: float, seconds: float) -> None:
    """Append one row to the loss log at ``path``, writing the header first if it is new.

    Parameters
    ----------
    path : Path
        The ``loss.csv`` file.
    epoch, batch : int
        Epoch and batch index within the epoch (both from 0).
    loss : float
        Loss value of this batch.
    seconds : float
        Time stamp or duration in seconds.
    """
    path = Path(path)
    row = f"{int(epoch)},{int(batch)},{float(loss)!r},{float(seconds)!r}\n"
    try:
        with open(path, "a+b") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end and _drop_torn_tail(handle, end, path) == 0:
                end = 0
            if end == 0:
                handle.write((LOSS_HEADER + "\n").encode())
            handle.write(row.encode())
            handle.flush()
    except OSError as err:  # a row torn by a full disk is dropped by the next append
        full = disk_full_error(err, path, "the rows written before were left as they were")
        if full is not None:
            raise full from err
        raise


def _drop_torn_tail(handle: BinaryIO, end: int, path: Path) -> int:
    """Cut a last line left without its newline by a crash; return the new file size."""
    start = max(0, end - 4096)
    handle.seek(start)
    tail = handle.read()
    if tail.endswith(b"\n"):
        return end
    cut = tail.rfind(b"\n")
    if cut < 0 and start > 0:
        raise ValueError(f"{path}: last line is over 4096 bytes long and unterminated")
    new_end = start + cut + 1
    handle.truncate(new_end)
    return new_end


def _rows(path: Path) -> list[tuple[tuple[int, int, float, float], str]]:
    """Parsed rows and their raw text; a torn last line is skipped."""
    text = path.read_text(encoding="utf-8")
    if not text:
        return []
    lines = text.split("\n")
    lines.pop()  # '' after the final newline, or a torn row without one
    if not lines or lines[0].strip() != LOSS_HEADER:
        raise ValueError(f"{path}: first line must be the header {LOSS_HEADER!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.strip().split(",")
        try:
            if len(fields) != 4:
                raise ValueError(f"expected 4 fields, found {len(fields)}")
            values = (int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3]))
        except ValueError as err:
            raise ValueError(f"{path}: line {number}: {line!r} is not a loss row ({err})") from err
        rows.append((values, line))
    return rows


def read_loss(path: Path) -> dict[str, np.ndarray]:
    """Read the loss log.

    Returns
    -------
    columns : dict
        ``epoch``, ``batch`` int64 [n]; ``loss``, ``seconds`` float64 [n]. Empty arrays if
        the file does not exist.
    """
    path = Path(path)
    rows = [values for values, _ in _rows(path)] if path.exists() else []
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return {
        "epoch": table[:, 0].astype(np.int64),
        "batch": table[:, 1].astype(np.int64),
        "loss": table[:, 2],
        "seconds": table[:, 3],
    }


def truncate_loss(path: Path, epoch: int, batch: int) -> int:
    """Keep the rows up to and including ``(epoch, batch)``; drop the rest (atomic rewrite).

    Rows are compared as ``(epoch, batch)`` pairs, so rows written after the checkpoint of
    a resumed run are removed. A missing file is left missing.

    Returns
    -------
    removed : int
        Number of rows dropped (a torn last row is dropped without being counted).
    """
    path = Path(path)
    if not path.exists():
        return 0
    rows = _rows(path)
    kept = [line for values, line in rows if values[:2] <= (int(epoch), int(batch))]
    atomic_write_text(path, "\n".join([LOSS_HEADER, *kept]) + "\n")
    return len(rows) - len(kept)
