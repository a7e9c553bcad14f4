"""The :class:`ObjectStore` protocol: a slab-chunked array ``[Ly, Lx, Lz, C]``.

One store type holds the object, its gradient, the support mask and each optimizer state
array. Subclasses implement storage only (:meth:`ObjectStore._read_slab` and
:meth:`ObjectStore._write_slab`); regions, whole-array access, filling and snapshots are
built here on top of them. A region crossing slab borders touches each slab once
(read-modify-write); what falls outside the array reads as ``fill_value`` and is dropped
on writes.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..physics.region import Region
from .layout import SlabLayout, SlabPiece, split_region, update_block

if TYPE_CHECKING:
    from .zarr_store import ZarrStore

__all__ = ["ObjectStore"]


class ObjectStore(abc.ABC):
    """Slab-chunked 4D array; slab ``i`` holds rows ``[i*h, min((i+1)*h, Ly))``.

    Parameters
    ----------
    layout : SlabLayout
        Shape ``(Ly, Lx, Lz, C)``, dtype, slab height ``h`` and outside value.
    """

    def __init__(self, layout: SlabLayout) -> None:
        self._layout = layout
        self._closed = False

    # -- storage: the only methods a subclass must write ------------------------------

    @abc.abstractmethod
    def _read_slab(self, i: int) -> np.ndarray:
        """A new array ``[y1 - y0, Lx, Lz, C]`` with slab ``i`` (``i`` already checked)."""

    @abc.abstractmethod
    def _write_slab(self, i: int, arr: np.ndarray) -> None:
        """Store ``arr`` (checked shape and dtype; may be a view the caller still owns)."""

    def _read_piece(self, piece: SlabPiece) -> np.ndarray:
        """Voxels ``slab[piece.rows, piece.cols]``; override to read less than a slab."""
        return self._read_slab(piece.slab)[piece.rows, piece.cols]

    def _read_pieces(self, pieces: Sequence[SlabPiece]) -> list[np.ndarray]:
        """:meth:`_read_piece` of each piece; override to fetch them all at once."""
        return [self._read_piece(p) for p in pieces]

    def _update_piece(self, piece: SlabPiece, values: np.ndarray, op: str) -> None:
        """Set or add ``values`` at ``piece``: one read-modify-write of its slab."""
        slab = self._read_slab(piece.slab)
        update_block(slab[piece.rows, piece.cols], values, op)
        self._write_slab(piece.slab, slab)

    def _close(self) -> None:
        """Release storage resources (files, futures); called once by :meth:`close`."""

    # -- layout -------------------------------------------------------------------------

    @property
    def layout(self) -> SlabLayout:
        """Shape, dtype, slab height and fill value together."""
        return self._layout

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(Ly, Lx, Lz, C)``."""
        return self._layout.shape

    @property
    def dtype(self) -> np.dtype:
        """Element type."""
        return self._layout.dtype

    @property
    def slab_height(self) -> int:
        """Rows per slab ``h``."""
        return self._layout.slab_height

    @property
    def n_slabs(self) -> int:
        """``ceil(Ly / h)``."""
        return self._layout.n_slabs

    @property
    def fill_value(self) -> tuple[float, ...]:
        """Per-channel value read outside the array, length C."""
        return self._layout.fill_value

    @property
    def read_only(self) -> bool:
        """True when writes are refused."""
        return False

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def slab_bounds(self, i: int) -> tuple[int, int]:
        """Rows ``(y0, y1)`` of slab ``i``; ``IndexError`` if there is no such slab."""
        return self._layout.slab_bounds(i)

    def slab_of_row(self, y: int) -> int:
        """Slab holding row ``y``; ``IndexError`` outside ``[0, Ly)``."""
        return self._layout.slab_of_row(y)

    def slabs_overlapping(self, y0: int, y1: int) -> range:
        """Slabs meeting rows ``[y0, y1)`` (clipped to the array; may be empty)."""
        return self._layout.slabs_overlapping(y0, y1)

    def iter_slabs(self) -> Iterator[tuple[int, int, int]]:
        """Yield ``(i, y0, y1)`` for every slab, in order; together they cover each row once."""
        for i in range(self.n_slabs):
            yield (i, *self.slab_bounds(i))

    # -- slabs --------------------------------------------------------------------------

    def read_slab(self, i: int) -> np.ndarray:
        """Copy of slab ``i``, ``[y1 - y0, Lx, Lz, C]``."""
        self._check_open()
        return self._read_slab(self._layout.check_slab(i))

    def write_slab(self, i: int, arr: np.ndarray) -> None:
        """Replace slab ``i`` by ``arr [y1 - y0, Lx, Lz, C]`` (cast to the store's dtype)."""
        self._check_writable()
        i = self._layout.check_slab(i)
        expected = self._layout.slab_shape(i)
        if tuple(np.shape(arr)) != expected:
            raise ValueError(f"slab {i} (rows {self.slab_bounds(i)}) must have shape "
                             f"{expected}, got shape {tuple(np.shape(arr))}")
        self._write_slab(i, np.asarray(arr, self.dtype))

    # -- regions ------------------------------------------------------------------------

    def read_region(self, region: Region) -> np.ndarray:
        """Copy of ``obj[y0:y0+ny, x0:x0+nx]``, ``[ny, nx, Lz, C]``; ``fill_value`` outside."""
        self._check_open()
        out = self._layout.fill_array(self._layout.region_shape(region))
        pieces = split_region(self._layout, region)
        for piece, block in zip(pieces, self._read_pieces(pieces)):
            out[piece.region_rows, piece.region_cols] = block
        return out

    def write_region(self, region: Region, arr: np.ndarray) -> None:
        """``obj[region] = arr [ny, nx, Lz, C]``; the part outside the array is dropped."""
        self._update_region(region, arr, "set")

    def add_region(self, region: Region, arr: np.ndarray) -> None:
        """``obj[region] += arr [ny, nx, Lz, C]``; the part outside the array is dropped."""
        self._update_region(region, arr, "add")

    def _update_region(self, region: Region, arr: np.ndarray, op: str) -> None:
        self._check_writable()
        self._layout.check_region_array(region, arr)
        values = np.asarray(arr, self.dtype)
        for piece in split_region(self._layout, region):
            self._update_piece(piece, values[piece.region_rows, piece.region_cols], op)

    # -- whole array --------------------------------------------------------------------

    def read_all(self) -> np.ndarray:
        """The whole array ``[Ly, Lx, Lz, C]`` in memory (only for arrays that fit)."""
        self._check_open()
        out = np.empty(self.shape, self.dtype)
        for i, y0, y1 in self.iter_slabs():
            out[y0:y1] = self._read_slab(i)
        return out

    def write_all(self, arr: np.ndarray) -> None:
        """Replace the whole array by ``arr [Ly, Lx, Lz, C]``, slab by slab."""
        self._check_writable()
        if tuple(np.shape(arr)) != self.shape:
            raise ValueError(f"write_all needs shape {self.shape}, got {tuple(np.shape(arr))}")
        for i, y0, y1 in self.iter_slabs():
            self._write_slab(i, np.asarray(arr[y0:y1], self.dtype))

    def fill(self, value: float | Sequence[float]) -> None:
        """Set every voxel to ``value`` (a number, or C per-channel numbers)."""
        self._check_writable()
        filler = SlabLayout.make(self.shape, self.dtype, self.slab_height, value)
        for i, y0, y1 in self.iter_slabs():
            self._write_slab(i, filler.fill_array((y1 - y0,) + self.shape[1:]))

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Copy the contents to a Zarr v3 directory at ``path``, atomically.

        Written slab by slab (one slab in memory at a time), one chunk per slab; an
        existing ``path`` is replaced only once the copy is complete. Returns the path.
        """
        self._check_open()
        from .zarr_store import write_snapshot  # deferred: zarr_store subclasses this class

        return write_snapshot(self, path)

    @staticmethod
    def open_snapshot(path: str | os.PathLike[str], mode: str = "r") -> "ZarrStore":
        """Open a snapshot written by :meth:`snapshot` (``mode`` ``'r'`` or ``'r+'``)."""
        from .zarr_store import ZarrStore

        return ZarrStore.open(path, mode=mode)

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Release the storage; later reads and writes raise ``ValueError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (f"<{type(self).__name__} shape={self.shape} dtype={self.dtype} "
                f"slab_height={self.slab_height}{state}>")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise PermissionError(f"{self!r} is read-only (opened with mode='r')")
