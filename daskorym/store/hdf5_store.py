"""HDF5 store: one h5py dataset ``[Ly, Lx, Lz, C]`` chunked by slab, single writer.

The file can be given as a path (the store opens and closes it) or as an already open
``h5py.File`` (the caller keeps it, e.g. a file opened with the MPI-IO driver, and several
stores may share it, one dataset each). The layout is kept in the dataset's attributes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .base import ObjectStore
from .layout import SlabLayout, SlabPiece

__all__ = ["HDF5Store"]

FileArg = str | os.PathLike[str] | h5py.File
_ATTR_HEIGHT = "daskorym_slab_height"
_ATTR_FILL = "daskorym_fill_value"
_MODES = ("r", "r+")


class HDF5Store(ObjectStore):
    """A store in an HDF5 dataset; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, file: h5py.File, dataset: str, owns_file: bool,
                 read_only: bool) -> None:
        ds = file[dataset]
        super().__init__(_layout_of(ds))
        self._file = file
        self._ds = ds
        self._owns_file = owns_file
        self._read_only = read_only or file.mode == "r"

    @classmethod
    def create(cls, file: FileArg, shape: Sequence[int], dtype: object = np.float32,
               slab_height: int | None = None, fill_value: float | Sequence[float] = 0.0,
               dataset: str = "obj", overwrite: bool = False) -> "HDF5Store":
        """Create a zero-filled dataset (see :class:`SlabLayout` for the layout arguments).

        With a path, an existing file raises ``FileExistsError`` unless ``overwrite``
        (which truncates the file). With an open file, an existing ``dataset`` raises
        ``FileExistsError`` unless ``overwrite`` (which deletes that dataset).
        """
        layout = SlabLayout.make(shape, dtype, slab_height, fill_value)
        owns = not isinstance(file, h5py.File)
        handle = _create_file(Path(file), overwrite) if owns else file
        try:
            _create_dataset(handle, dataset, layout, overwrite)
        except BaseException:
            if owns:
                handle.close()
            raise
        return cls(handle, dataset, owns, read_only=False)

    @classmethod
    def open(cls, file: FileArg, dataset: str = "obj", mode: str = "r+") -> "HDF5Store":
        """Open ``dataset`` of an existing file (``mode`` ``'r'`` or ``'r+'``)."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        owns = not isinstance(file, h5py.File)
        if owns and not Path(file).is_file():
            raise FileNotFoundError(f"no HDF5 file at {file}")
        handle = h5py.File(file, mode) if owns else file
        try:
            if dataset not in handle:
                raise KeyError(f"{handle.filename} has no dataset {dataset!r}")
            return cls(handle, dataset, owns, read_only=mode == "r")
        except BaseException:
            if owns:
                handle.close()
            raise

    @property
    def file(self) -> h5py.File:
        """The open ``h5py.File``."""
        self._check_open()
        return self._file

    @property
    def dataset(self) -> h5py.Dataset:
        """The dataset holding the array."""
        self._check_open()
        return self._ds

    @property
    def path(self) -> Path:
        """Path of the file."""
        return Path(self._file.filename)

    @property
    def read_only(self) -> bool:
        """True when opened with ``mode='r'`` or on a read-only file."""
        return self._read_only

    def flush(self) -> None:
        """Push buffered writes to the file."""
        self._check_open()
        self._file.flush()

    def _read_slab(self, i: int) -> np.ndarray:
        y0, y1 = self.slab_bounds(i)
        return self._ds[y0:y1]

    def _write_slab(self, i: int, arr: np.ndarray) -> None:
        y0, y1 = self.slab_bounds(i)
        self._ds[y0:y1] = arr

    def _read_piece(self, piece: SlabPiece) -> np.ndarray:
        return self._ds[self._layout.object_rows(piece), piece.cols]

    def _close(self) -> None:
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()


def _create_file(path: Path, overwrite: bool) -> h5py.File:
    if path.exists() and not overwrite:
        raise FileExistsError(f"cannot create store at {path}: it exists "
                              "(pass overwrite=True to replace it)")
    return h5py.File(path, "w")


def _create_dataset(file: h5py.File, name: str, layout: SlabLayout, overwrite: bool) -> None:
    if name in file:
        if not overwrite:
            raise FileExistsError(f"{file.filename} already has dataset {name!r} "
                                  "(pass overwrite=True to replace it)")
        del file[name]
    ds = file.create_dataset(name, shape=layout.shape, dtype=layout.dtype,
                             chunks=(layout.slab_height,) + layout.shape[1:], fillvalue=0)
    ds.attrs[_ATTR_HEIGHT] = layout.slab_height
    ds.attrs[_ATTR_FILL] = np.asarray(layout.fill_value, np.float64)


def _layout_of(ds: h5py.Dataset) -> SlabLayout:
    """Layout from the attributes; else slab height = chunk height (or 16) and fill 0."""
    height = ds.attrs.get(_ATTR_HEIGHT)
    if height is None and ds.chunks is not None:
        height = ds.chunks[0]
    fill = ds.attrs.get(_ATTR_FILL, 0.0)
    if ds.ndim != 4:
        raise ValueError(f"dataset {ds.name} must be 4D [Ly, Lx, Lz, C], got shape {ds.shape}")
    return SlabLayout.make(ds.shape, ds.dtype, None if height is None else int(height),
                           fill)
