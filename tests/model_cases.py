"""Tiny, well-conditioned cases of every forward model, shared by the numerical tests."""

from __future__ import annotations

import numpy as np

from daskorym.models import Geometry, get_model
from daskorym.physics import extract_region, vacuum_value

WAVELENGTH_M = 1e-10


def _geometry(name: str) -> Geometry:
    common = dict(wavelength_m=WAVELENGTH_M)
    if name == "farfield_ptychography":
        return Geometry(psize_m=1e-8, obj_shape=(14, 15, 3), probe_shape=(8, 8), n_tiles=3,
                        **common)
    if name == "nearfield_ptychography":
        return Geometry(psize_m=1e-7, obj_shape=(14, 15, 2), probe_shape=(8, 8), n_tiles=3,
                        free_prop_m=(1e-4,), **common)
    if name == "fullfield_cdi":
        return Geometry(psize_m=1e-8, obj_shape=(8, 10, 2), probe_shape=(8, 10), n_tiles=1,
                        **common)
    if name == "tiled_holography":
        return Geometry(psize_m=1e-7, obj_shape=(12, 12, 1), probe_shape=(10, 10), n_tiles=4,
                        free_prop_m=(1e-4,), safe_zone_px=2, **common)
    if name == "multidistance_holography":
        return Geometry(psize_m=1e-7, obj_shape=(12, 12, 1), probe_shape=(10, 10), n_tiles=4,
                        free_prop_m=(1e-4, 2e-4), safe_zone_px=2, **common)
    if name == "multidistance_ctf":  # a weak object (phase ~0.06 rad): intensities stay > 0
        return Geometry(psize_m=1e-9, obj_shape=(12, 12, 1), probe_shape=(10, 10), n_tiles=4,
                        free_prop_m=(1e-4, 2e-4), safe_zone_px=2, **common)
    if name == "minuslog_tomography":
        return Geometry(psize_m=1e-8, obj_shape=(8, 10, 3), probe_shape=(8, 10), n_tiles=1,
                        **common)
    if name == "sparse_multislice":
        return Geometry(psize_m=1e-8, obj_shape=(14, 15, 3), probe_shape=(8, 8), n_tiles=3,
                        slice_pos_m=(0.0, 4e-7, 1.1e-6), **common)
    raise KeyError(name)


def _positions(name: str, geom: Geometry) -> np.ndarray:
    if name == "fullfield_cdi":
        return np.zeros((1, 2))
    if name in ("tiled_holography", "multidistance_holography"):
        corners = np.array([[0.0, 0.0], [0.0, 6.0], [6.0, 0.0], [6.0, 6.0]])
        blocks = geom.n_tiles // geom.n_dists
        return np.tile(corners[:blocks], (geom.n_dists, 1)) + 0.2
    return np.array([[0.2, 1.3], [4.1, 5.4], [5.7, 2.2]])


def make_case(name: str, seed: int = 0, unknown_type: str = "delta_beta",
              experiment: bool = False):
    """(model, params, batch, measured) with float64 NumPy params; ``experiment`` adds values
    of the model's refinable experiment inputs (offsets, defocus, tilt, kappa, affine)."""
    import dataclasses
    geom = dataclasses.replace(_geometry(name), unknown_type=unknown_type)
    model = get_model(name)(geom)
    rng = np.random.default_rng(seed)
    pos = _positions(name, geom)
    tiles = np.arange(len(pos))
    batch = model.plan_batch(0, tiles, pos)
    ly, lx, lz = geom.obj_shape
    if unknown_type == "delta_beta":
        obj = np.stack([rng.uniform(0.5e-3, 1.5e-3, (ly, lx, lz)),
                        rng.uniform(0.5e-4, 1.5e-4, (ly, lx, lz))], -1)
    else:
        mag = rng.uniform(0.7, 1.0, (ly, lx, lz))
        ph = rng.uniform(-0.5, 0.5, (ly, lx, lz))
        obj = np.stack([mag * np.cos(ph), mag * np.sin(ph)], -1)
    chunk = extract_region(obj, batch.region, vacuum_value(unknown_type))
    n_modes = 2
    py, px = geom.probe_shape
    probe = 1.0 + 0.3 * rng.standard_normal((n_modes, py, px, 2))
    probe[1] *= 0.5
    params = {"obj": chunk, "probe": probe, "pos_px": pos[batch.tiles]}
    if "free_prop_m" in model.inputs:
        params["free_prop_m"] = np.asarray(geom.free_prop_m, np.float64)
    if "slice_pos_m" in model.inputs:
        params["slice_pos_m"] = np.asarray(geom.slice_pos_m, np.float64)
    if "pos_px" not in model.inputs:
        params.pop("pos_px")
    if experiment:
        params.update({k: v for k, v in experiment_params(geom).items() if k in model.inputs})
    dy, dx = geom.det_shape
    measured = rng.uniform(0.5, 2.0, (len(tiles), dy, dx)) * np.sqrt(py * px)
    return model, params, batch, measured, obj


def experiment_params(geom: Geometry) -> dict[str, np.ndarray]:
    """Values of the refinable experiment inputs away from any special point (zero tilt
    samples exact grid points, where bilinear interpolation has kinks)."""
    # defocus giving a Fresnel phase of about one radian at the tile's edge frequency
    defocus = 1.0 / (np.pi * geom.wavelength_m * (0.5 / geom.psize_m) ** 2)
    affine = np.tile(np.array([[1.01, 0.005, 0.2], [-0.004, 0.99, -0.1]]), (geom.n_dists, 1, 1))
    return {"pos_offset_px": np.array([0.3, -0.2]), "prj_offset_px": np.array([0.4, 0.1]),
            "probe_defocus_m": np.array([defocus]), "tilt_rad": np.array([0.02, -0.015, 0.01]),
            "lg_kappa": np.array([-1.0]), "prj_affine": affine}
