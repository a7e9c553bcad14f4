"""Probe initialisation, probe modes, losses and regularizers."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.losses import LSQLoss, PoissonLoss, get_loss
from daskorym.physics import probes
from daskorym.regularizers import (L1Regularizer, ReweightedL1Regularizer, SupportMask,
                                   TVRegularizer)


def test_gaussian_probe_peak_and_width():
    p = probes.gaussian_probe((33, 33), mag_sigma_px=4.0, phase_sigma_px=3.0, phase_max_rad=0.5)
    assert p.shape == (1, 33, 33)
    assert np.isclose(abs(p[0, 16, 16]), 1.0) and np.isclose(np.angle(p[0, 16, 16]), 0.5)
    assert np.isclose(abs(p[0, 16, 20]), np.exp(-0.5))


def test_ifft_probe_reproduces_far_field_magnitude():
    true = probes.gaussian_probe((16, 16), 3.0)[0]
    mag = np.abs(np.fft.fftshift(np.fft.fft2(true)))
    guess = probes.ifft_probe(mag)[0]
    assert np.allclose(np.abs(np.fft.fftshift(np.fft.fft2(guess))), mag, atol=1e-9)


def test_aperture_probe_rejects_beamstop_larger_than_aperture():
    with pytest.raises(ValueError, match="beamstop"):
        probes.aperture_defocus_probe((16, 16), 3, 4, 1e-6, 1e-8, 1e-10)


def test_aperture_defocus_keeps_power():
    a = probes.aperture_defocus_probe((32, 32), 8, 2, 0.0, 1e-8, 1e-10)
    b = probes.aperture_defocus_probe((32, 32), 8, 2, 2e-6, 1e-8, 1e-10)
    assert np.isclose(np.sum(abs(a) ** 2), np.sum(abs(b) ** 2))
    assert not np.allclose(a, b)


def test_modes_are_orthogonal_and_keep_power():
    base = probes.gaussian_probe((20, 20), 4.0)
    modes = probes.make_modes(base, 3, seed=1)
    flat = modes.reshape(3, -1)
    gram = flat.conj() @ flat.T
    off = gram - np.diag(np.diag(gram))
    assert np.max(np.abs(off)) < 1e-10 * np.max(np.abs(gram))
    power = np.sum(np.abs(modes) ** 2, axis=(1, 2))
    assert np.isclose(power.sum(), np.sum(abs(base) ** 2))
    assert np.all(np.diff(power) < 0)


def test_rescale_to_data_matches_parseval():
    p = probes.gaussian_probe((16, 16), 3.0)
    scaled = probes.rescale_to_data(p, mean_pattern_sum=1e6, n_pixels=256)
    assert np.isclose(np.sum(np.abs(np.fft.fft2(scaled[0])) ** 2), 1e6)


@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_losses_have_their_minimum_at_the_data(backend):
    be = get_backend(backend, "float64")
    rng = np.random.default_rng(0)
    meas = rng.uniform(0.5, 2.0, (2, 4, 4))
    for loss in (LSQLoss(), PoissonLoss(multiplier=3.0)):
        at = float(loss(be, be.asarray(meas ** 2), be.asarray(meas)))
        off = float(loss(be, be.asarray((meas * 1.1) ** 2), be.asarray(meas)))
        assert off > at
    assert float(LSQLoss()(be, be.asarray(meas ** 2), be.asarray(meas))) < 1e-10
    mask = np.zeros((4, 4))
    assert float(LSQLoss()(be, be.asarray(meas), be.asarray(meas * 0), be.asarray(mask))) == 0


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        get_loss("l2")


@pytest.mark.parametrize("unknown_type", ["delta_beta", "real_imag"])
def test_regularizers_agree_across_backends(unknown_type):
    rng = np.random.default_rng(2)
    obj = rng.standard_normal((5, 6, 4, 2))
    rl1 = ReweightedL1Regularizer(alpha_d=0.3, alpha_b=0.2)
    rl1.update_weight(obj)
    regs = [L1Regularizer(alpha_d=1.0, alpha_b=0.5), TVRegularizer(gamma=2.0), rl1]
    for reg in regs:
        out = {}
        for name in ("torch", "autograd"):
            be = get_backend(name, "float64")
            out[name] = be.value_and_grad(lambda p: reg(be, p["obj"], unknown_type), {"obj": obj},
                                          ["obj"])
        assert np.isclose(out["torch"][0], out["autograd"][0])
        assert np.allclose(out["torch"][1]["obj"], out["autograd"][1]["obj"])


def test_tv_value_by_hand():
    obj = np.zeros((1, 3, 1, 2))
    obj[0, :, 0, 0] = [0.0, 1.0, 3.0]
    be = get_backend("autograd", "float64")
    # |1-0| + |3-1| = 3 over N = 3 voxels
    assert np.isclose(float(TVRegularizer(gamma=1.0)(be, obj)), 1.0)


def test_support_shrink_wrap():
    obj = np.zeros((1, 20, 20, 2))
    obj[0, 8:12, 8:12, 0] = 1.0
    sup = SupportMask(np.ones((1, 20, 20), bool), threshold=0.1, sigma_px=1.0)
    sup.shrink_wrap(obj)
    assert sup.mask[0, 10, 10] and not sup.mask[0, 0, 0]
    obj[0, 0, 0] = (5.0, 5.0)
    sup.apply(obj)
    assert np.all(obj[0, 0, 0] == 0)


def test_support_shrink_wrap_real_imag():
    """real/imag objects: the support follows the contrast against the vacuum (1, 0), so a
    transmission of ~1 outside (channel 0 large everywhere) does not keep the whole field."""
    obj = np.zeros((1, 20, 20, 2))
    obj[..., 0] = 1.0
    obj[0, 8:12, 8:12] = (0.6, 0.3)
    sup = SupportMask(np.ones((1, 20, 20), bool), threshold=0.1, sigma_px=1.0)
    sup.shrink_wrap(obj, vacuum=(1.0, 0.0))
    assert sup.mask[0, 10, 10] and not sup.mask[0, 0, 0] and sup.mask.sum() < 100
    sup.shrink_wrap(obj)  # against (0, 0), as before the fix: everything is "inside"
    assert sup.mask.all()
