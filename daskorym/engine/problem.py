"""Everything fixed about a run, built once from the settings and the dataset."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..config import ConfigError, Settings
from ..io import Dataset, DatasetError, open_dataset, validate_dataset
from ..losses import Loss, get_loss
from ..models import ForwardModel, Geometry, TileBatch, get_model
from ..physics import probes
from ..regularizers import L1Regularizer, Regularizer, ReweightedL1Regularizer, TVRegularizer

FULL_FIELD_MODELS = ("fullfield_cdi", "tiled_holography", "multidistance_holography",
                     "multidistance_ctf", "minuslog_tomography")


@dataclass
class InMemoryInputs:
    """Arrays and objects given from Python rather than through files.

    Attributes
    ----------
    initial_object : ``[Ly, Lx, Lz, 2]`` starting object
    initial_probe : complex ``[py, px]`` or ``[n_modes, py, px]`` starting probe
    mask : ``[det_y, det_x]`` valid detector pixels (beamstop)
    positions_px : ``[n_tiles, 2]`` or ``[n_theta, n_tiles, 2]`` scan positions
    pupil : ``[py, px]`` multiplied into the initial probe
    regularizers : Regularizer objects replacing those of the settings
    optimizers : parameter name -> Optimizer instance
    """

    initial_object: np.ndarray | None = None
    initial_probe: np.ndarray | None = None
    mask: np.ndarray | None = None
    positions_px: np.ndarray | None = None
    pupil: np.ndarray | None = None
    regularizers: list | None = None
    optimizers: dict = field(default_factory=dict)


@dataclass
class Problem:
    """The dataset, geometry, forward model, loss and fixed inputs of a run."""

    settings: Settings
    dataset: Dataset
    geometry: Geometry
    model: ForwardModel
    theta_rad: np.ndarray
    positions_px: np.ndarray  # [n_theta, n_tiles, 2]
    loss: Loss
    regularizers: list[Regularizer] = field(default_factory=list)
    mask: np.ndarray | None = None
    inputs: InMemoryInputs = field(default_factory=InMemoryInputs)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_theta(self) -> int:
        return int(self.dataset.n_theta)

    @property
    def n_tiles(self) -> int:
        return int(self.dataset.n_tiles)

    @property
    def vacuum(self) -> tuple[float, float]:
        return (1.0, 0.0) if self.geometry.unknown_type == "real_imag" else (0.0, 0.0)

    @property
    def fft_order(self) -> bool:
        """Whether the kernel compares the data in FFT order (``model.loss_in_fft_order``):
        engines then ask :meth:`measured` for that order and tell ``tile_loss`` so."""
        return bool(self.model.loss_in_fft_order)

    def measured(self, i_theta: int, tiles: np.ndarray, fft_order: bool = False) -> np.ndarray:
        """Measured magnitudes ``[n, det_y, det_x]`` float32 (square roots of intensities);
        ``fft_order``: ``ifftshift``-ed over the detector axes (zero frequency at pixel 0).

        Whole angles are kept in memory (in the order asked for) while they fit in
        ``dataset.cache_mb``.
        """
        key = (int(i_theta), bool(fft_order))
        angle = self._cache.get(key)
        if angle is not None:
            return angle[np.asarray(tiles)]
        budget = self.settings.dataset.cache_mb * 2 ** 20
        angle_bytes = 4 * self.n_tiles * int(np.prod(self.dataset.det_shape))
        if (len(self._cache) + 1) * angle_bytes <= budget:
            angle = self._order(self._magnitudes(self.dataset.read_angle(int(i_theta))),
                                fft_order)
            self._cache[key] = angle
            return angle[np.asarray(tiles)]
        return self._order(self._magnitudes(self.dataset.read(int(i_theta), np.asarray(tiles))),
                           fft_order)

    @staticmethod
    def _order(data: np.ndarray, fft_order: bool) -> np.ndarray:
        return np.ascontiguousarray(np.fft.ifftshift(data, axes=(-2, -1))) if fft_order else data

    def _magnitudes(self, data: np.ndarray) -> np.ndarray:
        if self.settings.dataset.is_minus_logged:
            return np.asarray(data, np.float32)  # line integrals, compared as they are
        if self.settings.dataset.raw_data_type == "intensity":
            return np.sqrt(data)
        return data

    def plan(self, i_theta: int, tiles: np.ndarray, positions: np.ndarray) -> TileBatch:
        return self.model.plan_batch(i_theta, tiles, positions[i_theta][tiles])


def _choose_model(settings: Settings, ds: Dataset, obj_shape, geometry_kw) -> str:
    name = settings.model.name
    if name != "auto":
        return name
    if settings.dataset.is_minus_logged:
        return "minuslog_tomography"
    if settings.model.forward_algorithm == "ctf":
        return "multidistance_ctf"
    if settings.model.slice_pos_cm and len(settings.model.slice_pos_cm) > 1:
        return "sparse_multislice"
    dists = geometry_kw["free_prop_m"]
    if len(dists) > 1:
        return "multidistance_holography"
    far = math.isinf(dists[0])
    if ds.n_tiles == 1 and tuple(ds.det_shape) == tuple(obj_shape[:2]):
        return "fullfield_cdi" if far else "tiled_holography"
    if far:
        return "farfield_ptychography"
    return "tiled_holography" if geometry_kw["safe_zone_px"] > 0 else "nearfield_ptychography"


class SamplingWarning(UserWarning):
    """The near-field sampling or a tile's buffer is too small for the distance."""


def sampling_warnings(geometry: Geometry, model_name: str) -> list[str]:
    """What is wrong with the near-field sampling of ``geometry`` (empty: nothing).

    * The Fresnel transfer function ``exp(-i pi lambda z f^2)`` on an ``N``-pixel grid is
      sampled finely enough only up to ``z = N psize^2 / lambda``; beyond it the kernel
      aliases and the propagated wave wraps around.
    * The finest fringes (frequency ``1 / (2 psize)``) travel ``lambda z / (2 psize)`` sideways:
      a tiled model's buffer (``safe_zone_px``) shorter than that leaves edge errors.
    """
    out = []
    lam, dx = geometry.wavelength_m, geometry.psize_m
    n = min(geometry.probe_shape)
    z_max = n * dx * dx / lam
    dists = [z for z in geometry.free_prop_m if math.isfinite(z) and z > 0]
    far = [z for z in dists if z > z_max]
    if far:
        out.append(f"the Fresnel propagator is undersampled at {_cm(far)}: beyond "
                   f"N psize^2 / lambda = {z_max * 100:.4g} cm for a {n}-pixel wave the kernel "
                   f"aliases; use a larger field of view (tile or safe_zone_px), a shorter "
                   f"distance or coarser pixels")
    short = [z for z in dists if geometry.safe_zone_px < lam * z / (2 * dx)]
    if model_name == "tiled_holography" and geometry.n_tiles > 1 and short:
        reach = lam * max(short) / (2 * dx)
        out.append(f"model.safe_zone_px = {geometry.safe_zone_px} is shorter than the reach of "
                   f"the finest fringes, lambda z / (2 psize) = {reach:.1f} px at "
                   f"{_cm([max(short)])}: the tiles' edges will be wrong")
    return out


def _cm(dists_m) -> str:
    return ", ".join(f"{z * 100:.4g}" for z in dists_m) + " cm"


def _safe_zone_px(settings: Settings, ds: Dataset) -> int:
    """The tiles' buffer: ``model.safe_zone_px``, else the dataset's ``metadata/safe_zone_px``
    (written by the tiled simulations), else 0."""
    if settings.model.safe_zone_px is not None:
        return int(settings.model.safe_zone_px)
    if "safe_zone_px" not in ds.metadata_names():
        return 0
    raw = np.asarray(ds.read_metadata("safe_zone_px"))
    if raw.size != 1 or not np.isfinite(raw.astype(float)).all() or float(raw) < 0 \
            or float(raw) != int(float(raw)):
        raise ConfigError(f"{ds.path}: metadata/safe_zone_px must be one integer >= 0, got "
                          f"{raw!r}")
    return int(float(raw))


def _free_prop_m(settings: Settings, ds: Dataset) -> tuple[float, ...]:
    v = settings.geometry.free_prop_cm
    if v is None:
        v = ds.free_prop_cm
    arr = np.atleast_1d(np.asarray(float("inf") if isinstance(v, str) else v, np.float64))
    return tuple(float(d) / 100.0 for d in arr)


def build_problem(settings: Settings, inputs: InMemoryInputs | None = None) -> Problem:
    """Open and check the dataset and build the geometry, model and loss (no heavy work)."""
    s = settings
    inputs = inputs or InMemoryInputs()
    ds = open_dataset(s.dataset.path, check_values=s.dataset.check_values,
                      raw_data_type=s.dataset.raw_data_type)
    energy = s.geometry.energy_ev or ds.energy_ev
    psize_m = (s.geometry.psize_cm or ds.psize_cm) / 100.0
    free = _free_prop_m(s, ds)
    obj_shape = s.object.shape or (ds.det_shape[0], ds.det_shape[1], 1)
    safe = _safe_zone_px(s, ds)
    probe_shape = (ds.det_shape[0] + 2 * safe, ds.det_shape[1] + 2 * safe)
    kw = dict(wavelength_m=1239.84193e-9 / energy, psize_m=psize_m, obj_shape=tuple(obj_shape),
              probe_shape=probe_shape, free_prop_m=free, unknown_type=s.model.unknown_type,
              sign_convention=s.geometry.sign_convention, fresnel_approx=s.geometry.fresnel_approx,
              normalize_fft=s.geometry.normalize_fft, binning=s.model.binning,
              pure_projection=s.model.pure_projection, scale_ri_by_k=s.model.scale_ri_by_k,
              safe_zone_px=safe, n_tiles=ds.n_tiles, kappa=s.model.kappa,
              slice_pos_m=(tuple(p / 100.0 for p in s.model.slice_pos_cm)
                           if s.model.slice_pos_cm else None))
    name = _choose_model(s, ds, obj_shape, kw)
    try:
        geometry = Geometry(**kw)
        model = get_model(name)(geometry)
    except ValueError as err:
        raise ConfigError(f"{s.dataset.path}: {err}") from None
    for message in sampling_warnings(geometry, name):
        warnings.warn(f"{s.dataset.path}: {message}", SamplingWarning, stacklevel=2)
    if name not in FULL_FIELD_MODELS:
        validate_dataset(ds, obj_shape=tuple(obj_shape), check_values=False)
    theta = ds.theta if ds.theta is not None else np.linspace(
        s.geometry.theta_st_rad, s.geometry.theta_end_rad, ds.n_theta)
    if inputs.positions_px is not None:
        positions = np.asarray(inputs.positions_px, np.float64)
        if positions.ndim == 2:
            positions = np.broadcast_to(positions, (ds.n_theta,) + positions.shape).copy()
        if positions.shape != (ds.n_theta, ds.n_tiles, 2):
            raise ConfigError(f"probe_pos: shape {positions.shape}, expected ({ds.n_tiles}, 2) or "
                              f"({ds.n_theta}, {ds.n_tiles}, 2) for {s.dataset.path}")
    else:
        positions = np.stack([ds.positions(i) for i in range(ds.n_theta)]).astype(np.float64)
    if s.optimization.minibatch_size > ds.n_tiles * ds.n_theta:
        raise ConfigError(f"optimization.minibatch_size = {s.optimization.minibatch_size} is larger "
                          f"than the {ds.n_tiles * ds.n_theta} tiles in {s.dataset.path}")
    loss = get_loss(s.loss.type, eps=s.loss.eps, **(
        {"multiplier": s.loss.poisson_multiplier} if s.loss.type == "poisson" else {}))
    mask = None if inputs.mask is None else np.asarray(inputs.mask, np.float32)
    if mask is not None and mask.shape != tuple(ds.det_shape):
        raise ConfigError(f"beamstop: shape {mask.shape} does not match the detector "
                          f"{tuple(ds.det_shape)}")
    if s.loss.beamstop is not None:
        mask = np.load(s.loss.beamstop, allow_pickle=False).astype(np.float32)
        if mask.shape != tuple(ds.det_shape):
            raise ConfigError(f"loss.beamstop {s.loss.beamstop}: shape {mask.shape} does not match "
                              f"the detector {tuple(ds.det_shape)}")
    regs = list(inputs.regularizers) if inputs.regularizers is not None else _regularizers(s)
    return Problem(s, ds, geometry, model, np.asarray(theta, np.float64), positions, loss,
                   regs, mask, inputs)


def _regularizers(s: Settings) -> list[Regularizer]:
    r = s.regularizers
    out: list[Regularizer] = []
    if r.alpha_d or r.alpha_b:
        cls = ReweightedL1Regularizer if r.reweighted_l1 else L1Regularizer
        out.append(cls(alpha_d=r.alpha_d, alpha_b=r.alpha_b))
    if r.gamma:
        out.append(TVRegularizer(gamma=r.gamma))
    return out


def initial_object(problem: Problem) -> np.ndarray:
    """Starting object ``[Ly, Lx, Lz, 2]`` float32, seeded by ``optimization.seed``."""
    s = problem.settings
    shape = problem.geometry.obj_shape
    given = problem.inputs.initial_object
    if given is not None:
        given = np.asarray(given, np.float32)
        if given.shape != tuple(shape) + (2,):
            raise ConfigError(f"initial_guess: shape {given.shape}, expected {tuple(shape) + (2,)}")
        return given.copy()
    if s.object.init == "supplied":
        if s.object.initial_guess is None:
            raise ConfigError("object.init = 'supplied' needs object.initial_guess (a .npy file)")
        arr = np.load(s.object.initial_guess, allow_pickle=False)
        if arr.shape != tuple(shape) + (2,):
            raise ConfigError(f"object.initial_guess {s.object.initial_guess}: shape {arr.shape}, "
                              f"expected {tuple(shape) + (2,)}")
        return arr.astype(np.float32)
    m0, m1, s0, s1 = s.object.random_means_sigmas
    if problem.geometry.unknown_type == "real_imag" and \
            s.object.random_means_sigmas == type(s.object)().random_means_sigmas:
        m0, m1, s0, s1 = 1.0, 0.0, 0.0, 0.0  # the delta_beta default means nothing here
    if s.object.init == "constant":
        s0 = s1 = 0.0
    rng = np.random.default_rng([int(s.optimization.seed), 7])
    obj = np.stack([rng.normal(m0, s0, shape), rng.normal(m1, s1, shape)], -1)
    return np.clip(obj, 0, None).astype(np.float32) if s.object.non_negativity else \
        obj.astype(np.float32)


def initial_probe(problem: Problem) -> np.ndarray:
    """Starting probe ``[n_modes, py, px, 2]`` float32."""
    s, g, ds = problem.settings.probe, problem.geometry, problem.dataset
    shape = g.probe_shape
    kind = s.type or ("plane" if problem.model.name in FULL_FIELD_MODELS else "gaussian")
    if problem.inputs.initial_probe is not None:
        kind = "supplied"
    if kind == "supplied" and problem.inputs.initial_probe is not None:
        p = np.asarray(problem.inputs.initial_probe, np.complex128)
        p = p[None] if p.ndim == 2 else p
        if p.shape[1:] != tuple(shape):
            raise ConfigError(f"probe_initial: shape {p.shape[1:]}, expected {shape}")
    elif kind == "gaussian":
        p = probes.gaussian_probe(shape, s.mag_sigma_px or min(shape) / 6.0, s.phase_sigma_px,
                                  s.phase_max_rad)
    elif kind == "plane":
        p = probes.plane_probe(shape)
    elif kind == "aperture_defocus":
        if s.aperture_radius_px is None:
            raise ConfigError("probe.type = 'aperture_defocus' needs probe.aperture_radius_px")
        p = probes.aperture_defocus_probe(shape, s.aperture_radius_px, s.beamstop_radius_px,
                                          s.defocus_cm / 100.0, g.psize_m, g.wavelength_m)
    elif kind == "ifft":
        mean = ds.mean_pattern()
        if problem.settings.dataset.raw_data_type == "intensity":
            mean = np.sqrt(np.clip(mean, 0, None))
        p = probes.ifft_probe(np.pad(mean, g.safe_zone_px))
    else:
        if s.initial is None:
            raise ConfigError("probe.type = 'supplied' needs probe.initial (a .npy file, complex "
                              "[py, px] or [n_modes, py, px])")
        p = np.load(s.initial, allow_pickle=False)
        p = p[None] if p.ndim == 2 else p
        if p.shape[1:] != tuple(shape):
            raise ConfigError(f"probe.initial {s.initial}: shape {p.shape[1:]}, expected {shape}")
    if problem.inputs.pupil is not None:
        p = p * np.asarray(problem.inputs.pupil)
    p = probes.make_modes(p.astype(np.complex128), s.n_modes, seed=problem.settings.optimization.seed)
    rescale = s.rescale_intensity
    if rescale is None:  # a plane wave in the near field already has the flat field's power
        rescale = not (kind == "plane" and not g.is_far_field)
    if rescale and kind != "supplied":
        # the detector sees the probe without the tiles' buffer
        b = g.safe_zone_px
        seen = p[:, b:p.shape[1] - b, b:p.shape[2] - b] if b else p
        p = p * probes.data_power_scale(seen, _mean_power(problem), int(np.prod(g.det_shape)),
                                        normalize_fft=g.normalize_fft or not g.is_far_field)
    return probes.to_real(p)


def _mean_power(problem: Problem) -> float:
    """Mean over the first angle's tiles of the summed measured intensity."""
    mags = problem.measured(0, np.arange(problem.n_tiles))
    return float(np.mean(np.sum(mags.astype(np.float64) ** 2, axis=(1, 2))))


__all__ = ["DatasetError", "InMemoryInputs", "Problem", "build_problem", "initial_object", "initial_probe"]
