"""Every forward model against a direct computation written separately here.

The direct version loops over tiles, modes and slices, reads the full
object voxel by voxel (vacuum outside), and builds its own kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.models import MODELS
from model_cases import make_case


def _tile_of_object(obj, y0, x0, ny, nx, unknown_type):
    vac = (1.0, 0.0) if unknown_type == "real_imag" else (0.0, 0.0)
    out = np.empty((ny, nx) + obj.shape[2:])
    for i in range(ny):
        for j in range(nx):
            y, x = y0 + i, x0 + j
            inside = 0 <= y < obj.shape[0] and 0 <= x < obj.shape[1]
            out[i, j] = obj[y, x] if inside else vac
    return out


def _kernel(shape, psize, lam, z):
    fy = np.array([(k if k < (shape[0] + 1) // 2 else k - shape[0]) / (shape[0] * psize)
                   for k in range(shape[0])])
    fx = np.array([(k if k < (shape[1] + 1) // 2 else k - shape[1]) / (shape[1] * psize)
                   for k in range(shape[1])])
    return np.exp(-1j * math.pi * lam * z * (fy[:, None] ** 2 + fx[None, :] ** 2))


def _shift(img, dy, dx):
    ny, nx = img.shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.fftfreq(nx)[None, :]
    return np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * math.pi * (fy * dy + fx * dx)))


def _transmission(vals, k1, unknown_type):
    if unknown_type == "real_imag":
        return vals[..., 0] + 1j * vals[..., 1]
    return np.exp(-k1 * vals[..., 1]) * np.exp(-1j * k1 * vals[..., 0])


def direct_intensity(name, geom, obj, probe_ri, pos, tiles):
    lam, ps = geom.wavelength_m, geom.psize_m
    k1 = 2 * math.pi * ps / lam
    sz = geom.safe_zone_px
    py, px = geom.probe_shape
    probe = probe_ri[..., 0] + 1j * probe_ri[..., 1]
    out = []
    for t, tile in enumerate(tiles):
        wy, wx = pos[t, 0] - sz, pos[t, 1] - sz
        iy, ix = math.floor(wy + 0.5), math.floor(wx + 0.5)
        chunk = _tile_of_object(obj, iy, ix, py, px, geom.unknown_type)
        total = np.zeros(geom.det_shape)
        for m in range(probe.shape[0]):
            psi = _shift(probe[m], wy - iy, wx - ix)
            lz = chunk.shape[2]
            for j in range(lz):
                psi = psi * _transmission(chunk[:, :, j], k1, geom.unknown_type)
                if j < lz - 1:
                    if name == "sparse_multislice":
                        gap = geom.slice_pos_m[j + 1] - geom.slice_pos_m[j]
                    else:
                        gap = ps
                    psi = np.fft.ifft2(np.fft.fft2(psi) * _kernel((py, px), ps, lam, gap))
            if math.isinf(geom.free_prop_m[0]):
                det = np.fft.fftshift(np.fft.fft2(psi))
            else:
                n_blocks = geom.n_tiles // geom.n_dists
                z = geom.free_prop_m[tile // n_blocks]
                det = np.fft.ifft2(np.fft.fft2(psi) * _kernel((py, px), ps, lam, z))
            if sz:
                det = det[sz:-sz, sz:-sz]
            total += np.abs(det) ** 2
        out.append(total)
    return np.stack(out)


# approximate models (linearised CTF, line integrals) are checked in test_ctf.py and
# test_minuslog.py: they cannot equal the exact wave computation written here
CASES = sorted(n for n in MODELS if n not in ("multidistance_ctf", "minuslog_tomography")) \
    + ["farfield_ptychography:real_imag"]


@pytest.mark.parametrize("backend", ["torch", "autograd"])
@pytest.mark.parametrize("label", CASES)
def test_model_matches_direct_computation(label, backend):
    name, _, ut = label.partition(":")
    model, params, batch, _, obj = make_case(name, unknown_type=ut or "delta_beta")
    be = get_backend(backend, "float64")
    pred = be.to_numpy(be.evaluate(lambda p: model.intensity(be, p, batch), params))
    pos = params.get("pos_px", np.zeros((1, 2)))
    ref = direct_intensity(name, model.geometry, obj, params["probe"], pos, batch.tiles)
    rel = np.linalg.norm(pred - ref) / np.linalg.norm(ref)
    print(f"{label} [{backend}]: relative error {rel:.2e}")
    assert pred.shape == ref.shape
    assert rel < 1e-6


def test_pure_projection_equals_line_integral():
    import dataclasses
    model, params, batch, _, obj = make_case("farfield_ptychography")
    geom = dataclasses.replace(model.geometry, pure_projection=True)
    proj_model = type(model)(geom)
    be = get_backend("autograd", "float64")
    pred = be.evaluate(lambda p: proj_model.intensity(be, p, batch), params)
    summed = obj.sum(axis=2, keepdims=True)
    flat_geom = dataclasses.replace(geom, obj_shape=obj.shape[:2] + (1,), pure_projection=False)
    ref = direct_intensity("farfield_ptychography", flat_geom, summed, params["probe"],
                           params["pos_px"], batch.tiles)
    assert np.linalg.norm(pred - ref) / np.linalg.norm(ref) < 1e-10


def test_binning_equals_summed_slices():
    import dataclasses
    model, params, batch, _, obj = make_case("farfield_ptychography")
    geom = dataclasses.replace(model.geometry, binning=3)
    be = get_backend("torch", "float64")
    pred = be.to_numpy(be.evaluate(lambda p: type(model)(geom).intensity(be, p, batch), params))
    summed = obj.sum(axis=2, keepdims=True)
    flat_geom = dataclasses.replace(geom, obj_shape=obj.shape[:2] + (1,), binning=1)
    ref = direct_intensity("farfield_ptychography", flat_geom, summed, params["probe"],
                           params["pos_px"], batch.tiles)
    assert np.linalg.norm(pred - ref) / np.linalg.norm(ref) < 1e-10


@pytest.mark.parametrize("name", ["farfield_ptychography", "tiled_holography"])
def test_mosaic_layout_equals_box_layout(name):
    """Tiles cut one by one (mosaic) give the same intensities and object gradient."""
    from daskorym.losses import LSQLoss
    from daskorym.physics import add_region, extract_region, vacuum_value
    model, params, _, measured, obj = make_case(name)
    be = get_backend("torch", "float64")
    pos = params["pos_px"]
    out = {}
    for layout in ("box", "mosaic"):
        tb = model.plan_batch(0, np.arange(len(pos)), pos, layout=layout)
        vac = vacuum_value("delta_beta")
        p = dict(params, obj=tb.chunk_from(lambda r: extract_region(obj, r, vac), obj.shape[2:],
                                           obj.dtype, vac))
        value, g = be.value_and_grad(
            lambda q: model.tile_loss(be, q, tb, measured, LSQLoss())[0], p, ["obj", "pos_px"])
        full = np.zeros_like(obj)
        tb.add_chunk_to(lambda r, a: add_region(full, r, a), g["obj"])
        out[layout] = (value, full, g["pos_px"])
    assert (tb.tile_regions is not None)
    assert np.isclose(out["box"][0], out["mosaic"][0], rtol=1e-12)
    assert np.allclose(out["box"][1], out["mosaic"][1], rtol=1e-10, atol=1e-12 * np.abs(out["box"][1]).max())
    assert np.allclose(out["box"][2], out["mosaic"][2], rtol=1e-10)
