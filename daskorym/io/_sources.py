"""Read access to the two storage formats (HDF5 file, Zarr v3 directory) behind one interface.

A source answers four questions: is an item there, give me the array object (lazy: an
``h5py.Dataset`` or ``zarr.Array``), give me the whole value of a small metadata item, close.
In Zarr, strings (e.g. ``free_prop_cm = 'inf'``) are kept as attributes of the parent group;
:meth:`ZarrSource.read_meta` looks there when no array of that name exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import zarr
import zarr.errors

from .errors import dataset_error

__all__ = [
    "Source", "H5Source", "ZarrSource", "open_source", "as_meta_value",
    "magnitude_f32", "read_only", "tile_selection",
]

_ZARR_OPEN_ERRORS = (zarr.errors.BaseZarrError, ValueError, KeyError, OSError, TypeError)
# a damaged chunk fails in its codec: zstd raises RuntimeError, others ValueError
_ZARR_READ_ERRORS = (zarr.errors.BaseZarrError, OSError, RuntimeError, ValueError)


class Source(Protocol):
    """What :class:`~daskorym.io.dataset.Dataset` needs from a storage format."""

    path: Path
    format: str

    def has(self, name: str) -> bool: ...

    def array(self, name: str) -> Any: ...

    def read_block(self, name: str, i_theta: int, sel: slice | np.ndarray) -> np.ndarray: ...

    def names(self, group: str) -> list[str]: ...

    def missing_chunks(self, name: str) -> tuple[int, int, str | None]: ...

    def read_meta(self, name: str) -> np.ndarray | str: ...

    def close(self) -> None: ...


def as_meta_value(value: Any) -> np.ndarray | str:
    """Normalise a stored metadata value: bytes/str become ``str``, the rest an ndarray."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.ndim == 0 and arr.dtype.kind in "OSU":
        return as_meta_value(arr.item())
    return arr


def magnitude_f32(block: np.ndarray) -> np.ndarray:
    """Stored values as float32; complex values become their magnitude."""
    if np.iscomplexobj(block):
        block = np.abs(block)
    return np.asarray(block, dtype=np.float32)


def read_only(arr: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so callers cannot change the dataset's view of it."""
    arr.flags.writeable = False
    return arr


def tile_selection(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when sorted unique ``indices`` are contiguous (fast path), else the indices."""
    if indices[-1] - indices[0] + 1 == indices.size:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


class H5Source:
    """An HDF5 file opened read-only with h5py."""

    format = "hdf5"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[str, h5py.Dataset] = {}
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise dataset_error(path, "", f"cannot open HDF5 file (truncated or corrupt?): {exc}") from exc

    def has(self, name: str) -> bool:
        return name in self._file

    def array(self, name: str) -> h5py.Dataset:
        if name not in self._arrays:
            obj = self._file[name]
            if not isinstance(obj, h5py.Dataset):
                raise dataset_error(self.path, name, f"expected an array, found {type(obj).__name__}")
            self._arrays[name] = obj
        return self._arrays[name]

    def read_block(self, name: str, i_theta: int, sel: slice | np.ndarray) -> np.ndarray:
        """``array[i_theta, sel]``; ``sel`` is a slice or strictly increasing indices."""
        try:
            return self.array(name)[i_theta, sel]
        except OSError as exc:
            raise dataset_error(self.path, name, f"cannot read angle {i_theta}: {exc}") from exc

    def missing_chunks(self, name: str) -> tuple[int, int, str | None]:
        """``(missing, total, first missing chunk)`` of a chunked array (never written chunks
        read as the fill value); ``(0, 0, None)`` for an array that is not chunked."""
        arr = self.array(name)
        if arr.chunks is None:
            return 0, 0, None
        grid = [-(-n // c) for n, c in zip(arr.shape, arr.chunks)]
        total = int(np.prod(grid))
        stored = arr.id.get_num_chunks()
        if stored >= total:
            return 0, total, None
        written = {arr.id.get_chunk_info(i).chunk_offset for i in range(stored)}
        for idx in np.ndindex(*grid):
            offset = tuple(int(i) * c for i, c in zip(idx, arr.chunks))
            if offset not in written:
                return total - stored, total, f"at offset {list(offset)}"
        return total - stored, total, None

    def names(self, group: str) -> list[str]:
        obj = self._file.get(group)
        return sorted(obj.keys()) if isinstance(obj, h5py.Group) else []

    def read_meta(self, name: str) -> np.ndarray | str:
        return as_meta_value(self.array(name)[()])

    def close(self) -> None:
        self._file.close()


class ZarrSource:
    """A Zarr v3 directory store opened read-only."""

    format = "zarr"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[str, zarr.Array] = {}
        try:
            self._group = zarr.open_group(path, mode="r")
        except _ZARR_OPEN_ERRORS as exc:
            raise dataset_error(path, "", f"cannot open Zarr store as a group: {exc}") from exc

    def _parent_attrs(self, name: str) -> dict[str, Any]:
        parent, _, _ = name.rpartition("/")
        node = self._group[parent] if parent else self._group
        return dict(node.attrs) if isinstance(node, zarr.Group) else {}

    def has(self, name: str) -> bool:
        if name in self._group:
            return True
        parent, _, leaf = name.rpartition("/")
        return (not parent or parent in self._group) and leaf in self._parent_attrs(name)

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            obj = self._group[name] if name in self._group else None
            if not isinstance(obj, zarr.Array):
                raise dataset_error(self.path, name, f"expected an array, found {type(obj).__name__}")
            self._arrays[name] = obj
        return self._arrays[name]

    def read_block(self, name: str, i_theta: int, sel: slice | np.ndarray) -> np.ndarray:
        """``array[i_theta, sel]`` (orthogonal indexing); ``sel`` is a slice or indices."""
        try:
            return self.array(name).oindex[i_theta, sel]
        except _ZARR_READ_ERRORS as exc:
            raise dataset_error(self.path, name, f"cannot read angle {i_theta}: {exc}") from exc

    def missing_chunks(self, name: str) -> tuple[int, int, str | None]:
        """``(missing, total, first missing chunk key)``: a chunk absent from the store reads
        as the fill value (zarr does not tell an unwritten chunk from a lost one)."""
        arr = self.array(name)
        total, stored = arr.nchunks, arr.nchunks_initialized
        first = None
        if stored < total and arr.shards is None:
            for coords in np.ndindex(*arr.cdata_shape):
                key = arr.metadata.encode_chunk_key(coords)
                if not (self.path / name / key).exists():
                    first = key
                    break
        return total - stored, total, first

    def names(self, group: str) -> list[str]:
        obj = self._group[group] if group in self._group else None
        if not isinstance(obj, zarr.Group):
            return []
        return sorted(set(obj.array_keys()) | set(obj.attrs.keys()))

    def read_meta(self, name: str) -> np.ndarray | str:
        if name in self._group:
            return as_meta_value(self.array(name)[()])
        return as_meta_value(self._parent_attrs(name)[name.rpartition("/")[2]])

    def close(self) -> None:
        """Nothing to release: a Zarr directory store holds no open handle."""


def open_source(path: str | os.PathLike[str]) -> Source:
    """Open ``path`` as HDF5 (by its file signature) or Zarr (a directory with ``zarr.json``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DatasetError
        ``path`` is neither an HDF5 file nor a Zarr store, or cannot be opened.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset {p} does not exist (expected an HDF5 file or a Zarr store)")
    if p.is_dir():
        if (p / "zarr.json").is_file():
            return ZarrSource(p)
        raise dataset_error(p, "", "not an HDF5 file or Zarr store (a directory without zarr.json)")
    if p.is_file() and h5py.is_hdf5(p):
        return H5Source(p)
    raise dataset_error(p, "", "not an HDF5 file or Zarr store (no HDF5 signature found)")
