"""Adorym's refinement switches in ``reconstruct_ptychography`` become parameter blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import daskorym
from daskorym.api import REFINE_SWITCHES, VALID, adorym_to_settings
from daskorym.config import ConfigError, Settings, load_settings
from daskorym.optim import AdamOptimizer, GDOptimizer

# switch, parameter, stem of the rate/optimizer names, default optimizer, default step here
# (Adorym's default rate converted to the parameter's unit), factor Adorym unit -> ours
CASES = [
    ("optimize_probe_defocusing", "probe_defocus", "probe_defocusing", "adam", 1e-8, 1e-3),
    ("optimize_probe_pos_offset", "probe_pos_offset", "probe_pos_offset", "gd", 1e-2, 1.0),
    ("optimize_prj_pos_offset", "prj_pos_offset", "prj_pos_offset", "gd", 1e-2, 1.0),
    ("optimize_slice_pos", "slice_pos", "slice_pos", "adam", 1e-6, 1e-2),
    ("optimize_free_prop", "free_prop", "free_prop", "adam", 1e-4, 1e-2),
    ("optimize_prj_affine", "prj_affine", "prj_affine", "adam", 1e-3, 1.0),
    ("optimize_tilt", "tilt", "tilt", "adam", 1e-3, 1.0),
    ("optimize_ctf_lg_kappa", "ctf_lg_kappa", "ctf_lg_kappa", "adam", 1e-3, 1.0),
]


def _settings(tmp_path, **params) -> tuple[Settings, object]:
    s, inputs = adorym_to_settings({"fname": "data.h5", "obj_size": (16, 16, 1),
                                    "save_path": str(tmp_path), "output_folder": "out",
                                    **params})
    return load_settings(s, "reconstruct_ptychography"), inputs


def test_every_switch_is_covered():
    assert {c[0] for c in CASES} == set(REFINE_SWITCHES)
    for switch, _, stem, *_ in CASES:
        assert {switch, f"{stem}_learning_rate", f"optimizer_{stem}"} <= set(VALID)


@pytest.mark.parametrize("switch,name,stem,optimizer,step,factor", CASES)
def test_switch_makes_a_parameter_block(tmp_path, switch, name, stem, optimizer, step, factor):
    settings, _ = _settings(tmp_path, **{switch: True})
    ps = settings.parameters[name]
    assert ps.optimize is True and ps.optimizer == optimizer
    assert ps.step_size == pytest.approx(step, rel=1e-12)
    assert ps.start_batch == 0
    # a learning rate (Adorym's unit) and an optimizer by name, and a delayed start
    other = "adam" if optimizer == "gd" else "gd"
    settings, _ = _settings(tmp_path, **{switch: True, f"{stem}_learning_rate": 0.5,
                                         f"optimizer_{stem}": other,
                                         "other_params_update_delay": 3})
    ps = settings.parameters[name]
    assert ps.optimize is True and ps.optimizer == other and ps.start_batch == 3
    assert ps.step_size == pytest.approx(0.5 * factor, rel=1e-12)


@pytest.mark.parametrize("switch,name,stem,optimizer,step,factor", CASES)
def test_no_block_without_the_switch(tmp_path, switch, name, stem, optimizer, step, factor):
    settings, inputs = _settings(tmp_path, **{switch: False, f"{stem}_learning_rate": 0.5,
                                              f"optimizer_{stem}": AdamOptimizer()})
    assert name not in settings.parameters and name not in inputs.optimizers
    assert set(settings.parameters) == {"object", "probe", "probe_pos"}


def test_prebuilt_optimizer_is_passed_on(tmp_path):
    opt = GDOptimizer(step_size=0.25)
    settings, inputs = _settings(tmp_path, optimize_tilt=True, optimizer_tilt=opt,
                                 optimize_prj_pos_offset=True)
    assert inputs.optimizers["tilt"] is opt and settings.parameters["tilt"].optimize
    assert "prj_pos_offset" not in inputs.optimizers


def test_initial_tilt_is_transposed(tmp_path):
    tilt = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]])
    settings, _ = _settings(tmp_path, optimize_tilt=True, initial_tilt=tilt)
    ps = settings.parameters["tilt"]
    assert ps.optimize is True
    assert np.array_equal(np.asarray(ps.initial), tilt.T) and np.shape(ps.initial) == (4, 3)
    # without the switch the tilts are applied, not refined
    settings, _ = _settings(tmp_path, initial_tilt=tilt.tolist())
    ps = settings.parameters["tilt"]
    assert ps.optimize is False and np.array_equal(np.asarray(ps.initial), tilt.T)


def test_initial_tilt_of_the_wrong_shape_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"initial_tilt must have shape \[3, n_theta\]"):
        _settings(tmp_path, optimize_tilt=True, initial_tilt=np.zeros((4, 3)))


def test_ctf_lg_kappa_sets_kappa_only_when_asked(tmp_path):
    settings, _ = _settings(tmp_path)
    assert settings.model.kappa is None
    settings, _ = _settings(tmp_path, optimize_ctf_lg_kappa=True)
    assert settings.model.kappa == pytest.approx(10 ** 1.7)
    settings, _ = _settings(tmp_path, ctf_lg_kappa=2.0)
    assert settings.model.kappa == pytest.approx(100.0)
    assert "ctf_lg_kappa" not in settings.parameters


def test_misspelt_or_bad_switch_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown parameter 'optimise_tilt'.*'optimize_tilt'"):
        _settings(tmp_path, optimise_tilt=True)
    with pytest.raises(ConfigError, match="'optimize_slice_pos'"):
        _settings(tmp_path, optimize_slice_position=True)
    with pytest.raises(ConfigError, match="optimize_free_prop must be True or False"):
        _settings(tmp_path, optimize_free_prop="yes")
    with pytest.raises(ConfigError, match="slice_pos_learning_rate must be a number"):
        _settings(tmp_path, optimize_slice_pos=True, slice_pos_learning_rate="fast")
    with pytest.raises(ConfigError, match="ctf_lg_kappa must be a number"):
        _settings(tmp_path, ctf_lg_kappa="high")
    settings, _ = _settings(tmp_path, optimize_tilt=None)  # None: off, as the default
    assert "tilt" not in settings.parameters


def test_switches_reach_the_engine(small_2d, tmp_path):
    result = daskorym.reconstruct_ptychography(
        fname=str(small_2d), obj_size=(48, 48, 1), n_epochs=1, minibatch_size=16,
        unknown_type="real_imag", learning_rate=1e-2, save_path=str(tmp_path),
        output_folder="out", progress=False, optimize_probe_pos_offset=True,
        optimize_probe_defocusing=True, probe_defocusing_learning_rate=1e-3)
    assert {"probe_pos_offset", "probe_defocus"} <= set(result.parameters)
    assert np.isfinite(result.final_loss)
    written = json.loads((tmp_path / "out" / "settings.json").read_text())["parameters"]
    assert written["probe_defocus"]["optimize"] and written["probe_pos_offset"]["optimizer"] == "gd"
    assert written["probe_defocus"]["step_size"] == pytest.approx(1e-6)
