"""Slab owners as Dask actors that exchange rotated slabs and gradient rows directly.

With ``execution.exchange = "direct"`` each worker holds one y-slab of the object in a
:class:`SlabActor`.  The client hands every actor its share of each minibatch
(:meth:`SlabActor.steps`: a few consecutive minibatches per call); the actors then talk to
each other without the scheduler:

1. when the angle or the object changed, each actor rotates its slab and sends it to the
   others (every gradient chunk spans several slabs in y);
2. each actor computes the gradient of its share of the tiles on the chunk assembled from
   the rotated slabs (:func:`~.tasks.gradient_task`), keeps the rows of its own slab and
   sends every other owner its rows (:func:`~.tasks.slab_share`);
3. on an object update each actor rotates its summed gradient back and takes the
   optimizer step on its slab (:func:`~.tasks.update_slab`).

The client only waits for the loss shares (and the small gradients it applies itself), so a
minibatch costs a share of one client round trip and two direct exchanges instead of four
scheduled hops.  The exchanges go over the owners' own authenticated TCP links
(:mod:`.links`; TLS on a TLS cluster), sent from and received beside the step threads, not
through the workers' event loops.  Messages are kept in an inbox keyed by
``(kind, tag, sender)``; a receiver waits for each expected message with a timeout, and
gives up at once when the sender's link breaks or when told to (:meth:`SlabActor.abort`),
so a lost peer never leaves a thread waiting for ever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from . import tasks
from .links import LinkLost, Links, worker_endpoint


class PeerLost(RuntimeError):
    """A message from another slab owner did not come (its worker is gone, or the run was
    aborted)."""


class SlabActor:
    """One slab's owner (see the module docstring).

    Parameters
    ----------
    index : this slab's number; ``bounds[index]`` are its rows
    bounds : ``[(y0, y1), ...]`` of every slab
    record : :class:`~.tasks.SlabRecord` (object slab, optimizer state, gradient)
    model, vacuum : the forward model and the fill value outside the object
    next_batch : the number of the first minibatch this actor will be asked for
    timeout : seconds to wait for a peer's message before giving up
    authkey : the key the owners' links authenticate with (the run's own)

    Steps run one at a time in the actor's own thread, in the order of their minibatch
    numbers whatever the order the calls arrive in (the client sends the next minibatch's
    call before the last one's result is back).
    """

    def __init__(self, index: int, bounds: list[tuple[int, int]], record: tasks.SlabRecord,
                 model, vacuum, next_batch: int = 0, timeout: float = 120.0,
                 authkey: bytes = b""):
        self.index = int(index)
        self.bounds = [tuple(b) for b in bounds]
        self._others = [j for j in range(len(self.bounds)) if j != self.index]
        self.record = record
        self.model = model
        self.vacuum = vacuum
        self.timeout = float(timeout)
        self._authkey = bytes(authkey)
        self._links: Links | None = None
        self._inbox: dict[tuple, Any] = {}
        self._lost: set[int] = set()
        self._cond = threading.Condition()
        self._aborted = False
        self._rot_key: tuple | None = None
        self._rotated: list[np.ndarray | None] = [None] * len(self.bounds)
        self._next = int(next_batch)
        # steps waiting for their turn: batch number -> (arguments, event loop, future)
        self._queued: dict[int, tuple] = {}
        self._running = False  # whether a step thread is running (one at a time)

    # ------------------------------------------------------------------ messages
    def listen(self) -> tuple:
        """Open this owner's links' listening socket on its worker's interface; returns the
        address the other owners connect to."""
        from distributed import get_worker
        host, tls = worker_endpoint(get_worker())
        self._links = Links(self.index, host, self._authkey, self._receive, self._link_lost,
                            self.timeout, tls)
        return self._links.address

    def connect(self, addresses: list) -> None:
        """Open the links to the other owners (``addresses`` by slab number, from
        :meth:`listen`)."""
        self._links.connect(addresses)

    def _receive(self, sender: int, message: tuple) -> None:
        kind, tag, data = message
        with self._cond:
            self._inbox[(kind, tuple(tag), int(sender))] = data
            self._cond.notify_all()

    def _link_lost(self, sender: int) -> None:
        with self._cond:
            self._lost.add(int(sender))
            self._cond.notify_all()

    async def abort(self) -> None:
        """Make any waiting or later step fail at once (the run is being recovered); the
        step thread and the links end."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
            # the steps not started fail now (the step thread, if any, stops after its step)
            left, self._queued = list(self._queued.values()), {}
        for _, loop, done in left:
            _settle(loop, done, error=PeerLost(f"slab {self.index}: aborted"))
        if self._links is not None:
            self._links.close()

    def _take(self, kind: str, tag: tuple, sender: int) -> Any:
        key = (kind, tuple(tag), int(sender))
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while key not in self._inbox:
                left = deadline - time.monotonic()
                if self._aborted or left <= 0 or sender in self._lost:
                    why = ("aborted" if self._aborted else "its link broke"
                           if sender in self._lost else "timed out")
                    raise PeerLost(f"slab {self.index}: no {kind} from slab {sender} for "
                                   f"{tag} ({why})")
                self._cond.wait(min(left, 1.0))
            return self._inbox.pop(key)

    def _send(self, j: int, kind: str, tag: tuple, data: Any) -> None:
        try:
            self._links.send(j, (kind, tuple(tag), data))
        except LinkLost as err:
            raise PeerLost(f"slab {self.index}: cannot send {kind} {tag} to slab {j} ({err})"
                           ) from err

    # ------------------------------------------------------------------ the work
    def _ensure_rotated(self, key: tuple, theta: float) -> None:
        """All slabs rotated to ``theta`` for the object version in ``key``."""
        if self._rot_key == key:
            return
        own = tasks.rotate_slab(self.record.obj, theta)
        if theta == 0.0:
            own = own.copy()  # the record's slab changes in place on an update
        for j in self._others:
            self._send(j, "rot", key, own)
        self._rotated = [own if j == self.index else self._take("rot", key, j)
                         for j in range(len(self.bounds))]
        self._rot_key = key

    async def steps(self, items: list[tuple]) -> list[tuple[float, dict[str, np.ndarray]]]:
        """Consecutive minibatches on this slab's owner, each after the ones numbered
        before it: ``items`` are ``(key, theta, work, update)`` of :meth:`_step`; returns
        their results in order.

        The steps are queued for a step thread, which runs the queued steps in order of
        their numbers and goes on to the next as soon as one is done (the client sends the
        next call before this one's results are back), without a round through the
        worker's event loop in between; it ends when the next step has not come yet (the
        next call starts another), so an idle actor holds no thread."""
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in items]
        with self._cond:
            if self._aborted:
                raise PeerLost(f"slab {self.index}: aborted")
            for args, fut in zip(items, done):
                self._queued[int(args[0][0])] = (tuple(args), loop, fut)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run_steps, daemon=True,
                                 name=f"daskorym-slab-{self.index}").start()
        # (gather: when one fails, the others' errors count as seen, not logged as lost)
        return list(await asyncio.gather(*done))

    def _run_steps(self) -> None:
        """The step thread: the queued steps in order while the next one is there (until
        an abort, which fails the rest)."""
        while True:
            with self._cond:
                if self._aborted or self._next not in self._queued:
                    self._running = False
                    return
                args, loop, done = self._queued.pop(self._next)
            try:
                result = self._step(*args)
            except BaseException as err:  # noqa: BLE001 - the caller's future carries it
                _settle(loop, done, error=err)
            else:
                _settle(loop, done, result=result)
            with self._cond:
                self._next += 1

    def _step(self, key: tuple, theta: float, work: tuple | None, update: tuple | None
              ) -> tuple[float, dict[str, np.ndarray]]:
        """One minibatch on this slab's owner.

        key : ``(batch number, i_theta, object version)``; the rotation is redone when the
            last two change
        work : ``(job, batch, small, measured, loss, mask)`` of this worker's tiles, or
            ``None`` (fewer tile groups than workers)
        update : ``(opt_config, i_update, constraints)`` when the object is updated after
            this minibatch
        Returns the loss share and the small gradients of this worker's tiles.
        """
        i_batch, rot_key = key[0], tuple(key[1:])
        self._ensure_rotated(rot_key, theta)
        loss, small, own = 0.0, {}, None  # own: this worker's tiles' object gradient
        shares: dict[int, Any] = {j: None for j in self._others}
        if work is not None:
            job, batch, small_in, measured, loss_fn, mask = work
            pieces = [[(tasks.SLAB, self.bounds[j][0], self._rotated[j])
                       for j in tasks.slabs_under(self.bounds, reg)]
                      for reg, _, _ in batch.parts()]
            result = tasks.gradient_task(self.model, job, batch, pieces, self.vacuum, small_in,
                                         measured, loss_fn, mask)
            loss, small = tasks.small_grads(result)
            if "obj" in job.wrt:
                own = result
                shares = {j: tasks.slab_share(result, *self.bounds[j]) for j in self._others}
        for j in self._others:
            self._send(j, "grad", (i_batch,), shares[j])
        y0 = self.bounds[self.index][0]
        if own is not None:  # (added while the others' shares come)
            tasks.add_object_grad(self.record.grad, y0, own)
        for j in self._others:
            share = self._take("grad", (i_batch,), j)
            if share is not None:
                tasks.add_object_grad(self.record.grad, y0, share)
        if update is not None:
            cfg, i_update, cons = update
            self.record = tasks.SlabRecord(*tasks.update_slab(
                self.record.obj, self.record.grad, self.record.state, theta, cfg, i_update,
                cons))
            self._rot_key = None
        return loss, small

    # ------------------------------------------------------------------ state
    def get_record(self) -> tasks.SlabRecord:
        return self.record


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future, *, result: Any = None,
            error: BaseException | None = None) -> None:
    """Complete an event loop's ``future`` from another thread (unless it was cancelled, or
    its loop has closed: its caller is gone)."""
    def put() -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
    try:
        loop.call_soon_threadsafe(put)
    except RuntimeError:  # the loop has closed
        pass
