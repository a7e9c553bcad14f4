"""Users extend daskorym: a new forward model and a new refinable parameter."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.engine import Reconstruction
from daskorym.losses import LSQLoss
from daskorym.models import MODELS, FarFieldPtychography, register_model
from daskorym.parameters import PARAMETERS, RefinableParameter, register_parameter
from conftest import small_settings
from model_cases import make_case


class ScaledFarField(FarFieldPtychography):
    """Far field with an unknown overall detector gain ``probe_scale`` (one number)."""

    name = "test_scaled_farfield"
    inputs = FarFieldPtychography.inputs + ("gain",)

    def forward(self, be, params, batch):
        waves = super().forward(be, params, batch)
        return waves * params["gain"][0] if "gain" in params else waves


class Gain(RefinableParameter):
    name = "gain"
    kernel_key = "gain"

    @classmethod
    def default_value(cls, problem):
        return np.array([1.0], np.float32)


@pytest.fixture(autouse=True)
def registered():
    """Register for the tests of this module only (other tests iterate the registries)."""
    register_model(ScaledFarField)
    register_parameter(Gain)
    yield
    MODELS.pop(ScaledFarField.name)
    PARAMETERS.pop(Gain.name)


def test_registered_model_and_parameter_are_found():
    assert MODELS["test_scaled_farfield"] is ScaledFarField
    assert PARAMETERS["gain"] is Gain


def test_new_parameter_gradient_matches_finite_differences():
    model, params, batch, measured, _ = make_case("farfield_ptychography")
    custom = ScaledFarField(model.geometry)
    params = dict(params, gain=np.array([1.3]))
    grads = {}
    for name in ("torch", "autograd"):
        be = get_backend(name, "float64")
        _, g = be.value_and_grad(
            lambda p: custom.tile_loss(be, p, batch, measured, LSQLoss())[0], params, ["gain"])
        grads[name] = g["gain"][0]
    be = get_backend("autograd", "float64")

    def f(x):
        p = dict(params, gain=np.array([x]))
        return float(be.evaluate(lambda q: custom.tile_loss(be, q, batch, measured, LSQLoss())[0], p))

    h = 1e-6
    fd = (f(1.3 + h) - f(1.3 - h)) / (2 * h)
    assert abs(grads["torch"] - grads["autograd"]) < 1e-9 * abs(fd)
    assert abs(grads["torch"] - fd) < 1e-6 * abs(fd)


def test_engine_refines_a_user_parameter(small_2d, tmp_path):
    """The data were made with gain 1; starting at 1 with a wrong object, the gain moves
    and the loss falls."""
    s = small_settings(small_2d, tmp_path / "out", model={"name": "test_scaled_farfield"},
                       parameters={"gain": {"optimize": True, "optimizer": "adam",
                                            "step_size": 1e-2}},
                       optimization={"n_epochs": 3})
    with Reconstruction(s) as rec:
        start = rec.params["gain"].value.copy()
        rec.run()
        assert rec.params["gain"].n_updates > 0
        assert not np.array_equal(rec.params["gain"].value, start)
        losses = [h[2] for h in rec.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
