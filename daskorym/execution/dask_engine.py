"""The Dask engine: the object as y-slabs held by workers, the same loop semantics.

The client runs :class:`~daskorym.engine.Reconstruction`'s loop but keeps no
object array: each y-slab of the object, of its accumulated gradient and of
the optimizer state lives on one worker (its owner).  Per global minibatch
the client builds the whole graph at once and waits once:

* owners rotate their slabs to the angle (once per angle and object version);
* for each worker's share of the tiles, owners cut the rows under those tiles
  (``cut_piece``), a gradient task assembles the chunk and runs the kernel;
* the object gradient goes back to the owners, which add it to their
  gradient slab (one chain of tasks per slab: no race);
* loss shares and small gradients (probe, positions, ...) are gathered,
  summed and applied on the client, which sends the new values with the
  next tasks;
* on an object update each owner rotates its gradient slab back (exact
  adjoint, slab-local) and takes the optimizer step on its slab.

Modes: ``dp`` updates the object after every minibatch, ``do`` after the
angle (or every ``n_batch_per_update`` batches); ``h5`` runs like ``do``
with slabs in Zarr files (see :mod:`daskorym.execution.h5`).
"""

from __future__ import annotations

import time
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
from distributed import wait
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker
from tqdm.auto import tqdm

from ..config import ConfigError
from ..engine.loop import Reconstruction
from ..engine.schedule import BatchSpec
from . import tasks
from .cluster import connect


class DaskReconstruction(Reconstruction):
    """:class:`Reconstruction` whose object lives in Dask workers.

    Parameters
    ----------
    settings, inputs : as :class:`Reconstruction`
    client : a ``distributed.Client`` to use (default: made from
        ``execution.cluster`` and ``execution.n_workers``)
    slab_height : rows per slab (default: ``ceil(Ly / n_workers)``)
    """

    engine = "dask"
    # batches in flight: 1 hid the client's round trip (A/B on the 3D bench case: 2 % per
    # epoch) but a worker killed with a batch in flight sometimes left the recovery waiting
    # for tasks the scheduler had dropped; kept at 0 until that is understood
    lookahead = 0
    _direct_slabs = True  # gradient tasks may read rotated slabs whole (see ``_piece``)

    def __init__(self, settings, inputs=None, *, client=None, slab_height: int | None = None):
        self._client_arg = client
        self._slab_height_arg = slab_height
        super().__init__(settings, inputs)

    # ------------------------------------------------------------------ set-up
    def _setup_engine(self) -> None:
        s = self.settings
        if self.problem.regularizers:
            raise ConfigError("regularizers are not available in the dask engine yet; use "
                              "engine 'local'")
        obj = self.params["object"]
        if not obj.optimizer.elementwise:
            raise ConfigError(f"the dask engine updates the object slab by slab: optimizer "
                              f"{obj.settings.optimizer!r} is not elementwise (use adam, gd or "
                              f"momentum)")
        if obj.support is not None:
            raise ConfigError("a finite support is not available in the dask engine yet")
        jobqueue = s.execution.jobqueue.model_dump(exclude_none=True)
        timeout = jobqueue.pop("timeout")
        self.client, self._cluster = connect(self._client_arg, s.execution.cluster,
                                             s.execution.n_workers, s.execution.threads,
                                             jobqueue=jobqueue, timeout=timeout)
        # asked of the scheduler itself: ``Client.scheduler_info()`` can answer from a cache
        # that a periodic refresh fills with totals only (no workers listed), which once
        # left a run here with none
        self.workers = _alive(self.client)
        if not self.workers:
            raise WorkerLost("the Dask cluster has no running workers")
        ly = self.problem.geometry.obj_shape[0]
        self.bounds = tasks.slab_bounds(ly, self._slab_height_arg) if self._slab_height_arg \
            else tasks.even_slabs(ly, len(self.workers))
        self.owners = [self.workers[i % len(self.workers)] for i in range(len(self.bounds))]
        self._model_f = self.client.scatter(self.problem.model, broadcast=True, hash=False)
        # GPU workers declare a "GPU" resource; gradient tasks then run only there and
        # return NumPy arrays (CUDA tensors are not sent between processes)
        self._resources = {"resources": {"GPU": 1}} if s.execution.gpu_tasks else {}
        self._scatter_object(obj.value, obj.state)
        self._rot: tuple[Any, list] | None = None
        self._readers: list[list] = [[] for _ in self.bounds]
        self._watch_s = 2.0  # how often a long wait checks that the owners are alive
        self._worker_timeout = float(timeout)
        self.recoveries: list[tuple[int, int, str, int]] = []  # (epoch, batch, why, workers)

    def _scatter_object(self, value: np.ndarray, state: dict[str, np.ndarray],
                        grad: np.ndarray | None = None) -> None:
        """One :class:`~.tasks.SlabRecord` (object, optimizer state, gradient) per owner."""
        c = self.client
        self._slab = [c.scatter(tasks.SlabRecord(value[a:b], {k: v[a:b] for k, v in state.items()},
                                                 np.zeros_like(value[a:b]) if grad is None
                                                 else grad[a:b]), workers=[w], hash=False)
                      for (a, b), w in zip(self.bounds, self.owners)]

    def _records(self) -> list[tasks.SlabRecord]:
        return self._gather(self._slab)

    @property
    def object(self) -> np.ndarray:
        return np.concatenate([r.obj for r in self._records()])

    def close(self) -> None:
        super().close()
        self._slab, self._rot, self._readers = [], None, []
        self._model_f = None  # release our data before a cluster we made goes away
        client = getattr(self, "client", None)
        if client is not None and self._cluster is not None:
            client.close()
            self._cluster.close()

    # ------------------------------------------------------------------ one batch
    def _rotated_futures(self, i_theta: int) -> list:
        theta = float(self.problem.theta_rad[i_theta])
        if theta == 0.0:
            return self._slab  # cut_piece reads the records' object slabs
        key = (i_theta, self._obj_version)
        if self._rot is None or self._rot[0] != key:
            self._rot = (key, [self._submit_rotate(i, theta) for i in range(len(self.bounds))])
        return self._rot[1]

    # the slab operations (overridden by the file-backed h5 mode)
    def _submit_rotate(self, i: int, theta: float):
        return self.client.submit(tasks.rotate_record, self._slab[i], theta,
                                  workers=[self.owners[i]])

    def _submit_cut(self, i: int, rotated, region):
        return self.client.submit(tasks.cut_piece, rotated, self.bounds[i][0], region,
                                  self.problem.vacuum, workers=[self.owners[i]])

    def _submit_add(self, i: int, results: list) -> None:
        self._slab[i] = self.client.submit(tasks.add_to_record, self._slab[i], self.bounds[i][0],
                                           *results, workers=[self.owners[i]], pure=False)

    def _submit_add_update(self, i: int, results: list, theta: float, cfg: dict,
                           n_updates: int, cons) -> None:
        self._slab[i] = self.client.submit(tasks.add_and_update_record, self._slab[i],
                                           self.bounds[i][0], theta, cfg, n_updates, cons,
                                           *results, workers=[self.owners[i]], pure=False)

    def _piece(self, i: int, rot: list, region):
        """What a gradient task reads of slab ``i`` under ``region``: when the rows it needs
        are at least half of the rotated slab, the slab itself (the task cuts it: one task
        and one scheduler hop fewer per slab and batch, about the same bytes moved); else a
        piece cut on the owner (a small region of a tall slab)."""
        a, b = self.bounds[i]
        rows = min(b, region.y0 + region.ny) - max(a, region.y0)
        if self._direct_slabs and rot is not self._slab and \
                rows * min(region.nx, self.problem.geometry.obj_shape[1]) * 2 >= \
                (b - a) * self.problem.geometry.obj_shape[1]:
            return tasks.SLAB, a, rot[i]
        return self._submit_cut(i, rot[i], region)

    def _slabs_under(self, region) -> list[int]:
        return tasks.slabs_under(self.bounds, region)

    def _plan_groups(self, spec: BatchSpec) -> tuple[list[str], tasks.KernelJob, list[tuple]]:
        return plan_groups(self, spec, len(self.workers))

    def _run_batch(self, spec: BatchSpec) -> float:
        c, prob = self.client, self.problem
        wrt, job, groups = self._plan_groups(spec)
        rot = self._rotated_futures(spec.i_theta)
        results = []
        readers = [[] for _ in self.bounds]  # per slab, the gradient tasks that read it
        to_add = [[] for _ in self.bounds]  # per slab, what its owner adds to its gradient
        for k, (rows, tb, small, measured) in enumerate(groups):
            parts = tb.parts()
            pieces = [[self._piece(i, rot, reg) for i in self._slabs_under(reg)]
                      for reg, _, _ in parts]
            worker = self.workers[k % len(self.workers)]
            res = c.submit(tasks.gradient_task, self._model_f, job, tb, pieces,
                           prob.vacuum, small, measured, prob.loss, prob.mask, pure=False,
                           workers=[worker], allow_other_workers=True, **self._resources)
            results.append((res, rows))
            for i in sorted({i for reg, _, _ in parts for i in self._slabs_under(reg)}):
                readers[i].append(res)
                # another owner gets only the rows of its slab, cut where the task ran
                to_add[i].append(res if self.owners[i] == worker else
                                 c.submit(tasks.slab_share, res, *self.bounds[i], priority=1))
        # the object's side first, so the owners keep working while the client waits
        self._readers = readers
        if "obj" not in wrt:
            to_add = [[] for _ in self.bounds]
        else:
            self._pending += 1
        if self._pending and self._object_update_due(spec):
            self._update_object(spec, to_add)  # gradients added and the update in one task
        else:
            for i, res in enumerate(to_add):
                if res:
                    self._submit_add(i, res)
        if self._next_spec is not None and "obj" in wrt:
            self._rotated_futures(self._next_spec.i_theta)  # queued behind the update
        self.i_batch += 1
        small_due = [p for p in self.params.values() if p.kernel_key in wrt and p.name != "object"]
        reg = self._reg_value
        # loss shares and small gradients taken out where each gradient task ran (no
        # transfer of its object gradient)
        share_f = [c.submit(tasks.small_grads, r, priority=1) for r, _ in results]
        if not small_due:
            # nothing the client applies: the next batch is submitted at once and this
            # batch's loss is read later (the loop keeps ``lookahead`` batches in flight), so
            # the workers go on from the update to the next batch without waiting for us
            return lambda: float(sum(v for v, _ in self._gather(share_f))) + reg
        shares = self._gather(share_f)
        loss = float(sum(v for v, _ in shares))
        for p in small_due:
            p.apply(p.full_gradient(self._sum_small(p.kernel_key, shares,
                                                    [rows for _, rows in results], spec), spec))
        return loss + reg

    @staticmethod
    def _sum_small(key: str, shares, group_rows, spec: BatchSpec) -> np.ndarray:
        """Sum of the groups' small gradients ``key`` (``shares``: ``(loss, grads)`` per tile
        group; ``group_rows``: each group's rows in the minibatch)."""
        if key == "pos_px":  # per-tile gradients: put each group's rows back in batch order
            out = np.zeros((len(spec.tiles), 2))
            for (_, grads), rows in zip(shares, group_rows):
                out[rows] = grads[key]
            return out
        return sum(grads[key] for _, grads in shares)

    def _take_update(self) -> tuple[dict, int, tasks.SlabConstraints]:
        """``(optimizer config, update number, constraints)`` of the object update the
        owners are about to make; counted as made (update number, pending gradients and
        object version move on)."""
        obj = self.params["object"]
        g = self.problem.geometry
        args = (obj.optimizer.config(), obj.n_updates,
                tasks.SlabConstraints(g.unknown_type, obj.non_negativity, obj.object_type))
        obj.n_updates += 1
        self._pending = 0
        self._obj_version += 1
        return args

    def _update_object(self, spec: BatchSpec, to_add: list[list]) -> None:
        theta = float(self.problem.theta_rad[spec.i_theta])
        cfg, n_update, cons = self._take_update()
        for i in range(len(self.bounds)):
            self._submit_add_update(i, to_add[i], theta, cfg, n_update, cons)

    # ------------------------------------------------------------------ checkpoints
    def _pull_object(self) -> None:
        """Bring the owners' slabs (object, optimizer state, gradient) to the client."""
        obj = self.params["object"]
        records = self._records()
        obj.value = np.concatenate([r.obj for r in records])
        obj.state = {k: np.concatenate([r.state[k] for r in records]) for k in obj.state}
        if self._pending:
            self._grad_rot = np.concatenate([r.grad for r in records])

    def _push_object(self) -> None:
        obj = self.params["object"]
        self._scatter_object(obj.value, obj.state, self._grad_rot if self._pending else None)

    def state(self):
        self._pull_object()
        return super().state()

    def load_state(self, arrays, meta) -> None:
        super().load_state(arrays, meta)
        self._rot = None
        self._readers = [[] for _ in self.bounds]
        self._push_object()

    # ------------------------------------------------------------------ lost workers
    def _gather(self, futures: list) -> list:
        """``client.gather`` that notices lost owners instead of waiting for ever (a task
        restricted to a worker that is gone would never run).  A result can also be lost
        after it was computed and before it is fetched (its worker killed in between): the
        fetch then waits for a recomputation that may never come, so it is made with a
        timeout and the owners checked again."""
        while True:
            self._wait_done(futures)
            try:
                return [None if f is None else f.result(timeout=self._watch_s)
                        for f in futures]
            except TimeoutError:
                self._check_owners()

    def _check_owners(self) -> None:
        gone = set(self.workers) - set(_alive(self.client))
        if gone:
            raise WorkerLost(f"worker(s) {sorted(gone)} left the cluster") from None

    def _wait_done(self, futures: list) -> None:
        while True:
            try:
                wait([f for f in futures if f is not None], timeout=self._watch_s)
                return
            except TimeoutError:
                self._check_owners()

    def _cut_chains(self) -> None:
        """Each slab's future is the end of a chain of tasks, one per batch, and a worker
        keeps every released task that a task it holds depends on: without a cut, worker
        memory grows with every batch.  The slabs are stored again under new keys with no
        dependencies, on their owners, without leaving the workers."""
        self._wait_done(self._slab)
        old = self._slab
        where = self.client.who_has(old)
        new = []
        for f, owner in zip(old, self.owners):
            held = list(where.get(f.key, ()))
            at = owner if owner in held or not held else held[0]
            new.append(self.client.submit(tasks.republish, f.key, workers=[at], pure=False))
        self._wait_done(new)  # ``old`` held until the copies exist
        # a copy fails only if the value moved meanwhile (workers lost or added): that slab
        # keeps its chain until the next epoch
        self._slab = [n if n.status == "finished" else o for n, o in zip(new, old)]

    def _recovery_point(self):
        self._cut_chains()
        if self.settings.execution.recovery == "off":
            return None
        arrays, meta = self.state()
        point = {k: np.array(v) for k, v in arrays.items()}, meta
        alive = _alive(self.client)
        if len(self.workers) < len(self.bounds) and set(alive) > set(self.workers):
            # workers came back (a replacement job, a restarted nanny): deal the slabs out again
            self._deal(alive)
            self.load_state(*point)
        return point

    def _deal(self, workers: list[str]) -> None:
        """The same slabs, their owners dealt out over ``workers``."""
        self.workers = list(workers)
        self.owners = [workers[i % len(workers)] for i in range(len(self.bounds))]

    def _lost_workers(self, err: BaseException) -> str | None:
        if isinstance(err, WorkerLost):
            return str(err)
        lost_data = "lost dependencies" in str(err) or "lost" in str(err).lower()
        if isinstance(err, (CancelledError, KilledWorker, CommClosedError, OSError)) or lost_data:
            gone = self._wait_for_loss()
            if gone:
                return f"worker(s) {sorted(gone)} left the cluster ({type(err).__name__})"
            if lost_data:  # results held by a worker that has already been replaced
                return f"results were lost with a worker ({type(err).__name__})"
        return None

    def _wait_for_loss(self, seconds: float = 10.0) -> set:
        """The workers of this run the scheduler no longer lists (it may take a moment)."""
        t0 = time.monotonic()
        while True:
            gone = set(self.workers) - set(_alive(self.client))
            if gone or time.monotonic() - t0 > seconds:
                return gone
            time.sleep(0.2)

    def _recover(self, point, reason: str) -> None:
        """Drop every task, spread the slabs over the workers left, go back to ``point``."""
        arrays, meta = point
        self.client.cancel([f for f in self._slab + (self._rot[1] if self._rot else [])
                            if f is not None and not isinstance(f, int)], force=True)
        self._slab, self._rot = [], None
        workers = _alive(self.client)
        t0 = time.monotonic()
        while not workers and time.monotonic() - t0 < self._worker_timeout:
            time.sleep(1.0)
            workers = _alive(self.client)
        if not workers:
            raise WorkerLost(f"{reason}, and no worker came back within "
                             f"{self._worker_timeout:.0f} s")
        self._deal(workers)
        self._model_f = self.client.scatter(self.problem.model, broadcast=True, hash=False)
        self.recoveries.append((int(meta["epoch"]), int(meta["next_batch"]), reason,
                                len(workers)))
        if self.settings.output.progress:
            tqdm.write(f"daskorym: {reason}; continuing on {len(workers)} worker(s) from epoch "
                       f"{int(meta['epoch']) + 1}, batch {int(meta['next_batch'])}")
        self.load_state(arrays, meta)


class WorkerLost(RuntimeError):
    """A worker holding part of the object left the cluster."""


def _alive(client) -> list[str]:
    return sorted(client.run_on_scheduler(_worker_addresses))


def _worker_addresses(dask_scheduler=None) -> list[str]:
    return [a for a, ws in dask_scheduler.workers.items() if ws.status.name == "running"]


def plan_groups(rec: Reconstruction, spec: BatchSpec, n: int
                ) -> tuple[list[str], tasks.KernelJob, list[tuple]]:
    """What each of ``n`` workers' share of a minibatch needs: ``(wrt, job, groups)`` with one
    ``(rows in the minibatch, tile batch, small inputs, measured data)`` per tile group
    (:func:`~.tasks.tile_groups`, in bands of rows; fewer groups than ``n`` when the
    minibatch has fewer tiles)."""
    prob = rec.problem
    kp, wrt = rec._small_inputs(spec)
    measured = prob.measured(spec.i_theta, spec.tiles, fft_order=prob.fft_order)
    s = rec.settings.execution
    job = tasks.KernelJob((s.backend, s.precision, s.device, s.threads), tuple(wrt),
                          rec._n_pix(len(spec.tiles)), prob.fft_order)
    positions = rec._plan_positions(spec.i_theta)
    index = {int(t): k for k, t in enumerate(spec.tiles)}
    groups = []
    for group in tasks.tile_groups(spec.tiles, n, positions[spec.tiles, 0]):
        rows = np.array([index[int(t)] for t in group])
        tb = prob.model.plan_batch(spec.i_theta, group, positions[group])
        small = {k: (v[rows] if k == "pos_px" else v) for k, v in kp.items()}
        groups.append((rows, tb, small, measured[rows]))
    return wrt, job, groups
