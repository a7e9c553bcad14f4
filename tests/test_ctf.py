"""CTF phase retrieval and the linearised multi-distance model against the Fresnel model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from daskorym.backend import get_backend
from daskorym.metrics import ssim
from daskorym.models import Geometry, get_model
from daskorym.physics.ctf import ctf_initial_object, ctf_retrieve

LAM, PS, DISTS, KAPPA = 1e-10, 1e-7, (2e-3, 4e-3, 8e-3), 0.1
N = 48


def _projected_delta(phase_rad: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:N, :N]
    d = np.zeros((N, N))
    for _ in range(6):
        cy, cx, r = rng.uniform(10, 38), rng.uniform(10, 38), rng.uniform(3, 8)
        d += ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    d = gaussian_filter(d, 1.0)
    return d / d.max() * phase_rad / (2 * np.pi * PS / LAM)


def _intensities(name: str, delta: np.ndarray, sign: int = 1) -> np.ndarray:
    g = Geometry(wavelength_m=LAM, psize_m=PS, obj_shape=(N, N, 1), probe_shape=(N, N),
                 free_prop_m=DISTS, n_tiles=len(DISTS), kappa=KAPPA, sign_convention=sign)
    model = get_model(name)(g)
    batch = model.plan_batch(0, np.arange(len(DISTS)), np.zeros((len(DISTS), 2)), "box")
    probe = np.zeros((1, N, N, 2))
    probe[..., 0] = 1.0
    obj = np.stack([delta, KAPPA * delta], -1)[:, :, None, :]
    be = get_backend("autograd", "float64")
    return be.to_numpy(be.evaluate(lambda p: model.intensity(be, p, batch),
                                   {"obj": obj, "probe": probe}))


@pytest.mark.parametrize("sign", [1, -1])
def test_ctf_retrieval_of_fresnel_holograms(sign):
    delta = _projected_delta(0.1)
    inten = _intensities("multidistance_holography", delta, sign)
    got = ctf_retrieve(inten, DISTS, PS, LAM, KAPPA, alpha=1e-3, sign=sign)
    assert np.corrcoef(got.ravel(), delta.ravel())[0, 1] > 0.995
    assert ssim(got, delta) > 0.99
    assert abs((got * delta).sum() / (delta * delta).sum() - 1) < 0.05  # delta units


def test_ctf_initial_object_spreads_over_slices():
    delta = _projected_delta(0.05)
    inten = _intensities("multidistance_holography", delta)
    obj = ctf_initial_object(inten, DISTS, PS, LAM, KAPPA, (N, N, 2), alpha=1e-3)
    assert obj.shape == (N, N, 2, 2)
    assert np.allclose(obj[..., 1], KAPPA * obj[..., 0])
    assert np.corrcoef(obj[..., 0].sum(-1).ravel(), delta.ravel())[0, 1] > 0.995


def test_ctf_model_matches_fresnel_to_first_order():
    errs = []
    for phase in (0.2, 0.05, 0.0125):
        delta = _projected_delta(phase)
        f = _intensities("multidistance_holography", delta) - 1
        c = _intensities("multidistance_ctf", delta) - 1
        errs.append(np.linalg.norm(f - c) / np.linalg.norm(f))
    assert errs[1] < 0.05
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < errs[1] / 3  # first order: the error shrinks in proportion to the phase


def test_adorym_forward_algorithm_ctf(tmp_path):
    """reconstruct_ptychography(forward_algorithm='ctf', ctf_lg_kappa=...) runs the same
    reconstruction as the settings ``model.forward_algorithm = "ctf"``, ``model.kappa``."""
    import importlib.util
    import json
    from pathlib import Path

    import daskorym
    from daskorym.config import ObjectSettings
    path = Path(__file__).resolve().parents[1] / "examples" / "multidistance_holography.py"
    spec = importlib.util.spec_from_file_location("multidistance_holography", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    n, dists = 32, (0.001, 0.002, 0.004)  # within N psize^2 / lambda = 4.4 mm
    delta, _ = ex.simulate_holograms(tmp_path / "data.h5", n, dists, 0.5)
    step = float(delta.max()) / 50
    ref = daskorym.reconstruct(ex.settings_for(tmp_path / "data.h5", n, 2, tmp_path / "ref",
                                               "ctf", step))
    m0, m1 = ObjectSettings().random_means_sigmas[:2]
    api = daskorym.reconstruct_ptychography(
        fname="data.h5", save_path=str(tmp_path), output_folder="api", obj_size=(n, n, 1),
        forward_algorithm="ctf", ctf_lg_kappa=float(np.log10(ex.KAPPA)), probe_type="plane",
        n_epochs=2, minibatch_size=1, learning_rate=step, randomize_probe_pos=True,
        random_guess_means_sigmas=(m0, m1, 0.0, 0.0), progress=False)
    written = json.loads((tmp_path / "api" / "settings.json").read_text())
    assert written["model"]["forward_algorithm"] == "ctf"
    rel = np.linalg.norm(api.object - ref.object) / np.linalg.norm(ref.object)
    print(f"forward_algorithm='ctf' via the Adorym API vs settings: rel. diff {rel:.2e}")
    assert rel < 1e-5
