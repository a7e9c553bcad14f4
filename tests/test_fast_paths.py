"""The hot path's shortcuts against the plain code they replace.

* the fused loss of waves (torch, hand-written adjoint) against the composed
  ``sum_modes |psi|^2`` then loss, value and gradient, with modes, masks and both losses;
* patches moved as complex pairs (torch) against the generic gather, and the scatter as
  its exact adjoint;
* the local engine's one-pass chunk against ``extract_region``;
* the measured data in FFT order against shifting them per batch;
* the fused multislice (torch, hand-written adjoint) against the composed slices, and its
  gradient against finite differences (``gradcheck``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daskorym.backend import get_backend
from daskorym.backend.base import Backend
from daskorym.engine.loop import _chunk
from daskorym.losses import LSQLoss, PoissonLoss
from daskorym.physics import extract_region
from daskorym.physics.region import Region


def _waves(rng, n=5, modes=1, shape=(12, 10)):
    return (rng.standard_normal((n, modes) + shape)
            + 1j * rng.standard_normal((n, modes) + shape)).astype(np.complex128)


@pytest.mark.parametrize("loss", [LSQLoss(), PoissonLoss(multiplier=3.0)], ids=["lsq", "poisson"])
@pytest.mark.parametrize("modes", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_wave_loss_equals_composed(loss, modes, masked):
    rng = np.random.default_rng(modes + 10 * masked)
    psi = _waves(rng, modes=modes)
    measured = rng.uniform(0.1, 2.0, (5, 12, 10))
    mask = (rng.uniform(size=(12, 10)) > 0.3) * rng.uniform(0.5, 1.0, (12, 10)) if masked \
        else None
    be = get_backend("torch", "float64")
    results = []
    for fused in (True, False):
        z = torch.tensor(psi, requires_grad=True)
        m = torch.tensor(measured)
        w = None if mask is None else torch.tensor(mask)
        value = be.wave_loss(z, m, w, loss) if fused else \
            Backend.wave_loss(be, z, m, w, loss)
        (grad,) = torch.autograd.grad(value, [z])
        results.append((float(value.detach()), grad.numpy()))
    (v1, g1), (v0, g0) = results
    assert v1 == pytest.approx(v0, rel=1e-12)
    assert np.linalg.norm(g1 - g0) <= 1e-12 * np.linalg.norm(g0)
    assert np.linalg.norm(g0) > 0


def test_fused_wave_loss_float32_matches_float64():
    rng = np.random.default_rng(3)
    psi = _waves(rng, n=8, shape=(32, 32))
    measured = np.abs(psi[:, 0]) * rng.uniform(0.8, 1.2, psi[:, 0].shape)
    out = {}
    for precision in ("float32", "float64"):
        be = get_backend("torch", precision)
        z = be.asarray(psi).requires_grad_(True)
        value = be.wave_loss(z, be.asarray(measured), None, LSQLoss())
        (grad,) = torch.autograd.grad(value, [z])
        out[precision] = (float(value.detach()), grad.to(torch.complex128).numpy())
    assert out["float32"][0] == pytest.approx(out["float64"][0], rel=1e-5)
    g32, g64 = out["float32"][1], out["float64"][1]
    assert np.linalg.norm(g32 - g64) <= 1e-5 * np.linalg.norm(g64)


def test_loss_slopes_are_the_derivatives_of_the_pixel_terms():
    """``Loss.slope`` (used by the fused adjoint) against central differences."""
    be = get_backend("autograd", "float64")
    rng = np.random.default_rng(4)
    inten = rng.uniform(0.2, 3.0, 50)
    measured = rng.uniform(0.1, 2.0, 50)
    h = 1e-6
    for loss in (LSQLoss(), PoissonLoss(multiplier=2.5)):
        fd = (loss.pixelwise(be, inten + h, measured)
              - loss.pixelwise(be, inten - h, measured)) / (2 * h)
        np.testing.assert_allclose(loss.slope(be, inten, measured), fd, rtol=1e-7)
        total, slope = loss.value_and_slope(be, inten, measured)
        assert total == pytest.approx(float(np.sum(loss.pixelwise(be, inten, measured))))
        np.testing.assert_allclose(slope, fd, rtol=1e-7)


@pytest.mark.parametrize("trailing", [(3, 2), (2,), (), (4,)])
def test_torch_gather_matches_generic_and_scatter_is_its_adjoint(trailing):
    rng = np.random.default_rng(5)
    img = rng.standard_normal((20, 17) + trailing).astype(np.float32)
    iy = np.array([0, 3, 8, 12, 4])
    ix = np.array([0, 9, 2, 11, 11])
    be = get_backend("torch", "float32")
    fast = be.to_numpy(be.gather_patches(be.asarray(img), iy, ix, (8, 6)))
    plain = be.to_numpy(Backend.gather_patches(be, be.asarray(img), iy, ix, (8, 6)))
    assert np.array_equal(fast, plain)
    for k in range(len(iy)):
        assert np.array_equal(fast[k], img[iy[k]:iy[k] + 8, ix[k]:ix[k] + 6])
    # adjoint: <gather(x), y> == <x, scatter(y)>
    y = rng.standard_normal(fast.shape).astype(np.float32)
    back = be.to_numpy(be.scatter_add_patches(be.asarray(y), iy, ix, img.shape))
    lhs, rhs = float(np.sum(fast.astype(np.float64) * y)), float(np.sum(img.astype(np.float64) * back))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    # and the gradient of the gather is that scatter
    x = be.asarray(img).requires_grad_(True)
    (g,) = torch.autograd.grad((be.gather_patches(x, iy, ix, (8, 6)) * be.asarray(y)).sum(), [x])
    np.testing.assert_allclose(g.numpy(), back, rtol=1e-6, atol=1e-6)


def test_gather_outside_the_image_is_an_error():
    be = get_backend("torch", "float32")
    with pytest.raises(IndexError, match="leaves the array"):
        be.gather_patches(be.asarray(np.zeros((10, 10, 1, 2), np.float32)), [5], [0], (8, 8))


@pytest.mark.parametrize("region", [Region(-3, -2, 10, 40), Region(2, 3, 5, 6),
                                    Region(15, 25, 10, 10), Region(30, 0, 3, 3),
                                    Region(-1, -1, 22, 32), Region(0, 0, 20, 30)])
def test_one_pass_chunk_equals_extract_region(region):
    from types import SimpleNamespace
    obj = np.random.default_rng(6).random((20, 30, 2, 2)).astype(np.float32)
    tb = SimpleNamespace(region=region, tile_regions=None)
    got = _chunk(tb, obj, (1.0, 0.5))
    assert np.array_equal(got, extract_region(obj, region, (1.0, 0.5)))
    # a box covering the whole object is the object itself (kernels never write into inputs)
    whole = (region.y0, region.x0, region.ny, region.nx) == (0, 0) + obj.shape[:2]
    assert np.shares_memory(got, obj) == whole


def test_measured_in_fft_order_gives_the_same_reconstruction(tmp_path, monkeypatch):
    """The far-field engine compares in FFT order with the data shifted once per angle; the
    same run with the data shifted per batch (the model's own path) gives the same result."""
    from daskorym import Reconstruction
    from daskorym.engine.problem import build_problem
    from daskorym.config import load_settings
    from daskorym.simulate import simulate

    data = tmp_path / "d.h5"
    simulate("farfield_ptychography", data, obj_shape=(40, 40), probe_shape=(16, 16), step_px=6,
             unknown_type="real_imag", progress=False)
    settings = {"dataset": {"path": str(data)}, "model": {"unknown_type": "real_imag"},
                "object": {"shape": [40, 40, 1]},
                "optimization": {"n_epochs": 2, "minibatch_size": 8},
                "output": {"folder": str(tmp_path / "a"), "progress": False}}
    prob = build_problem(load_settings(settings))
    assert prob.fft_order
    tiles = np.array([0, 3, 5])
    np.testing.assert_array_equal(prob.measured(0, tiles, fft_order=True),
                                  np.fft.ifftshift(prob.measured(0, tiles), axes=(-2, -1)))
    prob.dataset.close()
    with Reconstruction(settings) as rec:
        a = rec.run().object
    settings["output"]["folder"] = str(tmp_path / "b")
    from daskorym.engine.problem import Problem
    monkeypatch.setattr(Problem, "fft_order", property(lambda self: False))  # shift per batch
    with Reconstruction(settings) as rec:
        b = rec.run().object
    assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(a)


def _multislice_inputs(rng, n, modes, lz, shape=(6, 5), broadcast=False):
    psi = _waves(rng, n=1 if broadcast else n, modes=modes, shape=shape)
    obj = rng.uniform(-0.5, 0.5, (n,) + shape + (lz, 2))
    from daskorym.physics.propagation import fresnel_kernel
    kern = fresnel_kernel(shape, 1e-8, 1e-10, 3e-8, True, 1).astype(np.complex128)
    return psi, obj, kern


def _modulation(kind, k1=0.7):
    from daskorym.physics.multislice import Modulation
    return Modulation("real_imag" if kind == "real_imag" else "delta_beta",
                      sign=-1 if kind == "sign-1" else 1, wavelength_m=1e-10,
                      dz_m=k1 * 1e-10 / (2 * np.pi), kappa=0.3 if kind == "kappa" else None)


def _chunk_and_corners(rng, shape, real_imag):
    """A chunk ``[10, 9, 5, 2]`` and the corners of 4 overlapping tiles of ``shape`` (6, 5)
    in it; voxel (9, 8) lies under no tile."""
    chunk = rng.uniform(-0.5, 0.5, (10, 9, 5, 2)) + ([1.0, 0.0] if real_imag else 0.0)
    return chunk, np.array([0, 2, 3, 4]), np.array([0, 1, 4, 3])


@pytest.mark.parametrize("kind", ["delta_beta", "kappa", "real_imag", "sign-1"])
@pytest.mark.parametrize("modes,broadcast", [(1, False), (3, False), (2, True)])
@pytest.mark.parametrize("layout", ["slices", "chunk"])
def test_fused_multislice_equals_composed(kind, modes, broadcast, layout):
    """The fused multislice (torch, hand-written adjoint) against the composed slices of the
    object in its natural layout ``[n, ny, nx, Lz, 2]``: waves and both gradients. Given
    the tiles' slice-major voxels (``slices``), or the chunk and the tiles' corners
    (``chunk``: transmissions once per chunk voxel, the tiles' gradients summed per voxel;
    the composed side gathers the tiles with the generic gather)."""
    from daskorym.physics.multislice import multislice
    rng = np.random.default_rng(len(kind) + 10 * modes)
    psi, obj, kern = _multislice_inputs(rng, 4, modes, 5, broadcast=broadcast)
    if layout == "chunk":
        obj, iy, ix = _chunk_and_corners(rng, (6, 5), kind == "real_imag")
    elif kind == "real_imag":
        obj = obj + np.array([1.0, 0.0])
    mod = _modulation(kind)
    be = get_backend("torch", "float64")
    w = torch.tensor(rng.standard_normal((4, modes, 6, 5)))
    results = []
    for fused in (True, False):
        z, o = torch.tensor(psi, requires_grad=True), torch.tensor(obj, requires_grad=True)
        k = torch.tensor(kern)
        if layout == "chunk":
            out = be.fused_multislice(z, o, mod, k, (iy, ix, (6, 5))) if fused else \
                multislice(be, z, Backend.gather_patches(be, o, iy, ix, (6, 5)), mod, k)
        else:
            out = multislice(be, z, torch.movedim(o, 3, 0), mod, k, slice_major=True) \
                if fused else multislice(be, z, o, mod, k)
        value = torch.sum(w * torch.abs(out) ** 2) + torch.sum(out.real * w)
        gz, go = torch.autograd.grad(value, [z, o])
        results.append((out.detach().numpy(), gz.numpy(), go.numpy()))
    (o1, z1, b1), (o0, z0, b0) = results
    assert np.linalg.norm(o1 - o0) <= 1e-12 * np.linalg.norm(o0)
    assert np.linalg.norm(z1 - z0) <= 1e-12 * np.linalg.norm(z0)
    assert np.linalg.norm(b1 - b0) <= 1e-12 * np.linalg.norm(b0)
    assert np.linalg.norm(b0) > 0 and np.linalg.norm(z0) > 0
    if layout == "chunk":  # a voxel under no tile
        assert np.all(b0[9, 8] == 0) and np.all(b1[9, 8] == 0)


@pytest.mark.parametrize("layout", ["slices", "chunk"])
def test_fused_multislice_gradient_against_finite_differences(layout):
    from daskorym.backend.torch_backend import _Multislice
    be = get_backend("torch", "float64")
    rng = np.random.default_rng(7)
    psi, obj, kern = _multislice_inputs(rng, 4 if layout == "chunk" else 2, 2, 3,
                                        shape=(6, 5))
    z = torch.tensor(psi, requires_grad=True)
    chunk, iy, ix = _chunk_and_corners(rng, (6, 5), False)
    o = torch.tensor(chunk[:, :, :3] if layout == "chunk" else np.moveaxis(obj, 3, 0).copy(),
                     requires_grad=True)
    for kind in ("delta_beta", "sign-1", "kappa", "real_imag"):
        mod = _modulation(kind, k1=1.7)  # k1 = 2 pi dz / lambda
        assert mod.k1 == pytest.approx(1.7)
        if layout == "chunk":
            def f(a, b):
                return be.fused_multislice(a, b, mod, torch.tensor(kern), (iy, ix, (6, 5)))
        else:
            def f(a, b):
                return _Multislice.apply(a, b, None, None, mod, be, torch.tensor(kern))
        assert torch.autograd.gradcheck(f, (z, o), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("trailing", [(3, 2), (4, 1)])
def test_torch_slice_major_gather_matches_generic(trailing):
    """``gather_slices`` (torch: chunk made slice-major, gathered along rows) against the
    generic patches moved to slice-major, values and gradient (its adjoint)."""
    rng = np.random.default_rng(sum(trailing))
    img = rng.standard_normal((9, 8) + trailing)
    iy, ix = np.array([0, 2, 5, 6]), np.array([1, 0, 4, 5])
    be = get_backend("torch", "float64")
    w = torch.tensor(rng.standard_normal((trailing[0], 4, 3, 3, trailing[1])))
    results = []
    for fast in (True, False):
        x = torch.tensor(img, requires_grad=True)
        out = be.gather_slices(x, iy, ix, (3, 3)) if fast else \
            Backend.gather_slices(be, x, iy, ix, (3, 3))
        (g,) = torch.autograd.grad(torch.sum(out * w), [x])
        results.append((out.detach().numpy(), g.numpy()))
    (v1, g1), (v0, g0) = results
    assert v1.shape == (trailing[0], 4, 3, 3, trailing[1])
    assert np.array_equal(v1, v0) and np.allclose(g1, g0, rtol=0, atol=1e-12)
    assert np.array_equal(v0[:, 1], np.moveaxis(img[2:5, 0:3], 2, 0))
