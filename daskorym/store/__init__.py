"""Slab-chunked array stores for the object, its gradient, the mask and optimizer state.

An array ``[Ly, Lx, Lz, C]`` is cut into y-slabs of ``slab_height`` rows (chunk shape
``(slab_height, Lx, Lz, C)``). Every store implements :class:`ObjectStore`: slabs, regions
that may cross slab borders or leave the array, whole-array access and Zarr snapshots.

==============================  ========================================================
:class:`MemoryStore`            one numpy array
:class:`ZarrStore`              Zarr v3 directory, one chunk per slab (no lock needed)
:class:`HDF5Store`              h5py dataset chunked by slab, single writer
:class:`WorkerSlabStore`        one pinned Dask future per slab, updated on its owner
==============================  ========================================================
"""

from .base import ObjectStore
from .factory import STORE_KINDS, create_store
from .hdf5_store import HDF5Store
from .layout import SlabLayout, SlabPiece, split_region
from .memory import MemoryStore
from .workers import WorkerSlabStore
from .zarr_store import ZarrStore

__all__ = [
    "STORE_KINDS",
    "HDF5Store",
    "MemoryStore",
    "ObjectStore",
    "SlabLayout",
    "SlabPiece",
    "WorkerSlabStore",
    "ZarrStore",
    "create_store",
    "split_region",
]
