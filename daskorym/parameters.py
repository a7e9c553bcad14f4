"""Refinable parameters: one class per quantity, each with its optimizer, schedule and constraints.

A parameter owns its full value (NumPy), its optimizer and that optimizer's
state.  For a minibatch it hands the kernel the part the kernel needs
(:meth:`RefinableParameter.kernel_value`) and turns the kernel's gradient
back into a full-shaped gradient (:meth:`RefinableParameter.full_gradient`).
Add a parameter by subclassing and decorating with :func:`register_parameter`;
the forward model must list its ``kernel_key`` in ``inputs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .config import ParameterSettings
from .optim import get_optimizer

if TYPE_CHECKING:
    from .engine.schedule import BatchSpec

PARAMETERS: dict[str, type["RefinableParameter"]] = {}


def register_parameter(cls):
    PARAMETERS[cls.name] = cls
    return cls


class RefinableParameter:
    """A quantity the kernel reads; refined when ``settings.optimize`` is true.

    Schedule: refined at global batch ``i`` when ``start_batch <= i`` (and
    ``i < stop_batch`` if set) and ``(i - start_batch) % every == 0``.
    """

    name: ClassVar[str] = ""
    kernel_key: ClassVar[str] = ""

    def __init__(self, value: np.ndarray, settings: ParameterSettings) -> None:
        self.value = np.ascontiguousarray(value)
        self.settings = settings
        self.optimizer = get_optimizer(settings.optimizer, step_size=settings.step_size,
                                       **settings.options)
        self.state = self.optimizer.init_state(self.value.shape, self.value.dtype)
        self.n_updates = 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.value.shape}, optimize={self.refined}, "
                f"optimizer={self.settings.optimizer!r})")

    @property
    def refined(self) -> bool:
        return bool(self.settings.optimize)

    def due(self, i_batch: int) -> bool:
        s = self.settings
        if not s.optimize or i_batch < s.start_batch:
            return False
        if s.stop_batch is not None and i_batch >= s.stop_batch:
            return False
        return (i_batch - s.start_batch) % s.every == 0

    @classmethod
    def initial(cls, problem) -> np.ndarray:
        """Starting value for a run (``problem``: :class:`daskorym.engine.Problem`)."""
        raise NotImplementedError(f"{cls.__name__} does not define its initial value")

    def kernel_value(self, spec: "BatchSpec") -> np.ndarray:
        return self.value

    def full_gradient(self, grad: np.ndarray, spec: "BatchSpec") -> np.ndarray:
        return grad

    def apply(self, grad: np.ndarray, closure=None) -> None:
        """One optimizer step with a full-shaped gradient, then the constraints."""
        self.optimizer.step(self.value, grad.astype(self.value.dtype, copy=False), self.state,
                            self.n_updates, closure)
        self.n_updates += 1
        self.constrain()

    def constrain(self) -> None:
        """Project the value onto its constraints (in place); none by default."""

    # checkpointing
    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"{self.name}/value": self.value}
        out.update({f"{self.name}/state/{k}": v for k, v in self.state.items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray], n_updates: int) -> None:
        self.value[...] = arrays[f"{self.name}/value"]
        for k in list(self.state):
            self.state[k] = np.array(arrays[f"{self.name}/state/{k}"])
        self.n_updates = int(n_updates)


def constrain_object(v: np.ndarray, unknown_type: str = "delta_beta", non_negativity: bool = False,
                     object_type: str = "normal", support=None) -> None:
    """Project an object (or a slab of it) ``[..., 2]`` onto its constraints, in place."""
    if unknown_type == "delta_beta":
        if non_negativity:
            np.clip(v, 0, None, out=v)
        if object_type == "phase_only":
            v[..., 1] = 0
        elif object_type == "absorption_only":
            v[..., 0] = 0
    elif object_type != "normal":
        mag = np.hypot(v[..., 0], v[..., 1])
        phase = np.arctan2(v[..., 1], v[..., 0])
        if object_type == "phase_only":
            mag = np.ones_like(mag)
        else:
            phase = np.zeros_like(phase)
        v[..., 0], v[..., 1] = mag * np.cos(phase), mag * np.sin(phase)
    if support is not None:
        support.apply(v, (1.0, 0.0) if unknown_type == "real_imag" else (0.0, 0.0))


@register_parameter
class ObjectParameter(RefinableParameter):
    """The object ``[Ly, Lx, Lz, 2]``; the engine handles rotation and chunking.

    Constraints: non-negativity (delta_beta), phase-only / absorption-only,
    finite support.
    """

    name = "object"
    kernel_key = "obj"

    def __init__(self, value, settings, *, unknown_type="delta_beta", non_negativity=False,
                 object_type="normal", support=None) -> None:
        super().__init__(value, settings)
        self.unknown_type = unknown_type
        self.non_negativity = non_negativity
        self.object_type = object_type
        self.support = support

    def constrain(self) -> None:
        constrain_object(self.value, self.unknown_type, self.non_negativity, self.object_type,
                         self.support)


@register_parameter
class ProbeParameter(RefinableParameter):
    """The probe modes ``[n_modes, py, px, 2]`` (real, imag)."""

    name = "probe"
    kernel_key = "probe"


@register_parameter
class ProbePositions(RefinableParameter):
    """Every scan position ``[n_theta, n_tiles, 2]`` (y, x) in object pixels.

    After each update the mean drift of each angle's corrections is
    removed, so the object does not wander.
    """

    name = "probe_pos"
    kernel_key = "pos_px"

    def __init__(self, value, settings) -> None:
        super().__init__(np.asarray(value, np.float64), settings)
        self.initial = self.value.copy()

    def kernel_value(self, spec: "BatchSpec") -> np.ndarray:
        return self.value[spec.i_theta][spec.tiles]

    def full_gradient(self, grad, spec):
        full = np.zeros_like(self.value)
        np.add.at(full[spec.i_theta], spec.tiles, grad)
        return full

    def constrain(self) -> None:
        drift = (self.value - self.initial).mean(axis=1, keepdims=True)
        self.value -= drift
