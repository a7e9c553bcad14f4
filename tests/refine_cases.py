"""Simulated data with known experimental errors, for the parameter-recovery tests.

:func:`simulate_with` predicts magnitudes with a forward model and *true* values of
refinable inputs (per angle or global), writes an Adorym-layout dataset, and the
tests then reconstruct from perturbed starting values.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from daskorym.backend import get_backend
from daskorym.io import write_dataset
from daskorym.models import Geometry, get_model
from daskorym.physics import extract_region, vacuum_value
from daskorym.simulate.simulate import rotated

HC_EV_M = 1239.84193e-9


def simulate_with(path: Path, model_name: str, geometry: Geometry, obj: np.ndarray,
                  probe: np.ndarray, positions: np.ndarray, theta: np.ndarray,
                  per_angle: dict[str, np.ndarray] | None = None,
                  fixed: dict[str, np.ndarray] | None = None,
                  photons_per_pixel: float | None = None, seed: int = 0,
                  recorded_positions: np.ndarray | None = None) -> Path:
    """Write magnitudes ``sqrt(I)`` of ``obj`` seen at ``theta`` to ``path``.

    ``probe``: real ``[m, py, px, 2]``; ``positions``: ``[n_tiles, 2]`` or
    ``[n_theta, n_tiles, 2]``; ``per_angle``: kernel input -> ``[n_theta, ...]`` (row ``i``
    used at angle ``i``); ``fixed``: kernel input -> value used at every angle.
    Poisson noise when ``photons_per_pixel`` is given.  ``recorded_positions`` (default:
    the true ones) are the positions written to the file, as an instrument with position
    errors would record them.
    """
    model = get_model(model_name)(geometry)
    if "tilt_rad" in (per_angle or {}):
        model.layout, model.halo_px = "box", 4
    be = get_backend("torch", "float64")
    n_theta = len(theta)
    pos = np.asarray(positions, np.float64)
    if pos.ndim == 2:
        pos = np.broadcast_to(pos, (n_theta,) + pos.shape)
    vac = vacuum_value(geometry.unknown_type)
    data = []
    for i in range(n_theta):
        view = rotated(obj, float(theta[i]), geometry.unknown_type)
        tiles = np.arange(pos.shape[1])
        plan_pos = pos[i] + (per_angle or {}).get("pos_offset_px", np.zeros((n_theta, 2)))[i]
        batch = model.plan_batch(i, tiles, plan_pos)
        params = {"obj": batch.chunk_from(lambda r: extract_region(view, r, vac), view.shape[2:],
                                          view.dtype, vac),
                  "probe": probe, "pos_px": np.array(pos[i])}
        params.update({k: np.asarray(v[i], np.float64) for k, v in (per_angle or {}).items()})
        params.update({k: np.asarray(v, np.float64) for k, v in (fixed or {}).items()})
        params = {k: v for k, v in params.items() if k in model.inputs}
        inten = np.asarray(be.to_numpy(be.evaluate(
            lambda p: model.intensity(be, p, batch), params)), np.float64)
        data.append(inten)
    data = np.stack(data)
    if photons_per_pixel is not None:
        scale = photons_per_pixel / data.mean()
        data = np.random.default_rng(seed).poisson(data * scale) / scale
    free = geometry.free_prop_m
    free_cm = "inf" if all(math.isinf(d) for d in free) else \
        (free[0] * 100 if len(free) == 1 else np.asarray(free) * 100)
    rec = pos if recorded_positions is None else np.broadcast_to(
        np.asarray(recorded_positions, np.float64), pos.shape)
    write_dataset(path, np.sqrt(np.maximum(data, 0)).astype(np.float32),
                  probe_pos_px_per_angle=list(rec), energy_ev=HC_EV_M / geometry.wavelength_m,
                  psize_cm=geometry.psize_m * 100, free_prop_cm=free_cm, theta=theta)
    return path


def smooth_object(shape: tuple[int, int, int], unknown_type: str, seed: int = 0,
                  phase_max: float = 0.8, k1: float = 1.0) -> np.ndarray:
    """A smooth random object ``[Ly, Lx, Lz, 2]``: blobs of phase and some absorption.

    ``delta_beta``: delta and beta such that the projected phase peaks near
    ``phase_max`` (``k1 = 2 pi dz / lambda``), beta = delta / 10.
    """
    rng = np.random.default_rng(seed)
    ly, lx, lz = shape
    y, x, z = np.meshgrid(np.arange(ly), np.arange(lx), np.arange(lz), indexing="ij")
    field = np.zeros(shape)
    for _ in range(24):
        cy, cx, cz = rng.uniform(0.15, 0.85, 3) * np.array([ly, lx, lz])
        r = rng.uniform(0.04, 0.12) * min(ly, lx)
        field += rng.uniform(0.3, 1.0) * np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / r ** 2
                                                   + (z - cz) ** 2 / max(r, lz / 3) ** 2))
    field /= field.max()
    if unknown_type == "real_imag":
        ph = phase_max * field
        mag = 1.0 - 0.2 * field
        return np.stack([mag * np.cos(ph), mag * np.sin(ph)], -1)
    delta = field * phase_max / (k1 * lz)
    return np.stack([delta, delta / 10], -1)


def grid_positions(obj_shape, probe_shape, step: float, margin: int = 0) -> np.ndarray:
    ys = np.arange(margin, obj_shape[0] - probe_shape[0] - margin + 1, step)
    xs = np.arange(margin, obj_shape[1] - probe_shape[1] - margin + 1, step)
    return np.array([(y, x) for y in ys for x in xs], np.float64)


def with_geometry(geometry: Geometry, **changes) -> Geometry:
    return dataclasses.replace(geometry, **changes)
