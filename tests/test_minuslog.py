"""Tomography from minus-logged projections (``dataset.is_minus_logged``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.losses import LSQLoss
from model_cases import make_case

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tomography_minuslog.py"


def _example():
    spec = importlib.util.spec_from_file_location("tomography_minuslog", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prediction_is_minus_log_of_projection_intensity():
    """pred = -log |T|^2 of the projection approximation = 2 k1 sum_z beta."""
    model, params, batch, _, _ = make_case("minuslog_tomography")
    be = get_backend("autograd", "float64")
    pred = be.to_numpy(be.evaluate(lambda p: model.intensity(be, p, batch), params))
    obj = model.object_patches(be, params, batch)
    k1 = model.geometry.modulation.k1
    t = np.exp(-k1 * obj[..., 1].sum(-1)) * np.exp(-1j * k1 * obj[..., 0].sum(-1))
    assert np.allclose(pred, -np.log(np.abs(t) ** 2), rtol=1e-12)


@pytest.mark.parametrize("wrt", ["obj", "lg_kappa"])
def test_minuslog_gradient(wrt):
    model, params, batch, measured, _ = make_case("minuslog_tomography", experiment=True)
    measured = measured / measured.max()
    be = get_backend("autograd", "float64")
    loss = lambda p: model.tile_loss(be, p, batch, measured, LSQLoss())[0]  # noqa: E731
    _, g = be.value_and_grad(loss, params, [wrt])
    rng = np.random.default_rng(3)
    v = rng.standard_normal(params[wrt].shape)
    h = 1e-8 if wrt == "obj" else 1e-6

    def f(x):
        return float(be.evaluate(loss, dict(params, **{wrt: x})))

    fd = (f(params[wrt] + h * v) - f(params[wrt] - h * v)) / (2 * h)
    assert np.isclose(np.sum(g[wrt] * v), fd, rtol=1e-6)


def test_small_tomography_reconstructs(tmp_path):
    import daskorym
    ex = _example()
    n = 16
    beta, _ = ex.simulate_minuslog(tmp_path / "data.h5", n, 24)
    result = daskorym.reconstruct(ex.settings_for(tmp_path / "data.h5", n, 20, tmp_path / "recon",
                                                  step=float(beta.max()) / 20))
    rec = np.asarray(result.object)[..., 1]
    pear = np.corrcoef(rec[n // 2].ravel(), beta[n // 2].ravel())[0, 1]
    assert pear > 0.85, pear


def test_adorym_is_minus_logged_switch(tmp_path):
    """reconstruct_ptychography(is_minus_logged=True) runs the same reconstruction as the
    settings ``dataset.is_minus_logged`` (Adorym's switch, with pure projection)."""
    import json
    import daskorym
    from daskorym.config import ObjectSettings
    ex = _example()
    n = 12
    beta, _ = ex.simulate_minuslog(tmp_path / "data.h5", n, 8)
    step = float(beta.max()) / 20
    m0, m1 = ObjectSettings().random_means_sigmas[:2]  # "constant": the means, no spread
    ref = daskorym.reconstruct(ex.settings_for(tmp_path / "data.h5", n, 2, tmp_path / "ref",
                                               step=step))
    api = daskorym.reconstruct_ptychography(
        fname="data.h5", save_path=str(tmp_path), output_folder="api", obj_size=(n, n, n),
        is_minus_logged=True, n_epochs=2, minibatch_size=1, learning_rate=step,
        random_guess_means_sigmas=(m0, m1, 0.0, 0.0), randomize_probe_pos=True,
        non_negativity=True, progress=False, theta_st=0.0, theta_end=float(np.pi))
    written = json.loads((tmp_path / "api" / "settings.json").read_text())
    assert written["dataset"]["is_minus_logged"] is True
    rel = np.linalg.norm(api.object - ref.object) / np.linalg.norm(ref.object)
    print(f"is_minus_logged via the Adorym API vs settings: rel. diff {rel:.2e}")
    assert rel < 1e-5
