"""Gradients of every model w.r.t. every differentiable input.

torch and autograd must agree with each other and with central finite
differences (float64), for both object representations and both losses.
"""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.losses import LSQLoss, PoissonLoss
from daskorym.models import MODELS
from model_cases import make_case

CASES = [(name, inp) for name in sorted(MODELS) for inp in MODELS[name].inputs]
# the far-field case is also run with the other object representation
CASES += [("farfield_ptychography:real_imag", inp) for inp in ("obj", "probe", "pos_px")]
STEP = {"obj": 1e-6, "probe": 1e-6, "pos_px": 1e-5, "free_prop_m": 1e-9, "slice_pos_m": 1e-10,
        "pos_offset_px": 1e-5, "prj_offset_px": 1e-5, "tilt_rad": 1e-6, "lg_kappa": 1e-6,
        "prj_affine": 1e-6}


def _setup(label: str):
    name, _, ut = label.partition(":")
    return make_case(name, unknown_type=ut or "delta_beta", experiment=True)


@pytest.mark.parametrize("loss", [LSQLoss(), PoissonLoss()], ids=["lsq", "poisson"])
@pytest.mark.parametrize("label,wrt", CASES)
def test_gradient_matches_finite_differences(label, wrt, loss):
    model, params, batch, measured, _ = _setup(label)
    grads = {}
    for name in ("torch", "autograd"):
        be = get_backend(name, "float64")
        value, g = be.value_and_grad(
            lambda p: model.tile_loss(be, p, batch, measured, loss)[0], params, [wrt])
        grads[name] = g[wrt]
        assert np.isfinite(value)
    gt, ga = grads["torch"], grads["autograd"]
    assert np.linalg.norm(gt - ga) <= 1e-9 * np.linalg.norm(gt), "torch and autograd differ"
    assert np.linalg.norm(gt) > 0, f"gradient w.r.t. {wrt} is identically zero"

    # finite differences along a random direction
    be = get_backend("autograd", "float64")
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(params[wrt].shape)
    h = STEP[wrt] if wrt != "probe_defocus_m" else 1e-5 * float(params[wrt][0])
    if wrt == "obj" and model.geometry.unknown_type == "delta_beta":
        h = 3e-4 / model.geometry.modulation.k1  # a phase step of 0.3 mrad

    def f(x):
        p = dict(params)
        p[wrt] = x
        return float(be.evaluate(lambda q: model.tile_loss(be, q, batch, measured, loss)[0], p))

    x0 = params[wrt]
    # fourth-order central difference (error O(h^4))
    fd = (8 * (f(x0 + h * direction) - f(x0 - h * direction))
          - (f(x0 + 2 * h * direction) - f(x0 - 2 * h * direction))) / (12 * h)
    ad = float(np.sum(gt * direction))
    rel = abs(fd - ad) / max(abs(fd), abs(ad))
    print(f"{label} d/d{wrt} ({loss.name}): AD {ad:.10e} FD {fd:.10e} rel {rel:.2e}")
    assert rel < 1e-6


def test_every_refinable_parameter_is_checked():
    """The registry of refinable parameters drives the cases above: each parameter's kernel
    input is an input of some model, so its gradient is checked against finite differences."""
    from daskorym.parameters import PARAMETERS
    checked = {inp for _, inp in CASES}
    missing = {name: cls.kernel_key for name, cls in PARAMETERS.items()
               if cls.kernel_key not in checked}
    assert not missing, f"parameters whose kernel input no gradient case covers: {missing}"
    assert len(PARAMETERS) >= 11
