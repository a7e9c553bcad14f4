"""The reconstruction loop on one machine, with the semantics every engine shares.

Per global minibatch (all tiles of one angle, order from
:func:`~daskorym.engine.schedule.epoch_batches`):

1. the object is rotated to the angle (cached until it changes);
2. the chunk under the tiles is cut out and the kernel's
   ``value_and_grad`` gives the mean loss over the minibatch's pixels and
   the gradients of every parameter due at this batch;
3. small parameters (probe, positions, ...) are updated at once;
4. the object gradient is accumulated in the rotated frame and applied
   (rotated back with the exact adjoint, regularizers added) after every
   minibatch in ``dp`` mode, or after the angle's minibatches (or every
   ``n_batch_per_update`` batches) in ``do`` and ``h5`` modes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..backend import get_backend
from ..config import ConfigError, Settings, load_settings
from ..optim import get_optimizer
from ..outputs import OutputFolder, PreviewSchedule, load_checkpoint, save_checkpoint
from ..parameters import (PARAMETERS, ObjectParameter, ProbeParameter, ProbePositions,
                          RefinableParameter)
from ..physics import RotationOperator, add_region, extract_region
from ..regularizers import ReweightedL1Regularizer, SupportMask
from .problem import InMemoryInputs, Problem, build_problem, initial_object, initial_probe
from .schedule import BatchSpec, epoch_batches


@dataclass
class ReconstructionResult:
    """What a run produced (also written to ``output_folder``)."""

    object: np.ndarray
    probe: np.ndarray
    parameters: dict[str, np.ndarray]
    loss_history: list[tuple[int, int, float, float]]
    output_folder: Path
    seconds: float = 0.0
    epochs: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.loss_history[-1][2] if self.loss_history else float("nan")


class Reconstruction:
    """A run that a notebook can advance a few epochs at a time.

    >>> with Reconstruction(settings) as rec:      # doctest: +SKIP
    ...     rec.run(2)          # two epochs
    ...     rec.object          # look
    ...     rec.run(3)          # continue
    """

    engine = "local"
    #: batches an engine may keep in flight while it submits the next one (its
    #: ``_run_batch`` then returns a callable giving the loss, see ``_run_epoch``)
    lookahead = 0

    def __init__(self, settings: Settings | dict, inputs: InMemoryInputs | None = None) -> None:
        self.settings = settings if isinstance(settings, Settings) else load_settings(settings)
        s = self.settings
        if s.execution.engine != self.engine:
            raise ConfigError(f"execution.engine = {s.execution.engine!r}: use "
                              f"daskorym.make_reconstruction (or daskorym.reconstruct), which "
                              f"picks the engine; {type(self).__name__} runs {self.engine!r}")
        self.problem: Problem = build_problem(s, inputs)
        self.be = get_backend(s.execution.backend, s.execution.precision, s.execution.device)
        self.be.set_threads(s.execution.threads)
        self.out = self._make_output()
        self.params: dict[str, RefinableParameter] = self._make_parameters()
        self.epoch = 0
        self.next_batch = 0
        self.i_batch = 0
        self.history: list[tuple[int, int, float, float]] = []
        self._grad_rot: np.ndarray | None = None
        self._pending = 0
        self._obj_version = 0
        self._next_spec: BatchSpec | None = None
        self._rot_cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._reg_value = 0.0
        self._seconds = 0.0
        self._point = None  # what a run goes back to when workers are lost (Dask)
        self._previews = PreviewSchedule(s.output.preview_every_epochs,
                                         s.output.preview_every_minutes)
        self._setup_engine()
        if s.output.resume:
            self._restore()
        else:
            self.out.write_settings(s.to_json_dict())
            self._reg_value = self._regularizer_value()

    # ------------------------------------------------------------------ set-up
    def _make_parameters(self) -> dict[str, RefinableParameter]:
        s, prob = self.settings, self.problem
        support = None
        if s.object.support_path is not None:
            support = SupportMask(_load_mask(s.object.support_path, prob.geometry.obj_shape),
                                  s.object.shrink_threshold)
        k1 = prob.geometry.modulation.k1 if prob.geometry.unknown_type == "delta_beta" else 1.0
        # default step: 0.03 rad of phase (or 3 % of transmission) per update summed along the
        # beam, so per voxel 1/Lz of that: per voxel, a thick object diverged (3D bench case:
        # loss up from epoch 4 to 1e26; with 1/Lz it falls 9.0 -> 1.0 in 14 epochs)
        n_slices = prob.geometry.obj_shape[2]
        obj = ObjectParameter(initial_object(prob).astype(self.be.np_real),
                              _with_step(s.parameters["object"], 3e-2 / (k1 * n_slices)),
                              unknown_type=prob.geometry.unknown_type,
                              non_negativity=s.object.non_negativity,
                              object_type=s.object.object_type, support=support)
        obj.constrain()
        probe = initial_probe(prob)
        probe_step = 1e-2 * float(np.abs(probe).max())
        params: dict[str, RefinableParameter] = {
            "object": obj,
            "probe": ProbeParameter(probe, _with_step(s.parameters["probe"], probe_step),
                                    power_normalize=s.probe.power_normalize,
                                    support_radius_px=s.probe.support_radius_px,
                                    center=s.probe.center, orthogonalize=s.probe.orthogonalize),
        }
        pos_settings = s.parameters.get("probe_pos")
        if pos_settings is None:
            from ..config import ParameterSettings
            pos_settings = ParameterSettings(optimize=False, optimizer="gd")
        params["probe_pos"] = ProbePositions(prob.positions_px, _with_step(pos_settings, 1e-2))
        for name, ps in s.parameters.items():
            if name not in params:  # parameters declared by users or later features
                cls = PARAMETERS[name]
                if cls.kernel_key not in prob.model.inputs:
                    raise ValueError(f"parameter {name!r} is not an input of the model "
                                     f"{prob.model.name!r} (inputs: {prob.model.inputs})")
                try:
                    value = cls.initial(prob, ps)
                except ValueError as err:
                    raise ConfigError(str(err)) from None
                par = cls(value, _with_step(ps, 1.0))
                if ps.step_size is None:  # the parameter's own default, in its units
                    par.settings = _with_step(ps, par.default_step())
                    par.optimizer = get_optimizer(ps.optimizer, step_size=par.settings.step_size,
                                                  **ps.options)
                params[name] = par
        if "tilt" in params:  # tilts pull in voxels around the tiles: box chunks with a halo
            prob.model.layout = "box"
            # a tilt of up to 3 degrees moves voxels by up to 0.05 of the half-extent
            prob.model.halo_px = int(np.ceil(0.05 * max(prob.geometry.obj_shape) / 2)) + 1
        for name, opt in prob.inputs.optimizers.items():
            p = params[name]
            p.optimizer = opt
            p.state = opt.init_state(p.value.shape, p.value.dtype)
        return params

    def _make_output(self):
        """The output folder (checked: never another run's results without resume)."""
        s = self.settings
        return OutputFolder(s.output.folder, resume=s.output.resume)

    def _setup_engine(self) -> None:
        """Engine-specific set-up after the parameters exist (none on one machine)."""

    def __enter__(self) -> "Reconstruction":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.problem.dataset.close()

    # ------------------------------------------------------------------ views
    @property
    def object(self) -> np.ndarray:
        return self.params["object"].value

    @property
    def probe(self) -> np.ndarray:
        return self.params["probe"].value

    @property
    def n_epochs(self) -> int:
        return self.settings.optimization.n_epochs

    # ------------------------------------------------------------------ one batch
    def _rotated(self, i_theta: int) -> np.ndarray:
        theta = float(self.problem.theta_rad[i_theta])
        obj = self.params["object"].value
        if theta == 0.0:
            return obj
        key = (i_theta, self._obj_version)
        if self._rot_cache is None or self._rot_cache[0] != key:
            self._rot_cache = (key, RotationOperator(obj.shape[1:3], theta)(obj))
        return self._rot_cache[1]

    def _small_inputs(self, spec: BatchSpec) -> tuple[dict, list[str]]:
        """Kernel inputs other than the object, and the names to differentiate now."""
        prob = self.problem
        kp, wrt = {}, []
        for p in self.params.values():
            if p.kernel_key not in prob.model.inputs or p.name == "object":
                continue
            value = p.kernel_value(spec)
            if p.name == "probe_pos" and not p.refined and "probe_pos_offset" not in self.params \
                    and np.all(value == np.round(value)):
                continue  # integer positions: no sub-pixel shift needed
            kp[p.kernel_key] = value
            if p.due(self.i_batch):
                wrt.append(p.kernel_key)
        if self.params["object"].due(self.i_batch):
            wrt.insert(0, "obj")
        return kp, wrt

    def _plan_positions(self, i_theta: int) -> np.ndarray:
        """Positions ``[n_tiles, 2]`` the object crops are planned at: the scan positions
        plus the angle's probe offset (its integer part moves the crops)."""
        pos = self.params["probe_pos"].value[i_theta]
        off = self.params.get("probe_pos_offset")
        return pos if off is None else pos + off.value[i_theta]

    def _kernel_inputs(self, spec: BatchSpec):
        prob = self.problem
        tb = prob.model.plan_batch(spec.i_theta, spec.tiles,
                                   self._plan_positions(spec.i_theta)[spec.tiles])
        rot = self._rotated(spec.i_theta)
        kp, wrt = self._small_inputs(spec)
        kp["obj"] = _chunk(tb, rot, prob.vacuum)
        return tb, kp, wrt

    def _n_pix(self, n_tiles: int) -> int:
        """Detector pixels compared for ``n_tiles`` tiles (the loss is their mean)."""
        prob = self.problem
        per_tile = int(np.prod(prob.geometry.det_shape)) if prob.mask is None \
            else int(np.sum(prob.mask))
        return per_tile * int(n_tiles)

    def _evaluate(self, spec: BatchSpec, wrt_names: list[str] | None = None,
                  n_pix: int | None = None):
        """Mean loss of a minibatch and the kernel's gradients ``(loss, grads, tile batch)``.

        ``wrt_names`` overrides the kernel inputs differentiated (default: those due now).
        """
        prob, be = self.problem, self.be
        tb, kp, wrt = self._kernel_inputs(spec)
        if wrt_names is not None:
            wrt = [k for k in wrt_names if k in kp]
        measured = prob.measured(spec.i_theta, spec.tiles, fft_order=prob.fft_order)
        n_pix = n_pix or self._n_pix(len(spec.tiles))

        def f(q):
            return prob.model.tile_loss(be, q, tb, measured, prob.loss, prob.mask,
                                        measured_fft_order=prob.fft_order)[0] / n_pix

        if wrt:
            loss, grads = be.value_and_grad(f, kp, wrt)
        else:
            loss, grads = float(be.evaluate(f, kp)), {}
        return loss, grads, tb

    def _closure(self, p: RefinableParameter, spec: BatchSpec):
        """``closure(x) -> (loss, full gradient)`` of this minibatch for line searches."""
        if not p.optimizer.needs_closure:
            return None
        if p.name == "object" and self.settings.execution.mode != "dp":
            raise ValueError(f"optimizer {p.settings.optimizer!r} for the object needs mode 'dp' "
                             f"(it re-evaluates the minibatch loss), got mode "
                             f"{self.settings.execution.mode!r}")

        def closure(x: np.ndarray):
            saved = p.value.copy()
            p.value[...] = x
            self._obj_version += 1
            try:
                loss, grads, tb = self._evaluate(spec, [p.kernel_key])
                if p.name == "object":
                    full = np.zeros_like(p.value)
                    tb.add_chunk_to(lambda r, a: add_region(full, r, a), grads["obj"])
                    full = self._unrotate(full, spec.i_theta)
                    if self.problem.regularizers:
                        reg, rg = self._regularizer_value(with_grad=True)
                        loss, full = loss + reg, full + rg["obj"]
                else:
                    full = p.full_gradient(grads[p.kernel_key], spec)
            finally:
                p.value[...] = saved
                self._obj_version += 1
            return loss, full
        return closure

    def _run_batch(self, spec: BatchSpec) -> float:
        loss, grads, tb = self._evaluate(spec)
        if "obj" in grads:
            if self._grad_rot is None:
                self._grad_rot = np.zeros_like(self.object)
            tb.add_chunk_to(lambda r, a: add_region(self._grad_rot, r, a), grads["obj"])
            self._pending += 1
        for p in self.params.values():
            if p.kernel_key in grads and p.name != "object":
                p.apply(p.full_gradient(grads[p.kernel_key], spec), self._closure(p, spec))
        if self._pending and self._object_update_due(spec):
            self._update_object(spec)
        self.i_batch += 1
        return loss + self._reg_value

    def _unrotate(self, grad: np.ndarray, i_theta: int) -> np.ndarray:
        theta = float(self.problem.theta_rad[i_theta])
        return grad if theta == 0.0 else RotationOperator(grad.shape[1:3], theta).adjoint(grad)

    def _object_update_due(self, spec: BatchSpec) -> bool:
        s = self.settings
        if s.execution.mode == "dp":
            return True  # 'do' and 'h5' both update after the angle (or every k batches)
        n = s.optimization.n_batch_per_update
        return spec.last_of_angle or (n is not None and self._pending >= n)

    def _regularizer_value(self, with_grad: bool = False):
        regs = self.problem.regularizers
        if not regs:
            return (0.0, None) if with_grad else 0.0
        be, ut = self.be, self.problem.geometry.unknown_type
        for r in regs:
            if isinstance(r, ReweightedL1Regularizer) and (r.weight is None or self.i_batch % 10 == 0):
                r.update_weight(self.object)

        def f(q):
            return sum(r(be, q["obj"], ut) for r in regs)

        if with_grad:
            return be.value_and_grad(f, {"obj": self.object}, ["obj"])
        return float(be.evaluate(f, {"obj": self.object}))

    def _update_object(self, spec: BatchSpec) -> None:
        obj = self.params["object"]
        grad = self._unrotate(self._grad_rot, spec.i_theta)
        if self.problem.regularizers:
            self._reg_value, rg = self._regularizer_value(with_grad=True)
            grad = grad + rg["obj"]
        obj.apply(grad, self._closure(obj, spec))
        shrink = self.settings.object.shrink_cycle
        if obj.support is not None and shrink and (self.i_batch + 1) % shrink == 0:
            obj.support.shrink_wrap(obj.value, self.problem.vacuum)
            obj.constrain()
        self._grad_rot[...] = 0
        self._pending = 0
        self._obj_version += 1

    # ------------------------------------------------------------------ epochs
    def run(self, n_epochs: int | None = None) -> ReconstructionResult:
        """Run ``n_epochs`` more epochs (default: up to ``optimization.n_epochs``)."""
        s = self.settings
        target = self.n_epochs if n_epochs is None else self.epoch + int(n_epochs)
        show = s.output.progress
        if show and self.i_batch == 0:
            tqdm.write(self.summary())
        recoveries = 0
        while self.epoch < target:
            try:
                # (if workers are lost while this is taken, the previous epoch's point is used)
                self._point = self._recovery_point()
                self._run_epoch(target, show)
            except Exception as err:
                reason = self._lost_workers(err)
                if self._point is None or reason is None:
                    raise
                recoveries += 1
                limit = s.execution.max_recoveries
                if recoveries > limit:
                    raise RuntimeError(f"{reason}; gave up after {limit} recoveries in this run "
                                       f"(execution.max_recoveries)") from err
                self._recover(self._point, reason)
        if s.output.store_checkpoint:
            self.checkpoint()
        result = self.result()
        if show:
            tqdm.write(f"done: {self.epoch} epochs, final loss {result.final_loss:.6g}, "
                       f"{self._seconds:.1f} s computing; results in {self.out.path}")
        return result

    def _run_epoch(self, target: int, show: bool) -> None:
        """The rest of the current epoch (from ``next_batch``), then its outputs."""
        s = self.settings
        batches = epoch_batches(s.optimization.seed, self.epoch, self.problem.n_theta,
                                self.problem.n_tiles, s.optimization.minibatch_size,
                                s.optimization.randomize_probe_pos)
        t_epoch = time.perf_counter()
        bar = tqdm(total=len(batches), initial=self.next_batch, disable=not show,
                   desc=f"epoch {self.epoch + 1}/{target}", unit="batch", leave=False)
        # batches submitted whose loss is not known yet: (k, loss or a callable giving it);
        # an engine that returns callables keeps up to ``lookahead`` batches in flight
        pending: deque = deque()
        self._t_mark = time.perf_counter()
        for k in range(self.next_batch, len(batches)):
            # engines that work ahead (the Dask engine's rotations) look at the next batch
            self._next_spec = batches[k + 1] if k + 1 < len(batches) else None
            pending.append((k, self._run_batch(batches[k])))
            checkpoint_due = s.output.store_checkpoint and \
                self.i_batch % s.output.n_batch_per_checkpoint == 0
            while pending and (len(pending) > self.lookahead or checkpoint_due
                               or k + 1 == len(batches)):
                self._finish_batch(*pending.popleft(), bar)
            if checkpoint_due:
                self.checkpoint()
        bar.close()
        self.epoch += 1
        self.next_batch = 0
        if show:
            tqdm.write(f"epoch {self.epoch}/{target}: loss {self.history[-1][2]:.6g}, "
                       f"{time.perf_counter() - t_epoch:.2f} s")
        if self._outputs_due():
            self.write_outputs()

    def _finish_batch(self, k: int, loss, bar) -> None:
        """Record batch ``k`` of this epoch once its loss is known (``loss`` may be a
        callable that waits for it); its time is the wall time since the batch before it
        was recorded (or since the epoch started)."""
        if callable(loss):
            loss = float(loss())
        now = time.perf_counter()
        dt, self._t_mark = now - self._t_mark, now
        self._seconds += dt
        self.history.append((self.epoch, k, loss, dt))
        self.out.append_loss(self.epoch, k, loss, dt)
        self.next_batch = k + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}")

    def _outputs_due(self) -> bool:
        """Whether results and previews are written after this epoch."""
        return self._previews.due(self.epoch, time.monotonic()) or self.epoch == self.n_epochs

    def summary(self) -> str:
        prob, s = self.problem, self.settings
        g = prob.geometry
        return (f"daskorym: {prob.model.name} | object {g.obj_shape} ({g.unknown_type}) | "
                f"probe {g.probe_shape} x {self.probe.shape[0]} mode(s) | "
                f"{prob.n_theta} angle(s) x {prob.n_tiles} tiles | "
                f"minibatch {s.optimization.minibatch_size} | {s.execution.engine}/"
                f"{s.execution.mode} | {self.be!r} | output {self.out.path}")

    def result(self) -> ReconstructionResult:
        extra = {k: p.value.copy() for k, p in self.params.items()
                 if k not in ("object", "probe") and p.refined}
        return ReconstructionResult(self.object.copy(), self.probe.copy(), extra,
                                    list(self.history), Path(self.out.path), self._seconds,
                                    self.epoch)

    def write_outputs(self) -> None:
        ut = self.problem.geometry.unknown_type
        self.out.write_object(self.object, ut)
        self.out.write_probe(self.probe)
        for name, p in self.params.items():
            if name not in ("object", "probe") and p.refined:
                self.out.write_parameter(name, p.value)
        self.out.write_previews(self.object, ut)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything a run needs to continue: ``(arrays, meta)`` as a checkpoint holds them
        (the arrays are the live ones: copy them to keep them)."""
        arrays: dict[str, np.ndarray] = {}
        for p in self.params.values():
            arrays.update(p.arrays())
        if self._pending:
            arrays["engine/grad_rot"] = self._grad_rot
        meta = {"epoch": self.epoch, "batch": self.next_batch, "next_batch": self.next_batch,
                "i_batch": self.i_batch,
                "pending": self._pending, "obj_version": self._obj_version,
                "reg_value": self._reg_value, "seconds": self._seconds,
                "n_updates": {k: p.n_updates for k, p in self.params.items()},
                "settings": self.settings.to_json_dict()}
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Continue from ``(arrays, meta)`` of :meth:`state` (the arrays are copied)."""
        for name, p in self.params.items():
            p.load_arrays(arrays, meta["n_updates"][name])
        self.epoch, self.next_batch = int(meta["epoch"]), int(meta["next_batch"])
        self.i_batch, self._pending = int(meta["i_batch"]), int(meta["pending"])
        self._obj_version = int(meta["obj_version"]) + 1
        self._reg_value, self._seconds = float(meta["reg_value"]), float(meta["seconds"])
        if self._pending:
            self._grad_rot = np.array(arrays["engine/grad_rot"])
        elif self._grad_rot is not None:
            self._grad_rot[...] = 0
        self._rot_cache = None
        self.history = [h for h in self.history if (h[0], h[1]) < (self.epoch, self.next_batch)]
        self.out.truncate_loss(self.epoch, self.next_batch - 1)

    def checkpoint(self) -> None:
        arrays, meta = self.state()
        save_checkpoint(self.out.path, arrays=arrays, meta=meta)

    def _restore(self) -> None:
        self.load_state(*load_checkpoint(self.out.path))

    # ------------------------------------------------------------------ lost workers
    def _recovery_point(self):
        """What :meth:`_recover` rolls back to if workers are lost during the next epoch
        (``None``: this engine has no workers to lose)."""
        return None

    def _lost_workers(self, err: BaseException) -> str | None:
        """Why ``err`` means workers were lost (``None``: it does not)."""
        return None

    def _recover(self, point, reason: str) -> None:
        raise NotImplementedError


def _chunk(tb, obj: np.ndarray, vacuum) -> np.ndarray:
    """The object under a tile batch in one pass: for the box layout the part inside the
    object is copied once (not at all when the box is the whole object: kernels only read
    their inputs) and only the strips outside it are set to vacuum; a mosaic is assembled
    piece by piece."""
    if tb.tile_regions is not None:
        return tb.chunk_from(lambda r: extract_region(obj, r, vacuum), obj.shape[2:],
                             obj.dtype, vacuum)
    reg = tb.region
    ov = reg.overlap(obj.shape[0], obj.shape[1])
    if ov is not None and (ov[2].start, ov[3].start, ov[2].stop, ov[3].stop) == \
            (0, 0, reg.ny, reg.nx):
        return np.ascontiguousarray(obj[ov[0], ov[1]])
    return extract_region(obj, reg, vacuum)


def _with_step(ps, default: float):
    """Parameter settings with ``step_size`` filled in when it was left to daskorym."""
    return ps if ps.step_size is not None else ps.model_copy(update={"step_size": float(default)})


def _load_mask(path: Path, shape) -> np.ndarray:
    if str(path).endswith((".tif", ".tiff")):
        import tifffile
        mask = tifffile.imread(path)
    else:
        mask = np.load(path, allow_pickle=False)
    mask = np.asarray(mask).astype(bool).reshape(tuple(shape))
    return mask
