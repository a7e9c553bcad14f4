"""The Dask engine with direct exchanges between slab owners (``execution.exchange =
"direct"``): one :class:`~.actors.SlabActor` per worker holds a y-slab of the object, and
the owners send each other rotated slabs and gradient rows without the scheduler (see
:mod:`daskorym.execution.actors`).  Same loop semantics, results and checkpoints as the
scheduled engine (:class:`~.dask_engine.DaskReconstruction`); a minibatch costs one round
trip from the client instead of a chain of scheduled tasks.

The slabs are dealt one per worker (a worker runs one actor call at a time, so two slabs
on one worker could wait on each other); after a worker is lost the object is cut again
into as many slabs as workers are left.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..config import ConfigError
from ..engine.schedule import BatchSpec
from . import tasks
from .actors import PeerLost, SlabActor
from .dask_engine import DaskReconstruction, _alive


class DirectDaskReconstruction(DaskReconstruction):
    """:class:`DaskReconstruction` whose slab owners are actors exchanging data directly."""

    # Minibatches go to the owners a few per call: each actor call costs the client and
    # each worker's event loop about a millisecond of CPU, which on a machine with no spare
    # core is taken from the steps (3D bench case, 2 workers on 2 cores).  The next call goes
    # out before the last one's losses are read (the actors run the steps in order), so the
    # owners always have work queued and the client's round trip is hidden behind it.
    steps_per_call = 4
    lookahead = 2 * steps_per_call

    def _setup_engine(self) -> None:
        if self.settings.execution.gpu_tasks:
            raise ConfigError("execution.exchange = 'direct' does not place work by GPU "
                              "resources yet; use exchange 'scheduler' with gpu_tasks")
        if self._slab_height_arg is not None:
            raise ConfigError("execution.exchange = 'direct' keeps one slab per worker; "
                              "slab_height applies to the scheduled exchange only")
        self._actors: list = []
        self._actor_futures: list = []
        self._outbox: list = []  # minibatches not sent yet: (each actor's step, its handle)
        self._last_calls: list = []
        self._watch_s, self._worker_timeout = 2.0, 60.0  # (the parent sets them again)
        super()._setup_engine()

    # ------------------------------------------------------------------ slabs as actors
    def _deal(self, workers: list[str]) -> None:
        """One slab per worker: the object is cut again over ``workers``."""
        self.workers = list(workers)
        ly = self.problem.geometry.obj_shape[0]
        self.bounds = tasks.even_slabs(ly, len(workers))
        self.owners = [workers[i] for i in range(len(self.bounds))]

    def _scatter_object(self, value: np.ndarray, state: dict[str, np.ndarray],
                        grad: np.ndarray | None = None) -> None:
        if len(self.bounds) != len(self.workers):
            self._deal(self.workers)
        self._drop_actors()
        self._outbox, self._last_calls = [], []  # (unsent steps belong to the old state)
        c, timeout = self.client, max(60.0, float(self._worker_timeout))
        authkey = os.urandom(32)  # this set of owners' links only
        futures = []
        for i, ((a, b), w) in enumerate(zip(self.bounds, self.owners)):
            record = tasks.SlabRecord(value[a:b], {k: v[a:b] for k, v in state.items()},
                                      np.zeros_like(value[a:b]) if grad is None else grad[a:b])
            futures.append(c.submit(SlabActor, i, self.bounds, record, self._model_f,
                                    self.problem.vacuum, self.i_batch, timeout, authkey,
                                    actor=True, workers=[w], pure=False))
        self._actor_futures = futures
        # the handles bind to the client current where they are unpickled: this run's client,
        # not the process's default one (another cluster's, in a session holding two)
        with c.as_current():
            self._actors = self._gather(futures)
        addresses = self._wait_actor([a.listen() for a in self._actors])
        self._wait_actor([a.connect(addresses) for a in self._actors])
        self._slab = []  # nothing for the scheduled paths to hold

    def _drop_actors(self) -> None:
        aborts = []
        for a in self._actors:
            try:  # a step waiting on a lost peer gives up at once; the links close
                aborts.append(a.abort())
            except Exception:  # noqa: BLE001 - its worker may be gone already
                pass
        deadline = time.monotonic() + 5.0  # before the actors go (a lost worker's never answers)
        for f in aborts:
            try:
                f.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - gone, or not answering: nothing left to do
                pass
        if self._actor_futures:
            self.client.cancel(self._actor_futures, force=True)
        self._actors, self._actor_futures = [], []

    def _records(self) -> list[tasks.SlabRecord]:
        return self._wait_actor([a.get_record() for a in self._actors])

    def _cut_chains(self) -> None:
        """Nothing to cut: the actors hold their slabs in place."""

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self._drop_actors()
        super().close()

    def _recovery_point(self):
        point = super()._recovery_point()
        alive = _alive(self.client)
        if point is not None and set(alive) > set(self.workers):
            # workers came back (a nanny's replacement, a new job): one slab each again
            self._deal(alive)
            self.load_state(*point)
        return point

    def _recover(self, point, reason: str) -> None:
        self._drop_actors()
        super()._recover(point, reason)

    # ------------------------------------------------------------------ waiting
    def _wait_actor(self, calls: list) -> list:
        """Results of actor calls; lost owners noticed while waiting."""
        out = []
        for f in calls:
            while True:
                try:
                    out.append(f.result(timeout=self._watch_s))
                    break
                except TimeoutError:
                    self._check_owners()
        return out

    def _lost_workers(self, err: BaseException) -> str | None:
        reason = super()._lost_workers(err)
        if reason is None and isinstance(err, PeerLost):
            gone = self._wait_for_loss()
            if gone:
                return f"worker(s) {sorted(gone)} left the cluster ({err})"
        return reason

    # ------------------------------------------------------------------ one batch
    def _run_batch(self, spec: BatchSpec):
        prob = self.problem
        wrt, job, groups = self._plan_groups(spec)
        # tile group k goes to the owner of slab k; owners beyond the groups only exchange
        work: list = [(job, tb, small, measured, prob.loss, prob.mask)
                      for _, tb, small, measured in groups]
        work += [None] * (len(self._actors) - len(work))
        if "obj" in wrt:
            self._pending += 1
        key = (self.i_batch, spec.i_theta, self._obj_version)  # before an update moves it on
        update = self._take_update() if self._pending and self._object_update_due(spec) \
            else None
        theta = float(prob.theta_rad[spec.i_theta])
        sent = {"call": None, "at": len(self._outbox)}  # the call: set by _send_steps
        self._outbox.append(([(key, theta, work[i], update) for i in range(len(self._actors))],
                             sent))
        self.i_batch += 1
        reg = self._reg_value
        small_due = [p for p in self.params.values() if p.kernel_key in wrt and p.name != "object"]
        # (the epoch's last minibatch: the loop waits for the losses next, so nothing more
        # comes to fill the call)
        if small_due or len(self._outbox) >= self.steps_per_call or self._owners_idle() \
                or self._next_spec is None:
            self._send_steps()

        def shares_of_batch() -> list:
            if sent["call"] is None:  # wanted before its call was full: send it now
                self._send_steps()
            call = sent["call"]
            if call["results"] is None:  # (read once for all the call's minibatches)
                call["results"] = self._wait_actor(call["futures"])
            return [r[sent["at"]] for r in call["results"]]

        if not small_due:  # read later: the next minibatches go out first
            return lambda: float(sum(v for v, _ in shares_of_batch())) + reg
        shares = shares_of_batch()
        group_rows = [rows for rows, *_ in groups]
        for p in small_due:
            p.apply(p.full_gradient(self._sum_small(p.kernel_key, shares[:len(groups)],
                                                    group_rows, spec), spec))
        return float(sum(v for v, _ in shares)) + reg

    def _send_steps(self) -> None:
        """One call per owner with the minibatches waiting in the outbox."""
        if not self._outbox:
            return
        batches, self._outbox = self._outbox, []
        futures = [a.steps([steps[i] for steps, _ in batches])
                   for i, a in enumerate(self._actors)]
        call = {"futures": futures, "results": None}
        for _, sent in batches:
            sent["call"] = call
        self._last_calls = futures

    def _owners_idle(self) -> bool:
        """Whether the owners have done every step sent to them (at the start of an epoch,
        say): then a minibatch goes out at once rather than waiting for a full call."""
        return all(f.done() for f in self._last_calls)
