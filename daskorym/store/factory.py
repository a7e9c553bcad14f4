"""``create_store``: one entry point for every kind of store."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .base import ObjectStore
from .hdf5_store import HDF5Store
from .memory import MemoryStore
from .workers import WorkerSlabStore
from .zarr_store import ZarrStore

__all__ = ["STORE_KINDS", "create_store"]

STORE_KINDS = ("memory", "zarr", "hdf5", "workers")


def create_store(kind: str, shape: Sequence[int], *, dtype: object = np.float32,
                 slab_height: int | None = None, fill_value: float | Sequence[float] = 0.0,
                 path: str | os.PathLike[str] | None = None, client: object = None,
                 overwrite: bool = False) -> ObjectStore:
    """Create a zero-filled store of ``kind``.

    Parameters
    ----------
    kind : {'memory', 'zarr', 'hdf5', 'workers'}
        Where the slabs live.
    shape : (Ly, Lx, Lz, C)
        Array shape.
    dtype, slab_height, fill_value
        Layout (see :class:`~daskorym.store.layout.SlabLayout`).
    path : path-like
        Directory (``zarr``) or file (``hdf5``); required for those kinds.
    client : distributed.Client
        Required for ``workers``.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    ObjectStore
    """
    layout = dict(dtype=dtype, slab_height=slab_height, fill_value=fill_value)
    if kind == "memory":
        return MemoryStore(shape, **layout)
    if kind in ("zarr", "hdf5"):
        if path is None:
            raise ValueError(f"create_store({kind!r}) needs path= (the store's location)")
        cls = ZarrStore if kind == "zarr" else HDF5Store
        return cls.create(path, shape, overwrite=overwrite, **layout)
    if kind == "workers":
        if client is None:
            raise ValueError("create_store('workers') needs client= (a distributed.Client)")
        return WorkerSlabStore(client, shape, **layout)
    raise ValueError(f"unknown store kind {kind!r}; expected one of {STORE_KINDS}")
