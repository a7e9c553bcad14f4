"""In-memory store: one numpy array ``[Ly, Lx, Lz, C]`` viewed as slabs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import ObjectStore
from .layout import SlabLayout, SlabPiece, update_block

__all__ = ["MemoryStore"]


class MemoryStore(ObjectStore):
    """A store held in one numpy array; new stores hold zeros.

    Parameters
    ----------
    shape : (Ly, Lx, Lz, C)
        Array shape.
    dtype : numpy dtype, default float32
        Element type.
    slab_height : int, optional
        Rows per slab; default ``min(Ly, 16)``.
    fill_value : float or C floats, default 0
        Value read outside the array.
    data : ndarray ``[Ly, Lx, Lz, C]``, optional
        Initial contents.
    copy : bool, default True
        Copy ``data``; with False (and matching dtype) the store works on ``data`` itself.
    """

    def __init__(self, shape: Sequence[int], dtype: object = np.float32,
                 slab_height: int | None = None, fill_value: float | Sequence[float] = 0.0,
                 data: np.ndarray | None = None, *, copy: bool = True) -> None:
        super().__init__(SlabLayout.make(shape, dtype, slab_height, fill_value))
        if data is None:
            self._data = np.zeros(self.shape, self.dtype)
            return
        if tuple(np.shape(data)) != self.shape:
            raise ValueError(f"data must have shape {self.shape}, got {tuple(np.shape(data))}")
        self._data = np.array(data, self.dtype, copy=True if copy else None)

    @classmethod
    def from_array(cls, data: np.ndarray, slab_height: int | None = None,
                   fill_value: float | Sequence[float] = 0.0, *,
                   copy: bool = True) -> "MemoryStore":
        """A store over ``data [Ly, Lx, Lz, C]`` with its shape and dtype."""
        data = np.asarray(data)
        return cls(data.shape, data.dtype, slab_height, fill_value, data, copy=copy)

    @property
    def data(self) -> np.ndarray:
        """The backing array itself (not a copy)."""
        self._check_open()
        return self._data

    def _read_slab(self, i: int) -> np.ndarray:
        y0, y1 = self.slab_bounds(i)
        return self._data[y0:y1].copy()

    def _write_slab(self, i: int, arr: np.ndarray) -> None:
        y0, y1 = self.slab_bounds(i)
        self._data[y0:y1] = arr

    def _read_piece(self, piece: SlabPiece) -> np.ndarray:
        return self._data[self._layout.object_rows(piece), piece.cols]

    def _update_piece(self, piece: SlabPiece, values: np.ndarray, op: str) -> None:
        update_block(self._data[self._layout.object_rows(piece), piece.cols], values, op)

    def read_all(self) -> np.ndarray:
        """Copy of the whole array ``[Ly, Lx, Lz, C]``."""
        self._check_open()
        return self._data.copy()

    def _close(self) -> None:
        self._data = np.empty((0,) + self.shape[1:], self.dtype)
