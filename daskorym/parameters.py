"""Refinable parameters: one class per quantity, each with its optimizer, schedule and constraints.

A parameter owns its full value (NumPy), its optimizer and that optimizer's
state.  For a minibatch it hands the kernel the part the kernel needs
(:meth:`RefinableParameter.kernel_value`) and turns the kernel's gradient
back into a full-shaped gradient (:meth:`RefinableParameter.full_gradient`).
Add a parameter by subclassing (set ``name``, ``kernel_key``, write
``default_value(problem)``) and decorating with :func:`register_parameter`;
the forward model must list its ``kernel_key`` in ``inputs``.
"""

from __future__ import annotations

import math
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
    def initial(cls, problem, settings: ParameterSettings | None = None) -> np.ndarray:
        """Starting value for a run (``problem``: :class:`daskorym.engine.Problem`);
        ``settings.initial``, when given, is broadcast to the default value's shape."""
        value = np.asarray(cls.default_value(problem), np.float64)
        if settings is not None and settings.initial is not None:
            try:
                value = np.broadcast_to(np.asarray(settings.initial, np.float64),
                                        value.shape).copy()
            except ValueError:
                raise ValueError(f"parameters.{cls.name}.initial: shape "
                                 f"{np.shape(settings.initial)} does not broadcast to "
                                 f"{value.shape}") from None
        return value

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        raise NotImplementedError(f"{cls.__name__} does not define its initial value")

    def default_step(self) -> float:
        """Step size when the settings leave it open (in the parameter's units)."""
        return 1e-2

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
    """The probe modes ``[n_modes, py, px, 2]`` (real, imag).

    Optional constraints (all off by default; ``probe.*`` settings), applied after each update
    and, when the probe is refined, once at construction (see :func:`constrain_probe`):
    ``center`` (centre of mass of the total intensity to the array centre),
    ``support_radius_px`` (zero outside a centred disk), ``orthogonalize`` (orthogonal modes,
    strongest first) and ``power_normalize`` (total power ``sum |P|^2`` kept at its value
    for the value given here, :attr:`initial_power`).
    """

    name = "probe"
    kernel_key = "probe"

    def __init__(self, value, settings, *, power_normalize: bool = False,
                 support_radius_px: float | None = None, center: bool = False,
                 orthogonalize: bool = False) -> None:
        super().__init__(value, settings)
        if support_radius_px is not None and not support_radius_px > 0:
            raise ValueError(f"probe support_radius_px must be > 0, got {support_radius_px!r}")
        self.power_normalize = bool(power_normalize)
        self.support_radius_px = support_radius_px
        self.center = bool(center)
        self.orthogonalize = bool(orthogonalize)
        self.initial_power = float(np.sum(np.square(self.value, dtype=np.float64)))
        if self.refined:
            self.constrain()

    def constrain(self) -> None:
        constrain_probe(self.value,
                        initial_power=self.initial_power if self.power_normalize else None,
                        support_radius_px=self.support_radius_px, center=self.center,
                        orthogonalize=self.orthogonalize)


def constrain_probe(v: np.ndarray, *, initial_power: float | None = None,
                    support_radius_px: float | None = None, center: bool = False,
                    orthogonalize: bool = False) -> None:
    """Project probe modes ``v`` ``[n_modes, py, px, 2]`` onto their constraints, in place.

    In this order: ``center`` rolls all modes together by whole pixels so that the centre of
    mass of ``sum_m |P_m|^2`` lies within half a pixel of ``((py-1)/2, (px-1)/2)``;
    ``support_radius_px`` zeroes every mode outside the disk of that radius about the same
    centre; ``orthogonalize`` replaces the modes by orthogonal ones spanning the same space,
    strongest first (each mode's global phase chosen to stay closest to the mode it replaces;
    the intensity ``sum_m |P_m|^2`` of every pixel is unchanged); ``initial_power`` (when
    given) rescales all modes so that ``sum |P|^2`` equals it.
    """
    from .physics.probes import orthogonalize_modes, to_complex

    ny, nx = v.shape[1:3]
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    if center:
        intensity = np.sum(np.square(v, dtype=np.float64), axis=(0, 3))
        total = intensity.sum()
        if total > 0:
            com_y = float(intensity.sum(axis=1) @ np.arange(ny)) / total
            com_x = float(intensity.sum(axis=0) @ np.arange(nx)) / total
            shift = (int(round(cy - com_y)), int(round(cx - com_x)))
            if shift != (0, 0):
                v[...] = np.roll(v, shift, axis=(1, 2))
    outside = None
    if support_radius_px is not None:
        y = np.arange(ny) - cy
        x = np.arange(nx) - cx
        outside = y[:, None] ** 2 + x[None, :] ** 2 > float(support_radius_px) ** 2
        v[:, outside, :] = 0
    if orthogonalize and v.shape[0] > 1:
        old = to_complex(v.astype(np.float64))
        new = orthogonalize_modes(old)
        overlap = np.sum(np.conj(new) * old, axis=(1, 2))
        mag = np.abs(overlap)
        phase = np.where(mag > 0, overlap / np.where(mag > 0, mag, 1.0), 1.0)
        new *= phase[:, None, None]
        if outside is not None:
            new[:, outside] = 0  # exactly: the SVD leaves rounding-level values there
        v[..., 0] = new.real
        v[..., 1] = new.imag
    if initial_power is not None:
        power = float(np.sum(np.square(v, dtype=np.float64)))
        if power > 0 and initial_power > 0:
            v *= np.asarray(math.sqrt(initial_power / power), v.dtype)


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


class PerAngleParameter(RefinableParameter):
    """A value per rotation angle ``[n_theta, *per_angle]``; the kernel sees one angle's row."""

    per_angle: ClassVar[tuple[int, ...]] = ()

    def __init__(self, value, settings) -> None:
        super().__init__(np.asarray(value, np.float64), settings)

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        return np.zeros((problem.n_theta,) + cls.per_angle)

    def kernel_value(self, spec: "BatchSpec") -> np.ndarray:
        return self.value[spec.i_theta]

    def full_gradient(self, grad, spec):
        full = np.zeros_like(self.value)
        full[spec.i_theta] = grad
        return full


def _remove_mean(p: PerAngleParameter, default: bool) -> None:
    on = p.settings.remove_mean
    if (default if on is None else on) and len(p.value) > 1:
        p.value -= p.value.mean(axis=0, keepdims=True)


class _AngleOffset(PerAngleParameter):
    """A (y, x) shift in pixels per angle; with ``remove_mean`` (default) the mean over
    angles is removed after each update (a common shift is a shift of the object)."""

    per_angle = (2,)

    def default_step(self) -> float:
        return 5e-2

    def constrain(self) -> None:
        _remove_mean(self, default=True)


@register_parameter
class ProbePosOffset(_AngleOffset):
    """One probe-position offset ``[n_theta, 2]`` (y, x) px per angle, added to every scan
    position of the angle (the integer part moves the object crop)."""

    name = "probe_pos_offset"
    kernel_key = "pos_offset_px"


@register_parameter
class PrjPosOffset(_AngleOffset):
    """One exit-wave (projection) shift ``[n_theta, 2]`` (y, x) px per angle (Fourier shift
    of the wave leaving the object: projection alignment in full-field imaging)."""

    name = "prj_pos_offset"
    kernel_key = "prj_offset_px"


@register_parameter
class ProbeDefocus(PerAngleParameter):
    """Probe defocus ``[n_theta, 1]`` in metres per angle: the probe is Fresnel-propagated by
    this distance before it meets the object (differentiable in the distance)."""

    name = "probe_defocus"
    kernel_key = "probe_defocus_m"
    per_angle = (1,)

    def default_step(self) -> float:
        scale = float(np.abs(self.value).max())
        return 1e-2 * scale if scale > 0 else 1e-6


@register_parameter
class ObjectTilt(PerAngleParameter):
    """Object tilt ``[n_theta, 3]`` in radians per angle, about the y, x and z axes (applied
    in that order to the rotated object, about the object's centre).  ``remove_mean`` (off by
    default) removes the mean tilt over angles, for views whose common turn is the object's."""

    name = "tilt"
    kernel_key = "tilt_rad"
    per_angle = (3,)

    def default_step(self) -> float:
        return 1e-3

    def constrain(self) -> None:
        _remove_mean(self, default=False)


@register_parameter
class SlicePositions(RefinableParameter):
    """Slice positions ``[n_slices]`` (metres) of the sparse multislice model; the first is
    pinned (only the gaps matter)."""

    name = "slice_pos"
    kernel_key = "slice_pos_m"

    def __init__(self, value, settings) -> None:
        super().__init__(np.asarray(value, np.float64), settings)
        self.first = float(self.value[0])

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        pos = problem.geometry.slice_pos_m
        if pos is None:
            raise ValueError("parameter 'slice_pos' needs the sparse multislice model "
                             "(model.slice_pos_cm)")
        return np.asarray(pos, np.float64)

    def default_step(self) -> float:
        gaps = np.diff(self.value)
        return 1e-2 * float(np.abs(gaps).mean()) if len(gaps) else 1e-9

    def full_gradient(self, grad, spec):
        grad = np.array(grad, np.float64)
        grad[0] = 0.0
        return grad

    def constrain(self) -> None:
        self.value[0] = self.first


@register_parameter
class FreePropDistances(RefinableParameter):
    """Sample-detector distances ``[n_dists]`` (metres) of the near-field models."""

    name = "free_prop"
    kernel_key = "free_prop_m"

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        return np.asarray(problem.geometry.free_prop_m, np.float64)

    def default_step(self) -> float:
        return 1e-3 * float(np.abs(self.value).mean())

    def constrain(self) -> None:
        np.maximum(self.value, 1e-9, out=self.value)


@register_parameter
class ProjectionAffine(RefinableParameter):
    """Affine transform ``[n_dists, 2, 3]`` of the predicted images per distance: rows
    ``(a_yy, a_yx, t_y), (a_xy, a_xx, t_x)`` map detector coordinates about the image centre
    (translation in pixels).  Distance 0 is pinned to the identity (the reference)."""

    name = "prj_affine"
    kernel_key = "prj_affine"

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        return np.tile(eye, (problem.geometry.n_dists, 1, 1))

    def default_step(self) -> float:
        return 1e-3

    def full_gradient(self, grad, spec):
        grad = np.array(grad, np.float64)
        grad[0] = 0.0
        return grad

    def constrain(self) -> None:
        self.value[0] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


@register_parameter
class CtfLgKappa(RefinableParameter):
    """``log10`` of the beta/delta ratio kappa ``[1]`` of a homogeneous object
    (``model.kappa``)."""

    name = "ctf_lg_kappa"
    kernel_key = "lg_kappa"

    @classmethod
    def default_value(cls, problem) -> np.ndarray:
        kappa = problem.geometry.kappa
        if kappa is None:
            raise ValueError("parameter 'ctf_lg_kappa' needs a homogeneous object: set "
                             "model.kappa (the beta/delta ratio)")
        return np.array([math.log10(kappa)])

    def default_step(self) -> float:
        return 1e-2
