"""The ``h5`` mode of the Dask engine: slabs in Zarr files, workers hold a slab at a time.

The object, its rotated copy, the accumulated gradient and the optimizer
state are Zarr arrays (one chunk per slab, so each chunk has one writer)
under ``<output>/work/``.  Tasks read and write slabs by path and return
small tokens; the client chains the tasks of each slab through those
tokens, so accumulation is race-free and no slab passes through the client.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..physics import Region
from ..store import ZarrStore
from . import tasks
from .dask_engine import DaskReconstruction


@lru_cache(maxsize=32)
def _store(path: str) -> ZarrStore:
    return ZarrStore.open(path, mode="r+")


def rotate_file_slab(src: str, dst: str, i: int, theta_rad: float, *deps) -> int:
    _store(dst).write_slab(i, tasks.rotate_slab(_store(src).read_slab(i), theta_rad))
    return i


def cut_file_piece(path: str, i: int, region: Region, fill, *deps) -> tuple[int, np.ndarray]:
    store = _store(path)
    y0, y1 = store.slab_bounds(i)
    ya, yb = max(y0, region.y0), min(y1, region.y0 + region.ny)
    return ya - region.y0, store.read_region(Region(ya, region.x0, yb - ya, region.nx))


def _added(store: ZarrStore, i: int, results) -> np.ndarray:
    grad = store.read_slab(i)
    y0, _ = store.slab_bounds(i)
    for result in results:
        tasks.add_object_grad(grad, y0, result)
    return grad


def add_file_grad(path: str, i: int, results: list, *deps) -> int:
    if results:
        _store(path).write_slab(i, _added(_store(path), i, results))
    return i


def add_update_file_slab(paths: dict[str, str], i: int, results: list, theta_rad: float,
                         cfg: dict, n_updates: int, cons, *deps) -> int:
    obj, grad = _store(paths["obj"]), _store(paths["grad"])
    state = {k: _store(p).read_slab(i) for k, p in paths.items() if k.startswith("state/")}
    new_obj, new_state, zero = tasks.update_slab(obj.read_slab(i), _added(grad, i, results),
                                                 {k[6:]: v for k, v in state.items()},
                                                 theta_rad, cfg, n_updates, cons)
    obj.write_slab(i, new_obj)
    for k, v in new_state.items():
        _store(paths["state/" + k]).write_slab(i, v)
    grad.write_slab(i, zero)
    return i


class DaskH5Reconstruction(DaskReconstruction):
    """Dask engine, ``h5`` mode: the object and its companions live in Zarr files.

    Each slab's tasks run on the slab's assigned worker (spreading the work);
    tasks return tokens, so a worker's memory holds one slab and one chunk of
    tiles at a time.  The files are ``<output>/work/{object,rotated,gradient,
    state_*}.zarr``.
    """

    _direct_slabs = False  # rotated slabs are files: pieces are always cut by their owner

    def _scatter_object(self, value: np.ndarray, state: dict[str, np.ndarray],
                        grad: np.ndarray | None = None) -> None:
        work = Path(self.out.path) / "work"
        work.mkdir(exist_ok=True)
        h = self.bounds[0][1] - self.bounds[0][0]
        fill = self.problem.vacuum
        self.paths = {"obj": str(work / "object.zarr"), "rot": str(work / "rotated.zarr"),
                      "grad": str(work / "gradient.zarr")}
        self.paths.update({f"state/{k}": str(work / f"state_{k}.zarr") for k in state})
        for key, path in self.paths.items():
            store = ZarrStore.create(path, value.shape, value.dtype, h, fill, overwrite=True)
            for i, (a, b) in enumerate(self.bounds):
                if key == "obj":
                    store.write_slab(i, value[a:b])
                elif key.startswith("state/"):
                    store.write_slab(i, state[key[6:]][a:b])
                elif key == "grad" and grad is not None:
                    store.write_slab(i, grad[a:b])
            store.close()
        _store.cache_clear()
        self._slab = [None] * len(self.bounds)  # tokens: the last task that wrote each slab

    def _wait(self) -> None:
        self._gather([t for t in self._slab if t is not None])

    def _cut_chains(self) -> None:
        # the slabs live in files: once their last writes are done the tokens can go
        self._wait()
        self._slab = [None] * len(self.bounds)

    @property
    def object(self) -> np.ndarray:
        self._wait()
        with ZarrStore.open(self.paths["obj"], mode="r") as store:
            return store.read_all()

    def _submit_rotate(self, i, theta):
        # after the slab's last write and after every read of the rotated file it overwrites
        return self.client.submit(rotate_file_slab, self.paths["obj"], self.paths["rot"], i,
                                  theta, self._slab[i], *self._readers[i],
                                  workers=[self.owners[i]], pure=False)

    def _rotated_futures(self, i_theta: int) -> list:
        theta = float(self.problem.theta_rad[i_theta])
        key = (i_theta, self._obj_version)
        if self._rot is None or self._rot[0] != key:
            self._rot = (key, [self._submit_rotate(i, theta) for i in range(len(self.bounds))])
        return self._rot[1]

    def _submit_cut(self, i, rotated, region):
        return self.client.submit(cut_file_piece, self.paths["rot"], i, region,
                                  self.problem.vacuum, rotated, workers=[self.owners[i]],
                                  pure=False)

    def _submit_add(self, i, results) -> None:
        self._slab[i] = self.client.submit(add_file_grad, self.paths["grad"], i, results,
                                           self._slab[i], workers=[self.owners[i]], pure=False)

    def _submit_add_update(self, i, results, theta, cfg, n_updates, cons) -> None:
        # after the cuts of the rotated slab (the next rotation overwrites it)
        deps = (self._slab[i], self._rot[1][i] if self._rot else None)
        self._slab[i] = self.client.submit(add_update_file_slab, self.paths, i, results, theta,
                                           cfg, n_updates, cons, *deps, workers=[self.owners[i]],
                                           pure=False)

    def _pull_object(self) -> None:
        obj = self.params["object"]
        obj.value = self.object
        obj.state = {k[6:]: ZarrStore.open(p, mode="r").read_all()
                     for k, p in self.paths.items() if k.startswith("state/")}
        if self._pending:
            self._grad_rot = ZarrStore.open(self.paths["grad"], mode="r").read_all()
