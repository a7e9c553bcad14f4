"""The SSIM of the Adorym paper (global statistics, k1 = 0.01, k2 = 0.03, c3 = c2 / 2)."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.metrics import ssim


def _by_hand(a, r, big_l):
    """The paper's three factors, written out element by element."""
    n = a.size
    mu_a = sum(a.ravel()) / n
    mu_r = sum(r.ravel()) / n
    var_a = sum((x - mu_a) ** 2 for x in a.ravel()) / n
    var_r = sum((x - mu_r) ** 2 for x in r.ravel()) / n
    cov = sum((x - mu_a) * (y - mu_r) for x, y in zip(a.ravel(), r.ravel())) / n
    c1, c2 = (0.01 * big_l) ** 2, (0.03 * big_l) ** 2
    c3 = c2 / 2
    sa, sr = var_a ** 0.5, var_r ** 0.5
    return ((2 * mu_a * mu_r + c1) / (mu_a ** 2 + mu_r ** 2 + c1)
            * (2 * sa * sr + c2) / (var_a + var_r + c2) * (cov + c3) / (sa * sr + c3))


def test_ssim_matches_the_definition():
    rng = np.random.default_rng(0)
    r = rng.uniform(0, 2, (12, 9))
    a = r + 0.3 * rng.standard_normal(r.shape)
    assert ssim(a, r) == pytest.approx(_by_hand(a, r, r.max() - r.min()), rel=1e-12)
    assert ssim(a, r, data_range=5.0) == pytest.approx(_by_hand(a, r, 5.0), rel=1e-12)


def test_ssim_limits():
    rng = np.random.default_rng(1)
    r = rng.uniform(0, 1, (16, 16))
    assert ssim(r, r) == pytest.approx(1.0, abs=1e-14)
    assert ssim(r.max() + r.min() - r, r) < 0  # same mean and range, inverted structure
    noisy = [ssim(r + s * rng.standard_normal(r.shape), r) for s in (0.01, 0.1, 0.5)]
    assert noisy[0] > noisy[1] > noisy[2]
    # a constant offset lowers only the luminance term
    lum = (2 * r.mean() * (r.mean() + 0.2) + 1e-4) / (r.mean() ** 2 + (r.mean() + 0.2) ** 2
                                                         + 1e-4)
    assert ssim(r + 0.2, r) == pytest.approx(lum, rel=1e-3)


def test_ssim_rejects_bad_input():
    with pytest.raises(ValueError, match="same"):
        ssim(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        ssim(np.full((2, 2), np.nan), np.eye(2))
    with pytest.raises(ValueError, match="dynamic range"):
        ssim(np.eye(2), np.ones((2, 2)))
