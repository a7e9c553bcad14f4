"""Zarr v3 directory store, one uncompressed chunk per slab, and store snapshots.

Chunks are exactly one slab ``(h, Lx, Lz, C)``, so reading a slab reads one chunk and
writers of different slabs never share a chunk (no lock). The layout (shape, dtype, slab
height, fill value) is kept in the array attributes under ``"daskorym_store"`` and
restored on open; a slab-chunked array written elsewhere (e.g. ``object.zarr``) opens too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from ..outputs.atomic import atomic_dir
from ..physics.region import vacuum_value
from .base import ObjectStore
from .layout import SlabLayout, SlabPiece

__all__ = ["ZARR_ATTR", "ZarrStore", "write_snapshot"]

ZARR_ATTR = "daskorym_store"
_MODES = ("r", "r+")


class ZarrStore(ObjectStore):
    """A store in a Zarr v3 directory; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, array: zarr.Array, path: Path, mode: str) -> None:
        super().__init__(layout_of(array))
        self._array = array
        self._path = path
        self._mode = mode

    @classmethod
    def create(cls, path: str | os.PathLike[str], shape: Sequence[int],
               dtype: object = np.float32, slab_height: int | None = None,
               fill_value: float | Sequence[float] = 0.0,
               overwrite: bool = False) -> "ZarrStore":
        """Create a zero-filled store at ``path`` (see :class:`SlabLayout` for the arguments).

        An existing ``path`` raises ``FileExistsError`` unless ``overwrite`` is true; even
        then only a Zarr store or an empty directory is replaced.
        """
        path = Path(path)
        layout = SlabLayout.make(shape, dtype, slab_height, fill_value)
        if path.exists() and not overwrite:
            raise FileExistsError(f"cannot create store at {path}: it exists "
                                  "(pass overwrite=True to replace it)")
        _remove_replaceable(path)
        return cls(create_array(path, layout), path, "r+")

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r+") -> "ZarrStore":
        """Open an existing store; ``mode`` ``'r'`` (read-only) or ``'r+'`` (read-write)."""
        path = Path(path)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"no Zarr v3 array at {path} (missing zarr.json)")
        return cls(zarr.open_array(store=str(path), mode=mode, zarr_format=3), path, mode)

    @property
    def path(self) -> Path:
        """Directory of the store."""
        return self._path

    @property
    def read_only(self) -> bool:
        """True when opened with ``mode='r'``."""
        return self._mode == "r"

    @property
    def array(self) -> zarr.Array:
        """The underlying Zarr array."""
        self._check_open()
        return self._array

    def _read_slab(self, i: int) -> np.ndarray:
        y0, y1 = self.slab_bounds(i)
        return np.asarray(self._array[y0:y1])

    def _write_slab(self, i: int, arr: np.ndarray) -> None:
        y0, y1 = self.slab_bounds(i)
        self._array[y0:y1] = arr

    def _read_piece(self, piece: SlabPiece) -> np.ndarray:
        return np.asarray(self._array[self._layout.object_rows(piece), piece.cols])

    def _close(self) -> None:
        del self._array


def create_array(path: Path, layout: SlabLayout) -> zarr.Array:
    """New Zarr v3 array at ``path``: chunks one slab, no compression, layout in attributes."""
    meta = {"shape": list(layout.shape), "dtype": layout.dtype.str,
            "slab_height": layout.slab_height, "fill_value": list(layout.fill_value),
            "axes": ["y", "x", "z", "channel"]}
    return zarr.create_array(
        store=str(path), shape=layout.shape, dtype=layout.dtype,
        chunks=(layout.slab_height,) + layout.shape[1:], compressors=None,
        fill_value=0, zarr_format=3, attributes={ZARR_ATTR: meta})


def layout_of(array: zarr.Array) -> SlabLayout:
    """Layout recorded in ``array``'s attributes, or read from its chunks if absent.

    Without the record, the slab height is the chunk height and the fill value is the
    vacuum of an ``unknown_type`` attribute if there is one, else 0.
    """
    attrs = dict(array.attrs)
    meta = attrs.get(ZARR_ATTR)
    if meta is None:
        fill = vacuum_value(attrs["unknown_type"]) if "unknown_type" in attrs else 0.0
        layout = SlabLayout.make(array.shape, array.dtype, array.chunks[0], fill)
    else:
        layout = SlabLayout.make(meta["shape"], meta["dtype"], meta["slab_height"],
                                 meta["fill_value"])
    slab_chunks = (layout.slab_height,) + layout.shape[1:]
    if (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks)) != (
            layout.shape, layout.dtype, slab_chunks):
        raise ValueError(f"Zarr array {array.store_path} is not a slab store: expected shape "
                         f"{layout.shape}, dtype {layout.dtype}, chunks {slab_chunks}; found "
                         f"{array.shape}, {array.dtype}, {array.chunks}")
    return layout


def write_snapshot(store: ObjectStore, path: str | os.PathLike[str]) -> Path:
    """Copy ``store`` to a new Zarr v3 store at ``path``, slab by slab, atomically.

    An existing Zarr store (or empty directory) at ``path`` is replaced once the copy is
    complete; anything else there raises ``FileExistsError``. Returns ``path``.
    """
    path = Path(path)
    if isinstance(store, ZarrStore) and path.resolve() == store.path.resolve():
        raise ValueError(f"cannot snapshot {store.path} onto itself")
    _check_replaceable(path)
    with atomic_dir(path) as tmp:
        array = create_array(tmp, store.layout)
        for i, y0, y1 in store.iter_slabs():
            array[y0:y1] = store.read_slab(i)
    return path


def _check_replaceable(path: Path) -> None:
    """``FileExistsError`` if ``path`` exists and is neither a Zarr store nor empty."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and (
            (path / "zarr.json").is_file() or not any(path.iterdir())):
        return
    raise FileExistsError(f"refusing to replace {path}: it is not a Zarr store "
                          "or an empty directory")


def _remove_replaceable(path: Path) -> None:
    _check_replaceable(path)
    if path.exists():
        shutil.rmtree(path)
