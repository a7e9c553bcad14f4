"""The MPI engine: Adorym's three distribution modes over mpi4py, buffer collectives only.

Run with ``mpiexec -n N daskorym reconstruct CONFIG --engine mpi --mode dp|do|h5``.
Every rank runs the same loop (:class:`~daskorym.engine.Reconstruction`) over
the same batch order; each global minibatch is split among the ranks exactly
as the Dask engine splits it among workers.

* ``dp``: every rank holds the object; the rotated-frame gradient is summed
  with a buffer ``Allreduce`` and every rank takes the same step.
* ``do``: rank r owns the y-slab ``[y0_r, y1_r)``; owners rotate their slab
  once per angle; the rows under each rank's tiles are exchanged with one
  ``Alltoallv`` on float buffers, gradient pieces go back to the owners with a
  second ``Alltoallv`` and are added there; owners rotate the gradient back
  (exact adjoint, slab-local) and update their slab.
* ``h5``: as ``do``, with the object, its gradient and the optimizer state in
  one HDF5 file (``<output>/work/objects.h5``, MPI-IO when h5py has it); each
  rank reads and writes only its own rows, so accumulation is race-free.

Small parameters (probe, positions) are summed with ``Allreduce`` and updated
identically on every rank.  Only rank 0 writes outputs and checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ConfigError, Settings, load_settings
from ..engine.loop import Reconstruction
from ..engine.schedule import BatchSpec
from ..physics import add_region
from . import tasks
from .comm import TimedComm, alltoallv, get_comm, mpi_datatype


class _RankOutput:
    """Output stand-in on ranks > 0: knows the folder, writes nothing."""

    def __init__(self, path) -> None:
        self.path = Path(path)

    def __getattr__(self, name):
        return lambda *a, **k: None


class MPIReconstruction(Reconstruction):
    """:class:`Reconstruction` over MPI ranks (a null communicator for one process)."""

    engine = "mpi"

    def __init__(self, settings, inputs=None, *, comm=None) -> None:
        self.comm = TimedComm(comm if comm is not None else get_comm())
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._gathered: np.ndarray | None = None
        settings = settings if isinstance(settings, Settings) else load_settings(settings)
        if self.rank != 0 and settings.output.progress:  # one progress bar, on rank 0
            settings = settings.model_copy(deep=True)
            settings.output.progress = False
        super().__init__(settings, inputs)

    def _make_output(self):
        """Rank 0 checks and creates the folder; every rank raises the same error if it fails."""
        out, error = None, None
        if self.rank == 0:
            try:
                out = super()._make_output()
            except (OSError, ValueError) as err:
                error = err
        message = self.comm.bcast(None if error is None else str(error), root=0)
        if error is not None:
            raise error
        if message is not None:
            raise ConfigError(f"rank 0: {message}")
        return out if self.rank == 0 else _RankOutput(self.settings.output.folder)

    # ------------------------------------------------------------------ set-up
    def _setup_engine(self) -> None:
        mode = self.settings.execution.mode
        obj = self.params["object"]
        if mode != "dp":
            if self.problem.regularizers or obj.support is not None:
                raise ConfigError("regularizers and a finite support need mode 'dp' in the MPI "
                                  "engine (TV needs rows of neighbouring slabs)")
            if not obj.optimizer.elementwise:
                raise ConfigError(f"mode {mode!r} updates slab by slab: optimizer "
                                  f"{obj.settings.optimizer!r} is not elementwise")
        ly = self.problem.geometry.obj_shape[0]
        if mode != "dp" and self.size > ly:
            raise ConfigError(f"mode {mode!r} gives each rank a slab of object rows: "
                              f"{self.size} ranks for {ly} rows; use at most {ly} ranks or "
                              f"mode 'dp'")
        edges = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(ly), self.size)])
        self.bounds = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.y0, self.y1 = self.bounds[self.rank]
        self._slabs = None
        if mode in ("do", "h5") and not self.settings.output.resume:
            self._keep_own_rows()  # on resume, from the checkpoint (see _restore)
        self._rot_slab = None

    def _keep_own_rows(self) -> None:
        """Move this rank's rows of the object and its optimizer state to slab storage."""
        obj = self.params["object"]
        self._slabs = _SlabStorage.create(self, obj.value, obj.state)
        obj.value, obj.state = None, {}

    @property
    def comm_seconds(self) -> float:
        """Wall time this rank spent in MPI collectives (including waiting for other ranks)."""
        return self.comm.seconds

    def close(self) -> None:
        """Close the dataset and, in mode 'h5', the shared HDF5 file (collective: every rank)."""
        slabs = getattr(self, "_slabs", None)
        if slabs is not None:
            slabs.close()
        super().close()

    @property
    def object(self) -> np.ndarray:
        """The whole object; collective in modes 'do' and 'h5' (every rank must ask)."""
        if self.settings.execution.mode == "dp":
            return self.params["object"].value
        if self._gathered is not None:
            return self._gathered
        return self._allgather_rows(self._slabs.read("obj"))

    def _outputs_due(self) -> bool:
        return bool(self.comm.bcast(super()._outputs_due() if self.rank == 0 else None, root=0))

    def _allgather_rows(self, rows: np.ndarray) -> np.ndarray:
        shape = tuple(self.problem.geometry.obj_shape) + (2,)
        row = int(np.prod(shape[1:]))
        counts = [(b - a) * row for a, b in self.bounds]
        out = np.empty(shape, rows.dtype)
        self.comm.Allgatherv(np.ascontiguousarray(rows),
                             [out, counts, None, mpi_datatype(rows.dtype)])
        return out

    # ------------------------------------------------------------------ one batch
    def _my_group(self, spec: BatchSpec) -> tuple[list[np.ndarray], np.ndarray, int]:
        """Every rank's tiles of the minibatch, this rank's, and where they start in it."""
        groups = np.array_split(np.asarray(spec.tiles), self.size)
        return groups, groups[self.rank], sum(len(g) for g in groups[:self.rank])

    def _run_batch(self, spec: BatchSpec) -> float:
        mode = self.settings.execution.mode
        groups, mine, offset = self._my_group(spec)
        n_pix = self._n_pix(len(spec.tiles))
        sub = BatchSpec(spec.i_theta, mine, spec.last_of_angle)
        kp, wrt = self._small_inputs(spec)
        if len(mine):
            if mode == "dp":
                loss, grads, tb = self._evaluate(sub, wrt, n_pix)
            else:
                loss, grads, tb = self._evaluate_distributed(spec, groups, offset, kp, wrt, n_pix)
        else:
            loss, grads, tb = 0.0, {}, None
            if mode != "dp":
                self._evaluate_distributed(spec, groups, offset, kp, wrt, n_pix)
        loss = self._allreduce_scalar(loss)
        for p in self.params.values():
            if p.kernel_key in wrt and p.name != "object":
                g = self._reduce_small(p.kernel_key, grads, kp, offset, len(mine))
                p.apply(p.full_gradient(g, spec))
        if "obj" in wrt:
            if mode == "dp":
                if self._grad_rot is None:
                    self._grad_rot = np.zeros_like(self.params["object"].value)
                if tb is not None:
                    tb.add_chunk_to(lambda r, a: add_region(self._grad_rot, r, a),
                                    grads["obj"])
            self._pending += 1
        if self._pending and self._object_update_due(spec):
            self._update_object(spec)
        self.i_batch += 1
        return loss + self._reg_value

    def _allreduce_scalar(self, value: float) -> float:
        buf = np.array([value], np.float64)
        out = np.empty_like(buf)
        self.comm.Allreduce(buf, out)
        return float(out[0])

    def _reduce_small(self, key, grads, kp, offset, n_mine) -> np.ndarray:
        if key == "pos_px":  # per tile: each rank fills its rows of the batch
            full = np.zeros(kp[key].shape, np.float64)
            if n_mine:
                full[offset:offset + n_mine] = grads[key]
        else:
            full = np.asarray(grads[key], np.float64) if key in grads else \
                np.zeros(np.shape(kp[key]), np.float64)
        out = np.empty_like(full)
        self.comm.Allreduce(full, out)
        return out

    # ------------------------------------------------------------------ do / h5 chunks
    def _rotated_slab(self, i_theta: int) -> np.ndarray:
        key = (i_theta, self._obj_version)
        if self._rot_slab is None or self._rot_slab[0] != key:
            theta = float(self.problem.theta_rad[i_theta])
            self._rot_slab = (key, tasks.rotate_slab(self._slabs.read("obj"), theta))
        return self._rot_slab[1]

    def _plans(self, spec: BatchSpec, groups):
        positions = self._plan_positions(spec.i_theta)
        return [self.problem.model.plan_batch(spec.i_theta, g, positions[g]) if len(g) else None
                for g in groups]

    def _evaluate_distributed(self, spec, groups, offset, kp, wrt, n_pix):
        """Assemble this rank's chunk from the owners (Alltoallv), evaluate, send gradients back.

        The chunk is assembled and evaluated by the Dask engine's gradient task (the same
        function on this rank's pieces).
        """
        plans = self._plans(spec, groups)
        rot = self._rotated_slab(spec.i_theta)
        prob, fill = self.problem, self.problem.vacuum
        lz_c = rot.shape[2:]
        send = [[tasks.cut_piece(rot, self.y0, reg, fill)[1] for reg, _, _ in plan.parts()]
                if plan is not None else [] for plan in plans]
        expected = [self._piece_shapes(plans[self.rank], owner, lz_c) for owner in range(self.size)]
        received = alltoallv(self.comm, send, expected, rot.dtype)
        result = (0.0, {}, None)
        tb = plans[self.rank]
        if tb is not None:
            part_pieces = [[(max(a, reg.y0) - reg.y0, received[owner][k])
                            for owner, (a, _) in enumerate(self.bounds)
                            if received[owner][k].shape[0]]
                           for k, (reg, _, _) in enumerate(tb.parts())]
            small = {k: (v[offset:offset + len(tb.tiles)] if k == "pos_px" else v)
                     for k, v in kp.items()}
            s = self.settings.execution
            job = tasks.KernelJob((s.backend, s.precision, s.device, s.threads), tuple(wrt),
                                  n_pix, prob.fft_order)
            out = tasks.gradient_task(prob.model, job, tb, part_pieces, fill, small,
                                      prob.measured(spec.i_theta, tb.tiles, prob.fft_order),
                                      prob.loss, prob.mask)
            result = (out["loss"], out["grads"], tb)
        if "obj" in wrt:
            self._return_gradient(plans, result)
        return result

    def _piece_shapes(self, plan, owner, lz_c):
        """Shapes of the pieces ``owner`` cuts for ``plan`` (one per part)."""
        if plan is None:
            return []
        a, b = self.bounds[owner]
        return [(max(0, min(b, reg.y0 + reg.ny) - max(a, reg.y0)), reg.nx) + tuple(lz_c)
                for reg, _, _ in plan.parts()]

    def _return_gradient(self, plans, result) -> None:
        _, grads, tb = result
        lz_c = tuple(self.problem.geometry.obj_shape[2:]) + (2,)
        send = [[] for _ in range(self.size)]
        if tb is not None:
            g = grads["obj"]
            for reg, r0, c0 in tb.parts():
                for owner, (a, b) in enumerate(self.bounds):
                    ya, yb = max(a, reg.y0), min(b, reg.y0 + reg.ny)
                    rows = max(yb - ya, 0)
                    send[owner].append(g[r0 + ya - reg.y0:r0 + ya - reg.y0 + rows,
                                         c0:c0 + reg.nx])
        expected = [self._piece_shapes(plans[src], self.rank, lz_c) for src in range(self.size)]
        received = alltoallv(self.comm, send, expected, np.dtype(self.be.np_real))
        grad = self._slabs.read("grad")
        for src in range(self.size):
            plan = plans[src]
            if plan is None:
                continue
            for (reg, _, _), piece in zip(plan.parts(), received[src]):
                if piece.shape[0]:
                    ya = max(self.y0, reg.y0)
                    sub = {"grads": {"obj": piece},
                           "parts": [(type(reg)(ya, reg.x0, piece.shape[0], reg.nx), 0, 0)]}
                    grad = tasks.add_object_grad(grad, self.y0, sub)
        self._slabs.write("grad", grad)

    # ------------------------------------------------------------------ updates
    def _update_object(self, spec: BatchSpec) -> None:
        if self.settings.execution.mode == "dp":
            out = np.empty_like(self._grad_rot)
            self.comm.Allreduce(self._grad_rot, out)
            self._grad_rot = out
            return super()._update_object(spec)
        obj = self.params["object"]
        theta = float(self.problem.theta_rad[spec.i_theta])
        g = self.problem.geometry
        cons = tasks.SlabConstraints(g.unknown_type, obj.non_negativity, obj.object_type)
        state = {k: self._slabs.read(f"state/{k}") for k in self._slabs.state_keys}
        new, new_state, zero = tasks.update_slab(self._slabs.read("obj"), self._slabs.read("grad"),
                                                 state, theta, obj.optimizer.config(),
                                                 obj.n_updates, cons)
        self._slabs.write("obj", new)
        self._slabs.write("grad", zero)
        for k, v in new_state.items():
            self._slabs.write(f"state/{k}", v)
        obj.n_updates += 1
        self._pending = 0
        self._obj_version += 1

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> None:
        if self.settings.execution.mode == "dp":
            if self.rank == 0:
                super().checkpoint()
            return
        obj = self.params["object"]
        full = self.object
        state = {k: self._allgather_rows(self._slabs.read(f"state/{k}"))
                 for k in self._slabs.state_keys}
        grad = self._allgather_rows(self._slabs.read("grad")) if self._pending else None
        if self.rank == 0:
            obj.value, obj.state, self._grad_rot = full, state, grad
            super().checkpoint()
            obj.value, obj.state, self._grad_rot = None, {}, None

    def _restore(self) -> None:
        super()._restore()  # the whole object from the checkpoint; each rank keeps its rows
        if self.settings.execution.mode != "dp":
            self._keep_own_rows()
            if self._pending:
                self._slabs.write("grad", self._grad_rot[self.y0:self.y1])
                self._grad_rot = None

    def write_outputs(self) -> None:
        self._gathered = self.object if self.settings.execution.mode != "dp" else None
        try:
            if self.rank == 0:
                super().write_outputs()
        finally:
            self._gathered = None

    def result(self):
        self._gathered = self.object if self.settings.execution.mode != "dp" else None
        try:
            return super().result()
        finally:
            self._gathered = None


class _SlabStorage:
    """This rank's rows of the object, its gradient and optimizer state: memory or HDF5."""

    def __init__(self, arrays: dict, state_keys: list[str], rows: tuple[int, int],
                 h5file=None) -> None:
        self.arrays, self.state_keys, self.rows, self.h5file = arrays, state_keys, rows, h5file

    @classmethod
    def create(cls, engine: MPIReconstruction, value: np.ndarray, state: dict) -> "_SlabStorage":
        y0, y1 = engine.y0, engine.y1
        rows = {"obj": value[y0:y1].copy(), "grad": np.zeros_like(value[y0:y1])}
        rows.update({f"state/{k}": v[y0:y1].copy() for k, v in state.items()})
        if engine.settings.execution.mode == "do":
            return cls(rows, list(state), (y0, y1))
        return cls._in_hdf5(engine, value.shape, value.dtype, rows, list(state))

    @classmethod
    def _in_hdf5(cls, engine, shape, dtype, rows, state_keys) -> "_SlabStorage":
        import h5py
        folder = Path(engine.settings.output.folder) / "work"
        if engine.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
        engine.comm.Barrier()
        path = folder / "objects.h5"
        if engine.size > 1:
            if not h5py.get_config().mpi:
                raise ConfigError("mode 'h5' with several ranks needs h5py built with MPI "
                                  "(deploy/install-parallel-h5py.sh)")
            f = h5py.File(path, "w", driver="mpio", comm=engine.comm.raw)
        else:
            f = h5py.File(path, "w")
        for name in rows:  # creation is collective
            f.create_dataset(name, shape=shape, dtype=dtype)
        storage = cls({name: f[name] for name in rows}, state_keys, (engine.y0, engine.y1), f)
        for name, arr in rows.items():
            storage.write(name, arr)
        return storage

    def close(self) -> None:
        if self.h5file is not None:
            self.h5file.close()  # collective with MPI-IO: every rank closes
            self.h5file = None
            self.arrays = {}

    def read(self, name: str) -> np.ndarray:
        a = self.arrays[name]
        if self.h5file is None:
            return a
        y0, y1 = self.rows
        return a[y0:y1]

    def write(self, name: str, arr: np.ndarray) -> None:
        if self.h5file is None:
            self.arrays[name] = arr
            return
        y0, y1 = self.rows
        if y1 > y0:
            self.arrays[name][y0:y1] = arr
