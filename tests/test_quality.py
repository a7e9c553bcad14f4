"""Reconstructions of simulated data reach a set quality (issue 3's thresholds)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import daskorym
from daskorym.engine import InMemoryInputs, Reconstruction
from daskorym.io import open_dataset, write_dataset
from daskorym.metrics import illuminated_region, pearson, scaled_complex_error, to_complex
from daskorym.simulate import simulate


@pytest.fixture(scope="module")
def farfield_2d(tmp_path_factory):
    """256x256 object (magnitude and phase from two natural images), 64x64 Gaussian probe,
    529 positions (step 9 px: ~60 % linear overlap of the probe's 22 px FWHM), Poisson noise."""
    path = tmp_path_factory.mktemp("ff2d") / "data.h5"
    simulate("farfield_ptychography", path, progress=False, obj_shape=(256, 256),
             probe_shape=(64, 64), step_px=9, unknown_type="real_imag", noise="poisson",
             phase_max_rad=1.0, absorption=0.3)
    return path


@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_2d_farfield_with_probe_refinement(farfield_2d, tmp_path, backend):
    with h5py.File(str(farfield_2d).replace(".h5", "_truth.h5")) as f:
        truth = to_complex(f["obj"][:, :, 0])
        positions = f["probe_pos_px"][:]
    region = illuminated_region(positions, (64, 64), truth.shape)
    flat_error = scaled_complex_error(np.ones_like(truth), truth, region)
    settings = {
        "dataset": {"path": str(farfield_2d)},
        "model": {"unknown_type": "real_imag"}, "object": {"shape": [256, 256, 1]},
        # the probe starts from a Gaussian guess and is refined after 5 epochs (85 batches)
        "parameters": {"probe": {"optimize": True, "start_batch": 85}},
        "optimization": {"n_epochs": 100, "minibatch_size": 32},
        "execution": {"backend": backend},
        "output": {"folder": str(tmp_path / "out"), "progress": False, "store_checkpoint": False},
    }
    with Reconstruction(settings) as rec:
        for epoch in range(1, 101):
            rec.run(1)
            error = scaled_complex_error(to_complex(rec.object[:, :, 0]), truth, region)
            if epoch % 5 == 0 and error <= flat_error / 3:
                break
    print(f"[{backend}] epoch {epoch}: complex error {error:.4f}, flat object {flat_error:.4f}, "
          f"ratio {error / flat_error:.3f}")
    assert error <= flat_error / 3


def test_3d_multislice_ptychotomography(tmp_path):
    """64^3 phantom, 16 angles over 180 degrees, 49 positions of 32x32 per angle, known probe.

    With 16 angles the tomography is undersampled (streaks); a TV term (gamma = 3e3) and
    Adam with step 1e-4 reach the target in 10 epochs.
    """
    path = tmp_path / "tomo.h5"
    simulate("farfield_ptychography", path, progress=False, obj_shape=(64, 64, 64),
             probe_shape=(32, 32), step_px=6, n_theta=16, theta_range_rad=(0.0, np.pi))
    with h5py.File(tmp_path / "tomo_truth.h5") as f:
        truth = f["obj"][..., 0]
        probe = f["probe"][0, ..., 0] + 1j * f["probe"][0, ..., 1]
    settings = {
        "dataset": {"path": str(path)}, "object": {"shape": [64, 64, 64], "non_negativity": True},
        "parameters": {"object": {"optimize": True, "step_size": 1e-4}},
        "regularizers": {"gamma": 3e3},
        "optimization": {"n_epochs": 10, "minibatch_size": 49},
        "output": {"folder": str(tmp_path / "out"), "progress": False, "store_checkpoint": False},
    }
    with Reconstruction(settings, InMemoryInputs(initial_probe=probe)) as rec:
        assert rec.problem.n_theta == 16 and rec.problem.n_tiles == 49
        result = rec.run()
    r = pearson(result.object[..., 0], truth)
    print(f"3D multislice, 10 epochs: Pearson correlation of delta {r:.4f}")
    assert r >= 0.9


def test_supplement_code_example(tmp_path):
    """The fly-scan example of the supplement, through reconstruct_ptychography, small sizes."""
    sim = tmp_path / "sim.h5"
    simulate("farfield_ptychography", sim, progress=False, obj_shape=(64, 64), probe_shape=(32, 32),
             step_px=6, unknown_type="real_imag", energy_ev=8801.121930115722,
             psize_cm=1.32789376566526e-06, n_probe_modes=2)
    with open_dataset(sim) as ds:  # the example's data are intensities
        write_dataset(tmp_path / "data.h5", ds.read_angle(0)[None] ** 2,
                      probe_pos_px=ds.probe_pos_px, energy_ev=ds.energy_ev, psize_cm=ds.psize_cm,
                      free_prop_cm="inf", theta=np.zeros(1))
    output_folder = str(tmp_path / "recon")
    distribution_mode = None
    optimizer_obj = daskorym.AdamOptimizer("obj", output_folder=output_folder,
                                           distribution_mode=distribution_mode,
                                           options_dict={"step_size": 1e-3})
    optimizer_probe = daskorym.AdamOptimizer("probe", output_folder=output_folder,
                                             distribution_mode=distribution_mode,
                                             options_dict={"step_size": 1e-3, "eps": 1e-7})
    optimizer_all_probe_pos = daskorym.AdamOptimizer("probe_pos_correction",
                                                     output_folder=output_folder,
                                                     distribution_mode=distribution_mode,
                                                     options_dict={"step_size": 1e-2})
    params_ptych = {"fname": "data.h5",
                    "theta_st": 0,
                    "theta_end": 0,
                    "n_epochs": 6,
                    "obj_size": (64, 64, 1),
                    "two_d_mode": True,
                    "energy_ev": 8801.121930115722,
                    "psize_cm": 1.32789376566526e-06,
                    "minibatch_size": 35,
                    "output_folder": output_folder,
                    "cpu_only": False,
                    "save_path": str(tmp_path),
                    "initial_guess": None,
                    "random_guess_means_sigmas": (1., 0., 0.001, 0.002),
                    "probe_type": "aperture_defocus",
                    "forward_model": daskorym.PtychographyModel,
                    "n_probe_modes": 5,
                    "aperture_radius": 10,
                    "beamstop_radius": 5,
                    "probe_defocus_cm": 0.0069,
                    "rescale_probe_intensity": True,
                    "free_prop_cm": "inf",
                    "backend": "pytorch",
                    "raw_data_type": "intensity",
                    "optimizer": optimizer_obj,
                    "optimize_probe": True,
                    "optimizer_probe": optimizer_probe,
                    "optimize_all_probe_pos": True,
                    "optimizer_all_probe_pos": optimizer_all_probe_pos,
                    "save_history": True,
                    "unknown_type": "real_imag",
                    "loss_function_type": "lsq",
                    "progress": False}
    result = daskorym.reconstruct_ptychography(**params_ptych)
    losses = [h[2] for h in result.loss_history]
    assert result.object.shape == (64, 64, 1, 2) and result.probe.shape == (5, 32, 32, 2)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert "probe_pos" in result.parameters
    for name in ("obj_mag_ds_1.tiff", "obj_phase_ds_1.tiff", "probe_mag_ds_1.tiff", "loss.csv"):
        assert (tmp_path / "recon" / name).exists()
