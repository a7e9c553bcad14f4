"""Probe constraints: power, support, centring and orthogonal modes (on arrays and in a run)."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.config import ConfigError, ParameterSettings, ProbeSettings, load_settings
from daskorym.engine import Reconstruction
from daskorym.parameters import ProbeParameter, constrain_probe
from daskorym.physics.probes import gaussian_probe, to_complex, to_real
from conftest import small_settings

REFINED = ParameterSettings(optimize=True, optimizer="gd", step_size=1e-2)


def _power(v: np.ndarray) -> float:
    return float(np.sum(np.square(v, dtype=np.float64)))


def _random_modes(n_modes=3, shape=(16, 16), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = gaussian_probe(shape, 3.0, 2.0, 0.5)[0]
    modes = np.stack([base * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
                      * (0.3 + k) for k in range(n_modes)])
    return to_real(modes, np.float64)


def _radius(shape) -> np.ndarray:
    y = np.arange(shape[0]) - (shape[0] - 1) / 2.0
    x = np.arange(shape[1]) - (shape[1] - 1) / 2.0
    return np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)


def _com(v: np.ndarray) -> tuple[float, float]:
    intensity = np.sum(v.astype(np.float64) ** 2, axis=(0, 3))
    ny, nx = intensity.shape
    total = intensity.sum()
    return (float(intensity.sum(axis=1) @ np.arange(ny)) / total,
            float(intensity.sum(axis=0) @ np.arange(nx)) / total)


def test_defaults_change_nothing():
    assert ProbeSettings().power_normalize is False and ProbeSettings().center is False
    assert ProbeSettings().orthogonalize is False and ProbeSettings().support_radius_px is None
    v = _random_modes()
    p = ProbeParameter(v.copy(), REFINED)
    grad = np.random.default_rng(1).standard_normal(v.shape)
    p.apply(grad)
    assert np.array_equal(p.value, v - 1e-2 * grad)  # a plain gradient step, nothing else


def test_power_is_kept_after_each_update():
    v = _random_modes()
    p = ProbeParameter(v.copy(), REFINED, power_normalize=True)
    assert p.initial_power == pytest.approx(_power(v), rel=1e-12)
    rng = np.random.default_rng(2)
    for _ in range(3):
        p.apply(rng.standard_normal(v.shape) * np.abs(v).max())
        assert abs(_power(p.value) / _power(v) - 1) < 1e-6
    assert not np.allclose(p.value, v)  # the updates did change the probe


def test_power_in_float32():
    v = _random_modes().astype(np.float32)
    p = ProbeParameter(v.copy(), REFINED, power_normalize=True)
    p.value *= 1.7
    p.constrain()
    assert p.value.dtype == np.float32
    assert abs(_power(p.value) / _power(v) - 1) < 1e-6


@pytest.mark.parametrize("shape,radius", [((16, 16), 5.0), ((15, 18), 4.5)])
def test_support_zeroes_outside_the_centred_disk(shape, radius):
    v = _random_modes(2, shape) + 0.1  # nonzero everywhere
    before = v.copy()
    constrain_probe(v, support_radius_px=radius)
    r = _radius(shape)
    assert np.all(v[:, r > radius] == 0)
    assert np.array_equal(v[:, r <= radius], before[:, r <= radius])
    assert (r <= radius).sum() > 0 and (r > radius).sum() > 0


def test_support_radius_must_be_positive():
    with pytest.raises(ValueError, match="support_radius_px"):
        ProbeParameter(_random_modes(), REFINED, support_radius_px=0.0)
    with pytest.raises(ConfigError, match="probe.support_radius_px"):
        load_settings({"dataset": {"path": "x.h5"}, "probe": {"support_radius_px": -1}})


@pytest.mark.parametrize("shape,centre", [((32, 32), (6.0, 23.0)), ((31, 28), (20.3, 5.7))])
def test_centring_moves_the_centre_of_mass_to_the_middle(shape, centre):
    y = np.arange(shape[0])[:, None] - centre[0]
    x = np.arange(shape[1])[None, :] - centre[1]
    g = np.exp(-(y ** 2 + x ** 2) / (2 * 2.5 ** 2))
    modes = np.stack([g * np.exp(0.3j * x), 0.5 * g * y / 2.5])  # both modes shifted together
    v = to_real(modes, np.float64)
    assert np.hypot(*(np.subtract(_com(v), [(shape[0] - 1) / 2, (shape[1] - 1) / 2]))) > 5
    constrain_probe(v, center=True)
    cy, cx = _com(v)
    assert abs(cy - (shape[0] - 1) / 2) <= 0.5 and abs(cx - (shape[1] - 1) / 2) <= 0.5
    assert abs(_power(v) / _power(to_real(modes, np.float64)) - 1) < 1e-12


def test_modes_are_orthogonalised_sorted_and_keep_their_power():
    v = _random_modes(3)  # overlapping modes, the weakest first
    power = _power(v)
    p = ProbeParameter(v.copy(), REFINED, orthogonalize=True)  # constrained at construction
    modes = to_complex(p.value)
    norms = np.sqrt(np.sum(np.abs(modes) ** 2, axis=(1, 2)))
    gram = np.abs(np.einsum("iyx,jyx->ij", modes.conj(), modes))
    for i in range(3):
        for j in range(3):
            if i != j:
                assert gram[i, j] < 1e-6 * norms[i] * norms[j]
    assert np.all(np.diff(norms) <= 0) and norms[-1] > 0
    assert abs(_power(p.value) / power - 1) < 1e-6
    # the total intensity of each pixel (hence the centre of mass) is unchanged
    assert np.allclose(np.sum(p.value ** 2, axis=(0, 3)), np.sum(v ** 2, axis=(0, 3)))
    again = p.value.copy()
    p.constrain()  # already orthogonal: stays (no drift of the modes' global phases)
    assert np.allclose(p.value, again, atol=1e-10 * np.abs(again).max())


def test_fixed_probe_is_not_constrained():
    v = _random_modes()
    p = ProbeParameter(v.copy(), ParameterSettings(optimize=False), power_normalize=True,
                       support_radius_px=3.0, center=True, orthogonalize=True)
    assert np.array_equal(p.value, v)


def test_all_constraints_together_in_a_run(small_2d, tmp_path):
    radius = 6.0
    s = small_settings(small_2d, tmp_path / "run",
                       probe={"n_modes": 2, "power_normalize": True, "support_radius_px": radius,
                              "center": True, "orthogonalize": True},
                       parameters={"probe": {"optimize": True}},
                       optimization={"n_epochs": 2, "minibatch_size": 16})
    with Reconstruction(s) as rec:
        probe = rec.params["probe"]
        initial_power = probe.initial_power
        rec.run()
        losses = [h[2] for h in rec.history]
        value = probe.value.copy()
        n_updates = probe.n_updates
    assert n_updates > 0 and len(losses) > 0 and np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert np.all(np.isfinite(value))
    assert abs(_power(value) / initial_power - 1) < 1e-6
    assert np.all(value[:, _radius(value.shape[1:3]) > radius] == 0)
    cy, cx = _com(value)
    # the support cut after the centring may move the centre of mass a little further
    assert abs(cy - 7.5) <= 1.0 and abs(cx - 7.5) <= 1.0
    modes = to_complex(value.astype(np.float64))
    norms = np.sqrt(np.sum(np.abs(modes) ** 2, axis=(1, 2)))
    overlap = abs(np.vdot(modes[0], modes[1]))
    assert overlap < 1e-5 * norms[0] * norms[1] and norms[0] >= norms[1]
