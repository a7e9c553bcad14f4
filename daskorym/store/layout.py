"""Slab layout of a store: an array ``[Ly, Lx, Lz, C]`` cut into y-slabs of ``h`` rows.

Slab ``i`` covers rows ``[i*h, min((i+1)*h, Ly))``; the last slab may be shorter. A
:class:`~daskorym.physics.region.Region` (a box in (y, x), possibly leaving the array) meets
each slab in at most one rectangle, a :class:`SlabPiece`; :func:`split_region` lists them.
Pure functions only, with no storage: every store shares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..physics.region import Region

__all__ = ["DEFAULT_SLAB_HEIGHT", "UPDATE_OPS", "SlabLayout", "SlabPiece", "split_region",
           "update_block"]

DEFAULT_SLAB_HEIGHT = 16


@dataclass(frozen=True)
class SlabPiece:
    """Where region ``region`` meets slab ``slab``.

    ``rows`` are rows inside the slab, ``cols`` object columns; ``region_rows`` and
    ``region_cols`` index the same voxels in the region's array ``[ny, nx, Lz, C]``.
    """

    slab: int
    rows: slice
    cols: slice
    region_rows: slice
    region_cols: slice


@dataclass(frozen=True)
class SlabLayout:
    """Shape, dtype, slab height and outside value of a slab-chunked 4D array.

    Parameters
    ----------
    shape : (Ly, Lx, Lz, C)
        Array shape; every entry >= 1.
    dtype : numpy dtype
        Element type.
    slab_height : int
        Rows per slab (chunk shape ``(slab_height, Lx, Lz, C)``); ``None`` means
        ``min(Ly, 16)``.
    fill_value : float or sequence of C floats
        Value read outside the array, per channel (a scalar is repeated).
    """

    shape: tuple[int, int, int, int]
    dtype: np.dtype
    slab_height: int
    fill_value: tuple[float, ...]

    @classmethod
    def make(cls, shape: Sequence[int], dtype: object = np.float32,
             slab_height: int | None = None,
             fill_value: float | Sequence[float] = 0.0) -> "SlabLayout":
        """Validate and normalise the arguments (see the class docstring)."""
        shape = _check_shape(shape)
        height = min(shape[0], DEFAULT_SLAB_HEIGHT) if slab_height is None else slab_height
        if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or height < 1:
            raise ValueError(f"slab_height must be an integer >= 1, got {slab_height!r}")
        return cls(shape, np.dtype(dtype), int(height), _check_fill(fill_value, shape[3]))

    @property
    def n_slabs(self) -> int:
        """Number of slabs, ``ceil(Ly / slab_height)``."""
        return -(-self.shape[0] // self.slab_height)

    def check_slab(self, i: int) -> int:
        """Return ``i`` as an int; ``IndexError`` unless ``0 <= i < n_slabs``."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"slab index must be an integer, got {type(i).__name__}")
        if not 0 <= i < self.n_slabs:
            raise IndexError(f"slab index {i} out of range: the store has {self.n_slabs} "
                             f"slabs (0..{self.n_slabs - 1})")
        return int(i)

    def slab_bounds(self, i: int) -> tuple[int, int]:
        """Rows ``(y0, y1)`` of slab ``i``."""
        i = self.check_slab(i)
        y0 = i * self.slab_height
        return y0, min(y0 + self.slab_height, self.shape[0])

    def slab_shape(self, i: int) -> tuple[int, int, int, int]:
        """Shape ``(y1 - y0, Lx, Lz, C)`` of slab ``i``."""
        y0, y1 = self.slab_bounds(i)
        return (y1 - y0,) + self.shape[1:]

    def slab_of_row(self, y: int) -> int:
        """Index of the slab holding row ``y``; ``IndexError`` outside ``[0, Ly)``."""
        if not 0 <= y < self.shape[0]:
            raise IndexError(f"row {y} outside the array's rows [0, {self.shape[0]})")
        return int(y) // self.slab_height

    def slabs_overlapping(self, y0: int, y1: int) -> range:
        """Slabs meeting rows ``[y0, y1)`` (clipped to the array; empty if none)."""
        ya, yb = max(int(y0), 0), min(int(y1), self.shape[0])
        if ya >= yb:
            return range(0)
        return range(ya // self.slab_height, (yb - 1) // self.slab_height + 1)

    def object_rows(self, piece: SlabPiece) -> slice:
        """Rows of ``piece`` in the whole array (its slab rows shifted by the slab's y0)."""
        y0 = self.slab_bounds(piece.slab)[0]
        return slice(y0 + piece.rows.start, y0 + piece.rows.stop)

    def region_shape(self, region: Region) -> tuple[int, int, int, int]:
        """Shape ``(ny, nx, Lz, C)`` of the array of ``region``."""
        return (region.ny, region.nx) + self.shape[2:]

    def check_region_array(self, region: Region, arr: np.ndarray) -> None:
        """``ValueError`` unless ``arr`` has the shape of ``region``'s array."""
        expected = self.region_shape(region)
        if tuple(np.shape(arr)) != expected:
            raise ValueError(f"array for {region} must have shape [ny, nx, Lz, C] = "
                             f"{expected}, got shape {tuple(np.shape(arr))}")

    def fill_array(self, shape: tuple[int, ...]) -> np.ndarray:
        """New array of ``shape`` (last axis C) holding ``fill_value`` per channel."""
        out = np.empty(shape, self.dtype)
        out[...] = np.asarray(self.fill_value).astype(self.dtype)
        return out


def split_region(layout: SlabLayout, region: Region) -> list[SlabPiece]:
    """Pieces of ``region`` inside the array, one per slab it meets, in slab order."""
    ov = region.overlap(layout.shape[0], layout.shape[1])
    if ov is None:
        return []
    oy, ox, _ry, rx = ov
    pieces = []
    for i in layout.slabs_overlapping(oy.start, oy.stop):
        s0, s1 = layout.slab_bounds(i)
        ya, yb = max(oy.start, s0), min(oy.stop, s1)
        pieces.append(SlabPiece(i, slice(ya - s0, yb - s0), ox,
                                slice(ya - region.y0, yb - region.y0), rx))
    return pieces


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be 4 integers (Ly, Lx, Lz, C), got {shape!r}") from None
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"shape must be 4 integers >= 1 (Ly, Lx, Lz, C), got {shape!r}")
    return dims  # type: ignore[return-value]


def _check_fill(fill_value: float | Sequence[float], n_channels: int) -> tuple[float, ...]:
    values = np.atleast_1d(np.asarray(fill_value, dtype=np.float64))
    if values.ndim != 1 or values.size not in (1, n_channels):
        raise ValueError(f"fill_value must be a number or {n_channels} per-channel numbers, "
                         f"got {fill_value!r}")
    return tuple(float(v) for v in np.broadcast_to(values, (n_channels,)))


UPDATE_OPS = ("set", "add")


def update_block(block: np.ndarray, values: np.ndarray, op: str) -> None:
    """``block[...] = values`` (op ``'set'``) or ``block += values`` (``'add'``), in place."""
    if op == "set":
        block[...] = values
    elif op == "add":
        block += values
    else:
        raise ValueError(f"update op must be one of {UPDATE_OPS}, got {op!r}")
