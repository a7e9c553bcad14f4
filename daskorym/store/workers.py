"""Slabs held in Dask workers' memory: one pinned ``distributed`` Future per slab.

Slab ``i`` lives on ``owner(i)``, the workers taken round-robin in sorted address order.
Region writes and adds run as tasks on the owner, each producing the slab's new future,
so the slab itself never travels through the client; only region pieces do. Replaced
futures are dropped at once, which lets the scheduler free the old slab. Tasks never
modify their input arrays (an in-process worker may share them with the client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from distributed import Client, Future, wait

from .base import ObjectStore
from .layout import SlabLayout, SlabPiece, update_block

__all__ = ["WorkerSlabStore"]

_SCATTER_BYTES = 1 << 20  # region pieces above this are scattered rather than embedded


class WorkerSlabStore(ObjectStore):
    """A store whose slabs are futures pinned to Dask workers; new stores hold zeros.

    Parameters
    ----------
    client : distributed.Client
        Client of the cluster holding the slabs.
    shape, dtype, slab_height, fill_value
        Layout, as for :class:`~daskorym.store.layout.SlabLayout`.
    workers : sequence of str, optional
        Worker addresses to use (default: all workers of ``client``), sorted.
    """

    def __init__(self, client: Client, shape: Sequence[int], dtype: object = np.float32,
                 slab_height: int | None = None, fill_value: float | Sequence[float] = 0.0,
                 workers: Sequence[str] | None = None) -> None:
        self._setup(client, SlabLayout.make(shape, dtype, slab_height, fill_value), workers)
        self._futures = [self._submit(i, np.zeros, self._layout.slab_shape(i), self.dtype)
                         for i in range(self.n_slabs)]

    @classmethod
    def from_store(cls, client: Client, store: ObjectStore,
                   workers: Sequence[str] | None = None) -> "WorkerSlabStore":
        """Distribute a copy of ``store`` over the workers, one slab at a time."""
        new = cls.__new__(cls)
        new._setup(client, store.layout, workers)
        new._futures = [new._scatter(i, store.read_slab(i)) for i in range(new.n_slabs)]
        return new

    def _setup(self, client: Client, layout: SlabLayout,
               workers: Sequence[str] | None) -> None:
        ObjectStore.__init__(self, layout)
        self._client = client
        self._workers = _pick_workers(client, workers)
        n = len(self._workers)
        self._owners = tuple(self._workers[i % n] for i in range(layout.n_slabs))

    # -- placement ----------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client the futures belong to."""
        return self._client

    @property
    def workers(self) -> tuple[str, ...]:
        """Addresses of the workers holding slabs, sorted."""
        return self._workers

    def owner(self, i: int) -> str:
        """Address of the worker holding slab ``i``."""
        return self._owners[self._layout.check_slab(i)]

    @property
    def futures(self) -> tuple[Future, ...]:
        """The current slab futures, slab order."""
        self._check_open()
        return tuple(self._futures)

    def wait(self) -> None:
        """Block until every slab is computed; raises the error of a failed slab task."""
        self._check_open()
        wait(self._futures)
        for future in self._futures:
            if future.status == "error":
                future.result()

    # -- per-slab tasks -----------------------------------------------------------------

    def map_slabs(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> list[Future]:
        """Submit ``fn(slab_i, *args_i, **kw)`` on each slab's owner; one future per slab.

        Each argument that is a :class:`WorkerSlabStore` of the same slabs is replaced by
        its slab ``i``; other arguments (values or futures) are passed to every call. The
        store is unchanged; install results with :meth:`replace_slabs`. ``fn`` must not
        modify its inputs.
        """
        self._check_open()
        return [self._submit(i, _call, fn, kw, self._futures[i], *self._slab_args(args, i))
                for i in range(self.n_slabs)]

    def replace_slabs(self, futures: Sequence[Future]) -> None:
        """Install new slab futures (e.g. from :meth:`map_slabs`), dropping the old ones.

        Each must compute an array of the slab's shape and dtype (checked on read).
        """
        self._check_writable()
        futures = list(futures)
        if len(futures) != self.n_slabs or not all(isinstance(f, Future) for f in futures):
            raise ValueError(f"replace_slabs needs {self.n_slabs} Futures, one per slab, got "
                             f"{len(futures)} items of types "
                             f"{sorted({type(f).__name__ for f in futures})}")
        self._futures = futures

    def _slab_args(self, args: Sequence[Any], i: int) -> list[Any]:
        out = []
        for arg in args:
            if isinstance(arg, WorkerSlabStore):
                self._check_same_slabs(arg)
                arg = arg._futures[i]
            elif isinstance(arg, ObjectStore):
                raise TypeError(f"map_slabs takes WorkerSlabStore arguments, got {arg!r}; "
                                "distribute it first with WorkerSlabStore.from_store")
            out.append(arg)
        return out

    def _check_same_slabs(self, other: "WorkerSlabStore") -> None:
        other._check_open()
        mine = (self.shape[0], self.slab_height)
        theirs = (other.shape[0], other.slab_height)
        if mine != theirs:
            raise ValueError(f"stores must share (Ly, slab_height) to map slab by slab: "
                             f"{mine} != {theirs}")

    def _submit(self, i: int, fn: Callable[..., Any], *args: Any) -> Future:
        return self._client.submit(fn, *args, workers=[self._owners[i]],
                                   allow_other_workers=False, pure=False)

    def _scatter(self, i: int, arr: np.ndarray) -> Future:
        data = np.array(arr, self.dtype, copy=True)  # never share the caller's buffer
        return self._client.scatter(data, workers=[self._owners[i]], hash=False)

    def _ship(self, i: int, arr: np.ndarray) -> np.ndarray | Future:
        """A private copy of ``arr`` for a task on slab ``i``'s owner (scattered if large)."""
        if arr.nbytes > _SCATTER_BYTES:
            return self._scatter(i, arr)
        return np.array(arr, copy=True)

    # -- storage ------------------------------------------------------------------------

    def _read_slab(self, i: int) -> np.ndarray:
        data = self._futures[i].result()
        expected = self._layout.slab_shape(i)
        if np.shape(data) != expected or np.asarray(data).dtype != self.dtype:
            raise ValueError(f"slab {i} holds {type(data).__name__} of shape "
                             f"{np.shape(data)}, expected {self.dtype} {expected}")
        return np.array(data, copy=True)

    def _write_slab(self, i: int, arr: np.ndarray) -> None:
        self._futures[i] = self._scatter(i, arr)

    def _read_pieces(self, pieces: Sequence[SlabPiece]) -> list[np.ndarray]:
        futures = [self._submit(p.slab, _extract, self._futures[p.slab], p.rows, p.cols)
                   for p in pieces]
        return self._client.gather(futures)

    def _update_piece(self, piece: SlabPiece, values: np.ndarray, op: str) -> None:
        i = piece.slab
        self._futures[i] = self._submit(i, _updated, self._futures[i], piece.rows,
                                        piece.cols, self._ship(i, values), op)

    def fill(self, value: float | Sequence[float]) -> None:
        """Set every voxel to ``value`` (number or C numbers); made on the owners."""
        self._check_writable()
        filler = SlabLayout.make(self.shape, self.dtype, self.slab_height, value)
        self._futures = [self._submit(i, _full, self._layout.slab_shape(i), self.dtype,
                                      filler.fill_value) for i in range(self.n_slabs)]

    def _close(self) -> None:
        self._futures = []

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} workers={len(self._workers)}>"


def _pick_workers(client: Client, workers: Sequence[str] | None) -> tuple[str, ...]:
    known = sorted(client.nthreads())
    if workers is None:
        chosen = known
    else:
        chosen = sorted(set(workers))
        unknown = [w for w in chosen if w not in known]
        if unknown:
            raise ValueError(f"workers {unknown} are not in the cluster; it has {known}")
    if not chosen:
        raise ValueError("the cluster has no workers to hold the slabs")
    return tuple(chosen)


def _call(fn: Callable[..., Any], kw: dict[str, Any], slab: np.ndarray, *args: Any) -> Any:
    return fn(slab, *args, **kw)


def _extract(slab: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    return slab[rows, cols].copy()


def _updated(slab: np.ndarray, rows: slice, cols: slice, values: np.ndarray,
             op: str) -> np.ndarray:
    out = slab.copy()
    update_block(out[rows, cols], values, op)
    return out


def _full(shape: tuple[int, ...], dtype: np.dtype, values: tuple[float, ...]) -> np.ndarray:
    out = np.empty(shape, dtype)
    out[...] = np.asarray(values).astype(dtype)
    return out
