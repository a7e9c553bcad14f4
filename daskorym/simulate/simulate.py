"""Simulate a dataset, and save its ground truth, for any registered forward model.

:func:`plan_simulation` turns a model name and :class:`SimulationSettings` into a
:class:`SimulationPlan` (geometry, positions, angles; each model has small,
laptop-sized defaults in :data:`DEFAULTS`) and :func:`simulate` runs it: per
angle it rotates the object about y, predicts all tiles in chunks with the
model's own kernel, optionally draws Poisson counts and streams magnitudes
``sqrt(I)`` to :func:`daskorym.io.write_dataset`.  The truth goes to
``<out stem>_truth.h5`` (:func:`truth_path`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from ..backend import Backend, get_backend
from ..io import HC_EV_M, write_dataset
from ..io.write import format_for_suffix
from ..models import ForwardModel, Geometry, get_model
from ..physics import RotationOperator, extract_region, vacuum_value
from .phantoms import model_probe, sample_object
from .scan import scan_layout
from .tiling import LazyAngles

INF = math.inf


@dataclass(frozen=True)
class ModelDefaults:
    """Laptop-sized defaults of one model.

    ``layout``: "raster" (scanned probe), "whole" (one tile = the object) or "grid"
    (contiguous detector tiles with a buffer).  ``free_prop_cm`` is ``()`` in the
    far field.  ``probe_kind``: "gaussian", "aperture" (defocused disk) or "plane".
    """

    energy_ev: float
    psize_cm: float
    free_prop_cm: tuple[float, ...]
    obj_2d: tuple[int, int, int]
    obj_3d: tuple[int, int, int]
    layout: str
    probe_kind: str
    probe_shape: tuple[int, int] | None = None
    tiles: tuple[int, int] | None = None
    safe_zone_px: int = 0


_FAR = dict(energy_ev=5000.0, psize_cm=1e-7, free_prop_cm=())  # lambda 0.248 nm, 1 nm pixels
_NEAR = dict(energy_ev=10000.0, psize_cm=1e-5)  # 0.124 nm, 100 nm pixels
DEFAULTS = MappingProxyType({
    "farfield_ptychography": ModelDefaults(
        **_FAR, obj_2d=(128, 128, 1), obj_3d=(64, 64, 64), layout="raster",
        probe_kind="gaussian", probe_shape=(32, 32)),
    "sparse_multislice": ModelDefaults(
        **_FAR, obj_2d=(128, 128, 3), obj_3d=(128, 128, 3), layout="raster",
        probe_kind="gaussian", probe_shape=(32, 32)),
    "fullfield_cdi": ModelDefaults(
        **_FAR, obj_2d=(64, 64, 1), obj_3d=(64, 64, 64), layout="whole", probe_kind="plane"),
    "nearfield_ptychography": ModelDefaults(
        **_NEAR, free_prop_cm=(0.5,), obj_2d=(128, 128, 1), obj_3d=(96, 96, 96),
        layout="raster", probe_kind="aperture", probe_shape=(64, 64)),
    # the finest fringes reach lambda z / (2 psize) = 15.5 px at 0.25 cm: a 20 px buffer
    "tiled_holography": ModelDefaults(
        **_NEAR, free_prop_cm=(0.25,), obj_2d=(128, 128, 1), obj_3d=(64, 64, 64), layout="grid",
        probe_kind="plane", tiles=(2, 2), safe_zone_px=20),
    "multidistance_holography": ModelDefaults(
        **_NEAR, free_prop_cm=(0.25, 0.5, 1.0), obj_2d=(128, 128, 1), obj_3d=(64, 64, 64),
        layout="grid", probe_kind="plane", tiles=(1, 1), safe_zone_px=8),
})
"""Per-model defaults (read-only)."""


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate; ``None`` means the model's default (see :data:`DEFAULTS`).

    obj_shape : (Ly, Lx) or (Ly, Lx, Lz); default 2D for one angle, 64^3 for several
    probe_shape : (py, px) of the scanned probe (raster models only)
    n_theta, theta_range_rad : angles ``linspace(a, b, n_theta, endpoint=False)``
    energy_ev, psize_cm : photon energy (eV) and object pixel size (cm)
    free_prop_cm : 'inf' (far field), a distance, or one distance per n_dists (cm)
    step_px, jitter_px : raster step (default probe/4) and random position jitter
    scan_margin_px : raster scans: the scanned field is this much larger than the object on
        every side (default 0), so that a tapered probe's bright centre also lights the
        object's border (see :func:`daskorym.simulate.scan.raster_positions`)
    n_probe_modes : incoherent probe modes
    fly_scan_px, fly_scan_samples : fly scan: the probe moves ``fly_scan_px`` along x during
        each exposure; the intensity is the mean over ``fly_scan_samples`` positions spread
        over that motion (data that several probe modes reconstruct)
    noise, photons_per_pixel : None or "poisson"; mean photons per detector pixel
    seed : seed of the object, jitter, probe modes and noise
    tiles : (ny, nx) detector tiles of the grid models
    n_dists : distances of multi-distance holography (default 3)
    safe_zone_px : buffer of the grid models (default 8)
    n_slices, slice_pos_cm : slices of sparse multislice and their positions (cm); default
        3 slices with alternating gaps of 0.6 and 1 um
    unknown_type : "delta_beta" or "real_imag"
    phase_max_rad, absorption : peak projected phase and absorbed amplitude fraction
    kappa : a homogeneous object, beta = kappa delta (delta_beta only; ``absorption`` unused)
    precision : "float32" or "float64" (torch backend)
    chunk_tiles : tiles predicted per call
    """

    obj_shape: tuple[int, ...] | None = None
    probe_shape: tuple[int, int] | None = None
    n_theta: int = 1
    theta_range_rad: tuple[float, float] = (0.0, math.pi)
    energy_ev: float | None = None
    psize_cm: float | None = None
    free_prop_cm: Any = None
    step_px: float | None = None
    jitter_px: float = 0.0
    scan_margin_px: float = 0.0
    n_probe_modes: int = 1
    fly_scan_px: float = 0.0
    fly_scan_samples: int = 5
    noise: str | None = None
    photons_per_pixel: float = 1e4
    seed: int = 0
    tiles: tuple[int, int] | None = None
    n_dists: int | None = None
    safe_zone_px: int | None = None
    n_slices: int | None = None
    slice_pos_cm: tuple[float, ...] | None = None
    unknown_type: str = "delta_beta"
    phase_max_rad: float = 1.0
    absorption: float = 0.5
    kappa: float | None = None
    precision: str = "float32"
    chunk_tiles: int = 32


@dataclass(frozen=True)
class SimulationPlan:
    """A fully resolved simulation: model, geometry, positions ``[n_tiles, 2]``, angles."""

    model: str
    settings: SimulationSettings
    geometry: Geometry
    energy_ev: float
    psize_cm: float
    free_prop_cm: tuple[float, ...]
    positions_px: np.ndarray
    theta_rad: np.ndarray
    probe_kind: str
    tiles: tuple[int, int] | None

    @property
    def data_shape(self) -> tuple[int, int, int, int]:
        return (len(self.theta_rad), len(self.positions_px)) + self.geometry.det_shape


def _check_settings(model: str, s: SimulationSettings) -> None:
    problems = []
    if s.n_theta < 1:
        problems.append(f"n_theta must be >= 1, got {s.n_theta}")
    if s.noise not in (None, "none", "poisson"):
        problems.append(f"noise must be None, 'none' or 'poisson', got {s.noise!r}")
    if not s.photons_per_pixel > 0:
        problems.append(f"photons_per_pixel must be > 0, got {s.photons_per_pixel}")
    if s.kappa is not None and (not math.isfinite(s.kappa) or s.kappa <= 0
                                or s.unknown_type != "delta_beta"):
        problems.append(f"kappa must be a number > 0 with unknown_type 'delta_beta', got "
                        f"{s.kappa!r} ({s.unknown_type})")
    if s.n_probe_modes < 1 or s.chunk_tiles < 1 or s.seed < 0:
        problems.append(f"n_probe_modes and chunk_tiles must be >= 1 and seed >= 0, got "
                        f"{s.n_probe_modes}, {s.chunk_tiles}, {s.seed}")
    if s.fly_scan_px < 0 or s.fly_scan_samples < 1:
        problems.append(f"fly_scan_px must be >= 0 and fly_scan_samples >= 1, got "
                        f"{s.fly_scan_px}, {s.fly_scan_samples}")
    scanned = DEFAULTS[model].layout == "raster"
    if s.fly_scan_px > 0 and not scanned:
        problems.append(f"fly_scan_px applies to scanning models, not {model}")
    if s.scan_margin_px and not scanned:
        problems.append(f"scan_margin_px applies to scanning models, not {model}")
    if model == "sparse_multislice" and s.n_theta > 1:
        problems.append("sparse_multislice simulates one view (n_theta = 1): its slices are not "
                        "on a rotatable voxel grid")
    if problems:
        raise ValueError(f"{model}: " + "; ".join(problems))


def _distances_cm(model: str, d: ModelDefaults, s: SimulationSettings) -> tuple[float, ...]:
    given = s.free_prop_cm
    if isinstance(given, str):
        if given.strip().lower() != "inf":
            raise ValueError(f"{model}: free_prop_cm must be 'inf' or distances in cm, got "
                             f"{given!r}")
        given = INF
    if not d.free_prop_cm:
        if given is not None and not np.all(np.isinf(np.asarray(given, np.float64))):
            raise ValueError(f"{model} is far field: free_prop_cm must be 'inf', got {given!r}")
        return ()
    multi = len(d.free_prop_cm) > 1
    if given is None:
        n = s.n_dists or len(d.free_prop_cm)
        dists = tuple(round(1.45 ** k, 4) for k in range(n)) if multi else d.free_prop_cm
    else:
        dists = tuple(float(v) for v in np.atleast_1d(np.asarray(given, np.float64)))
    if not multi and len(dists) != 1:
        raise ValueError(f"{model} takes one distance, got free_prop_cm={given!r}")
    if s.n_dists is not None and s.n_dists != len(dists):
        raise ValueError(f"{model}: n_dists={s.n_dists} but {len(dists)} distances {dists}")
    if not all(0 < v < INF for v in dists):
        raise ValueError(f"{model}: distances must be positive and finite (cm), got {dists}")
    return dists


def _object_shape(model: str, d: ModelDefaults, s: SimulationSettings) -> tuple[int, int, int]:
    shape = d.obj_3d if s.n_theta > 1 else d.obj_2d
    if s.obj_shape is not None:
        shape = tuple(int(v) for v in s.obj_shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"obj_shape must be (Ly, Lx) or (Ly, Lx, Lz) of positive sizes, "
                             f"got {s.obj_shape}")
    given = {"n_slices": s.n_slices,
             "len(slice_pos_cm)": None if s.slice_pos_cm is None else len(s.slice_pos_cm),
             "obj_shape Lz": shape[2] if s.obj_shape is not None and len(shape) == 3 else None}
    given = {k: v for k, v in given.items() if v is not None}
    if model != "sparse_multislice":
        if "n_slices" in given or "len(slice_pos_cm)" in given:
            raise ValueError(f"{model}: n_slices and slice_pos_cm apply to sparse_multislice only")
        return shape if len(shape) == 3 else shape + (1,)  # type: ignore[return-value]
    if len(set(given.values())) > 1:
        raise ValueError(f"{model}: the number of slices disagrees: {given}")
    n = next(iter(given.values()), d.obj_2d[2])
    return shape[:2] + (n,)  # type: ignore[return-value]


def _slice_positions_cm(model: str, s: SimulationSettings, n_slices: int
                        ) -> tuple[float, ...] | None:
    if model != "sparse_multislice":
        return None
    if s.slice_pos_cm is None:
        gaps = [6e-5 if j % 2 == 0 else 1e-4 for j in range(n_slices - 1)]
        return tuple(float(v) for v in np.concatenate([[0.0], np.cumsum(gaps)]))
    pos = tuple(float(v) for v in s.slice_pos_cm)
    if len(pos) != n_slices:
        raise ValueError(f"{model}: {len(pos)} slice positions for an object of {n_slices} slices")
    return pos


def _layout(model: str, d: ModelDefaults, s: SimulationSettings, obj_shape: tuple[int, ...],
            n_dists: int) -> tuple[tuple[int, int], np.ndarray, int, tuple[int, int] | None]:
    """(probe_shape, positions ``[n_tiles, 2]``, safe_zone_px, tiles) of a model."""
    if d.layout != "raster" and s.probe_shape is not None:
        raise ValueError(f"{model}: probe_shape is set by the object shape"
                         f"{' and the tiles' if d.layout == 'grid' else ''}; do not pass it")
    if d.layout != "grid" and (s.safe_zone_px or s.tiles is not None):
        raise ValueError(f"{model}: tiles and safe_zone_px apply to tiled holography models only")
    tiles = tuple(int(v) for v in (s.tiles or d.tiles)) if d.layout == "grid" else None
    safe = d.safe_zone_px if s.safe_zone_px is None else int(s.safe_zone_px)
    probe, pos = scan_layout(d.layout, obj_shape[:2], probe_shape=s.probe_shape or d.probe_shape,
                             step_px=s.step_px, jitter_px=s.jitter_px, seed=s.seed,
                             tiles=tiles or (1, 1), safe_zone_px=safe, n_dists=n_dists,
                             margin_px=s.scan_margin_px)
    return probe, pos, safe, tiles


def plan_simulation(model: str, settings: SimulationSettings | None = None) -> SimulationPlan:
    """Resolve defaults and check everything before anything is computed.

    Raises
    ------
    ValueError
        Unknown model (the message lists the known ones), inconsistent settings,
        a probe larger than the object, a geometry the model rejects, ...
    """
    cls = get_model(model)
    if model not in DEFAULTS:
        raise ValueError(f"no simulation defaults for model {model!r}; known: {sorted(DEFAULTS)}")
    s, d = settings or SimulationSettings(), DEFAULTS[model]
    _check_settings(model, s)
    dists = _distances_cm(model, d, s)
    obj_shape = _object_shape(model, d, s)
    slices = _slice_positions_cm(model, s, obj_shape[2])
    probe, pos, safe, tiles = _layout(model, d, s, obj_shape, max(len(dists), 1))
    energy = float(d.energy_ev if s.energy_ev is None else s.energy_ev)
    psize = float(d.psize_cm if s.psize_cm is None else s.psize_cm)
    if not (0 < energy < INF and 0 < psize < INF):
        raise ValueError(f"{model}: energy_ev and psize_cm must be positive and finite, got "
                         f"{energy} eV and {psize} cm")
    geometry = Geometry(
        wavelength_m=HC_EV_M / energy, psize_m=psize * 1e-2, obj_shape=obj_shape,
        probe_shape=probe, free_prop_m=tuple(v * 1e-2 for v in dists) or (INF,),
        unknown_type=s.unknown_type, safe_zone_px=safe, n_tiles=len(pos),
        slice_pos_m=None if slices is None else tuple(v * 1e-2 for v in slices))
    cls(geometry)  # the model's own geometry checks
    theta = np.linspace(*s.theta_range_rad, s.n_theta, endpoint=False)
    return SimulationPlan(model, s, geometry, energy, psize, dists, pos, theta, d.probe_kind, tiles)


def make_truth(plan: SimulationPlan) -> tuple[np.ndarray, np.ndarray]:
    """True object ``[Ly, Lx, Lz, 2]`` and probe ``[m, py, px, 2]`` (float32) of a plan."""
    s, g = plan.settings, plan.geometry
    kind = {"sparse_multislice": "sparse", "fullfield_cdi": "compact"}.get(plan.model, "plain")
    k1 = 2 * math.pi * g.psize_m / g.wavelength_m
    obj = sample_object(g.obj_shape, g.unknown_type, s.phase_max_rad, s.absorption, k1, s.seed,
                        kind)
    if s.kappa is not None:  # homogeneous: one material, beta proportional to delta
        obj[..., 1] = np.float32(s.kappa) * obj[..., 0]
    probe = model_probe(plan.probe_kind, g.probe_shape, g.psize_m, g.wavelength_m,
                        s.n_probe_modes, s.seed)
    return obj, probe


def rotated(obj: np.ndarray, theta_rad: float, unknown_type: str) -> np.ndarray:
    """``R_theta (obj - vacuum) + vacuum``: rotation about y with vacuum outside."""
    if theta_rad == 0.0:
        return obj
    vac = np.asarray(vacuum_value(unknown_type), obj.dtype)
    return RotationOperator(obj.shape[1:3], theta_rad)(obj - vac) + vac


def predict_angle(model: ForwardModel, be: Backend, obj: np.ndarray, probe: np.ndarray,
                  positions_px: np.ndarray, i_theta: int, chunk_tiles: int) -> np.ndarray:
    """Noise-free intensities ``[n_tiles, det_y, det_x]`` float64 of one (rotated) object.

    Tiles are predicted ``chunk_tiles`` at a time; positions are passed to the model
    only when some are fractional (integer ones need no sub-pixel shift).
    """
    vac = vacuum_value(model.geometry.unknown_type)
    shift = "pos_px" in model.inputs and not np.array_equal(positions_px, np.rint(positions_px))
    out = []
    for start in range(0, len(positions_px), chunk_tiles):
        tiles = np.arange(start, min(start + chunk_tiles, len(positions_px)))
        batch = model.plan_batch(i_theta, tiles, positions_px[tiles])
        params = {"obj": batch.chunk_from(lambda r: extract_region(obj, r, vac), obj.shape[2:],
                                          obj.dtype, vac), "probe": probe}
        if shift:
            params["pos_px"] = positions_px[tiles]
        inten = be.evaluate(lambda p, b=batch: model.intensity(be, p, b), params)
        out.append(np.asarray(be.to_numpy(inten), np.float64))
    return np.concatenate(out)


def truth_path(out: str | os.PathLike[str]) -> Path:
    """Where :func:`simulate` saves the truth: ``<out without suffix>_truth.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_truth.h5")


class _Runner:
    """Simulates angle by angle (for :class:`LazyAngles`), keeping the Poisson scale.

    Poisson noise: counts ``~ Poisson(c I)`` with ``c = photons_per_pixel / mean(I)``
    taken on angle 0, stored as ``sqrt(counts / c)``; the generator of angle ``i``
    is seeded with ``(seed, 1, i)``.
    """

    def __init__(self, plan: SimulationPlan, obj: np.ndarray, probe: np.ndarray, bar: Any) -> None:
        self.plan, self.obj, self.probe, self.bar = plan, obj, probe, bar
        self.model = get_model(plan.model)(plan.geometry)
        self.be = get_backend("torch", plan.settings.precision)
        self.scale: float | None = None

    def intensity(self, i: int) -> np.ndarray:
        p = self.plan
        obj = rotated(self.obj, float(p.theta_rad[i]), p.geometry.unknown_type)
        fly, n = p.settings.fly_scan_px, p.settings.fly_scan_samples
        if fly <= 0:
            return predict_angle(self.model, self.be, obj, self.probe, p.positions_px, i,
                                 p.settings.chunk_tiles)
        total = 0.0
        for dx in np.linspace(-fly / 2, fly / 2, n):  # the probe's motion during the exposure
            total = total + predict_angle(self.model, self.be, obj, self.probe,
                                          p.positions_px + np.array([0.0, dx]), i,
                                          p.settings.chunk_tiles)
        return total / n

    def __call__(self, i: int) -> np.ndarray:
        s, inten = self.plan.settings, self.intensity(i)
        if s.noise == "poisson":
            if self.scale is None:
                ref = inten if i == 0 else self.intensity(0)
                self.scale = s.photons_per_pixel / max(float(ref.mean()), 1e-300)
            rng = np.random.default_rng([s.seed, 1, i])
            inten = rng.poisson(inten * self.scale) / self.scale
        self.bar.update(1)
        return np.sqrt(np.maximum(inten, 0.0)).astype(np.float32)


def _free_prop_value(plan: SimulationPlan) -> str | float | np.ndarray:
    if not plan.free_prop_cm:
        return "inf"
    return plan.free_prop_cm[0] if len(plan.free_prop_cm) == 1 else np.asarray(plan.free_prop_cm)


def _model_extras(plan: SimulationPlan) -> dict[str, Any]:
    g, extra = plan.geometry, {"model": plan.model, "unknown_type": plan.geometry.unknown_type}
    if g.safe_zone_px:
        extra["safe_zone_px"] = np.int64(g.safe_zone_px)
    if g.slice_pos_m is not None:
        extra["slice_pos_cm"] = np.asarray(g.slice_pos_m) * 1e2
    return extra


def write_truth(path: Path, plan: SimulationPlan, obj: np.ndarray, probe: np.ndarray,
                attrs: dict[str, Any], overwrite: bool) -> Path:
    """Save the truth with h5py, atomically (a hidden temporary sibling, then rename).

    Datasets ``obj`` [Ly, Lx, Lz, 2], ``probe`` [m, py, px, 2], ``probe_pos_px``
    [n_tiles, 2], ``theta`` [n_theta]; attributes: model, unknown_type, energy_ev,
    psize_cm, free_prop_cm, safe_zone_px, slice_pos_cm, noise settings, seed, ...
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with h5py.File(tmp, "w") as f:
            for name, value in (("obj", obj), ("probe", probe),
                                ("probe_pos_px", plan.positions_px), ("theta", plan.theta_rad)):
                f.create_dataset(name, data=value)
            f.attrs.update({k: v for k, v in attrs.items() if v is not None})
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _truth_attrs(plan: SimulationPlan, runner: _Runner) -> dict[str, Any]:
    s, fp = plan.settings, _free_prop_value(plan)
    attrs = dict(_model_extras(plan), energy_ev=plan.energy_ev, psize_cm=plan.psize_cm,
                 free_prop_cm=fp, safe_zone_px=plan.geometry.safe_zone_px,
                 seed=s.seed, noise=s.noise or "none", phase_max_rad=s.phase_max_rad,
                 absorption=s.absorption, sign_convention=plan.geometry.sign_convention,
                 fly_scan_px=s.fly_scan_px, scan_margin_px=s.scan_margin_px,
                 tiles=None if plan.tiles is None else np.asarray(plan.tiles))
    if s.noise == "poisson":
        attrs.update(photons_per_pixel=s.photons_per_pixel, photons_per_intensity=runner.scale)
    return attrs


def _check_targets(out: Path, truth: Path, overwrite: bool) -> None:
    format_for_suffix(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory {out.parent} does not exist (writing {out.name})")
    for path in (out, truth):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")


def simulate(model: str, out: str | os.PathLike[str], settings: SimulationSettings | None = None,
             *, overwrite: bool = False, progress: bool = True, **overrides: Any) -> Path:
    """Simulate a dataset for ``model``; write it to ``out`` and the truth beside it.

    Parameters
    ----------
    model : a registered model name (``daskorym.models.MODELS``)
    out : ``.h5``/``.hdf5`` or ``.zarr`` target; data ``[n_theta, n_tiles, det_y, det_x]``
        float32 magnitudes, written atomically
    settings : :class:`SimulationSettings`; ``None`` = all defaults
    overwrite : replace existing data and truth files
    progress : tqdm bar over angles
    **overrides : fields of :class:`SimulationSettings` (``obj_shape=(64, 64)``, ...)

    Returns
    -------
    Path of the dataset; the truth is at :func:`truth_path` ``(out)``.
    """
    try:
        settings = dataclasses.replace(settings or SimulationSettings(), **overrides)
    except TypeError:
        valid = [f.name for f in dataclasses.fields(SimulationSettings)]
        bad = sorted(set(overrides) - set(valid))
        raise ValueError(f"unknown simulation setting(s) {bad}; expected some of {valid}") from None
    plan = plan_simulation(model, settings)
    out, truth = Path(out), truth_path(out)
    _check_targets(out, truth, overwrite)
    obj, probe = make_truth(plan)
    with tqdm(total=len(plan.theta_rad), desc=f"simulate {model}", unit="angle",
              disable=not progress) as bar:
        runner = _Runner(plan, obj, probe, bar)
        write_dataset(out, LazyAngles(plan.data_shape, runner), probe_pos_px=plan.positions_px,
                      energy_ev=plan.energy_ev, psize_cm=plan.psize_cm,
                      free_prop_cm=_free_prop_value(plan), theta=plan.theta_rad,
                      extra_metadata=_model_extras(plan), overwrite=overwrite)
    write_truth(truth, plan, obj, probe, _truth_attrs(plan, runner), overwrite)
    return out


__all__ = ["DEFAULTS", "ModelDefaults", "SimulationPlan", "SimulationSettings", "make_truth",
           "plan_simulation", "predict_angle", "rotated", "simulate", "truth_path", "write_truth"]
