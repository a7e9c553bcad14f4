"""The local engine: resume, output safety, optimizers, API, CLI, notebook use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import daskorym
from daskorym.cli import main
from daskorym.config import ConfigError, load_settings
from daskorym.engine import Reconstruction
from daskorym.execution import make_reconstruction
from daskorym.outputs import OutputExistsError
from conftest import small_settings


def _run(settings, n=None):
    with Reconstruction(settings) as rec:
        rec.run(n)
        return rec.object.copy(), [h[2] for h in rec.history]


@pytest.mark.parametrize("mode", ["dp", "do"])
def test_notebook_steps_equal_one_run(small_3d, tmp_path, mode):
    s1 = small_settings(small_3d, tmp_path / "a", execution={"mode": mode})
    whole, loss_whole = _run(s1)
    with Reconstruction(small_settings(small_3d, tmp_path / "b", execution={"mode": mode})) as rec:
        rec.run(1)
        rec.run(1)
        assert np.array_equal(rec.object, whole)
        assert [h[2] for h in rec.history] == loss_whole


@pytest.mark.parametrize("mode", ["dp", "do"])
def test_resume_in_process_is_bit_identical(small_3d, tmp_path, mode):
    n_ckpt = 3  # falls in the middle of an angle in 'do' mode (4 batches per angle)
    full, loss_full = _run(small_settings(small_3d, tmp_path / "full",
                                          execution={"mode": mode},
                                          optimization={"n_epochs": 3, "minibatch_size": 4}))
    part = small_settings(small_3d, tmp_path / "part", execution={"mode": mode},
                          optimization={"n_epochs": 3, "minibatch_size": 4},
                          output={"n_batch_per_checkpoint": n_ckpt})
    with Reconstruction(part) as rec:
        rec.run(1)
        stopped_at = rec.i_batch
    part["output"]["resume"] = True
    resumed, _ = _run(part)
    assert stopped_at % n_ckpt != 0  # the last checkpoint lies before the stop
    assert np.array_equal(resumed, full)
    csv = (tmp_path / "part" / "loss.csv").read_text().strip().splitlines()
    assert len(csv) - 1 == len(loss_full)


@pytest.mark.parametrize("case,mode", [("small_2d", "dp"), ("small_3d", "do")])
def test_killed_process_resumes_to_the_same_result(case, mode, tmp_path, request):
    """SIGKILL mid-run, then resume: the same object as an uninterrupted run.

    In 'do' mode checkpoints fall inside an angle, so the accumulated gradient
    is part of what is saved and restored.
    """
    data = request.getfixturevalue(case)
    common = dict(optimization={"n_epochs": 4, "minibatch_size": 8 if mode == "dp" else 4},
                  output={"n_batch_per_checkpoint": 2 if mode == "dp" else 3},
                  execution={"mode": mode})
    full, _ = _run(small_settings(data, tmp_path / "full", **common))
    settings = small_settings(data, tmp_path / "killed", **common)
    script = ("import json, sys; from daskorym.engine import Reconstruction\n"
              f"Reconstruction(json.loads({repr(__import__('json').dumps(settings))})).run()\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    csv = tmp_path / "killed" / "loss.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) > 25:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    settings["output"]["resume"] = True
    resumed, _ = _run(settings)
    assert np.array_equal(resumed, full)


def test_output_folder_of_another_run_is_never_overwritten(small_2d, tmp_path):
    s = small_settings(small_2d, tmp_path / "out", optimization={"n_epochs": 1})
    _run(s)
    before = (tmp_path / "out" / "settings.json").read_bytes()
    with pytest.raises(OutputExistsError, match=str(tmp_path / "out")):
        Reconstruction(s)
    assert (tmp_path / "out" / "settings.json").read_bytes() == before


def test_outputs_are_written(small_2d, tmp_path):
    import tifffile
    import zarr
    s = small_settings(small_2d, tmp_path / "out", optimization={"n_epochs": 1},
                       parameters={"probe": {"optimize": True}})
    obj, _ = _run(s)
    out = tmp_path / "out"
    for name in ("object.zarr", "obj_mag_ds_1.tiff", "obj_phase_ds_1.tiff", "probe_mag_ds_1.tiff",
                 "probe_phase_ds_1.tiff", "loss.csv", "settings.json", "preview_object.png",
                 "preview_loss.png", "checkpoint"):
        assert (out / name).exists(), name
    assert np.array_equal(zarr.open_array(str(out / "object.zarr"), mode="r")[...], obj)
    mag = tifffile.imread(out / "obj_mag_ds_1.tiff")
    assert np.allclose(mag.reshape(obj.shape[:3]), np.hypot(obj[..., 0], obj[..., 1]), rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam", "cg", "scipy"])
def test_each_optimizer_reduces_the_loss(small_2d, tmp_path, optimizer):
    step = {"gd": 1.0, "momentum": 0.1, "adam": None, "cg": 1e-2, "scipy": None}[optimizer]
    obj_settings = {"optimize": True, "optimizer": optimizer}
    if step:
        obj_settings["step_size"] = step
    if optimizer == "scipy":
        obj_settings["options"] = {"maxiter": 3}
    s = small_settings(small_2d, tmp_path / optimizer, parameters={"object": obj_settings},
                       optimization={"n_epochs": 3, "minibatch_size": 16, "randomize_probe_pos": False})
    s["output"]["store_checkpoint"] = False
    with Reconstruction(s) as rec:
        first = None
        rec.run(3)
        losses = [h[2] for h in rec.history]
        n = len(losses) // 3
        first, last = np.mean(losses[:n]), np.mean(losses[-n:])
    print(f"{optimizer}: mean batch loss epoch 1 {first:.4g} -> epoch 3 {last:.4g}")
    assert last < 0.9 * first


def _epoch_losses(settings, n_epochs):
    with Reconstruction(settings) as rec:
        rec.run(n_epochs)
        per = np.zeros(n_epochs)
        for h in rec.history:
            per[h[0]] += h[2]
        return per, rec.params["object"].settings.step_size


def test_default_object_step_suits_a_thick_object(small_3d, tmp_path):
    """The default object step is 0.03 rad of phase per update summed along the beam (per
    voxel / Lz): on 16 slices the loss falls every epoch; the step per voxel that was the
    default before (Lz times larger) sends it up 20-fold in the second epoch."""
    common = dict(optimization={"n_epochs": 10, "minibatch_size": 16},
                  output={"store_checkpoint": False})
    per, step = _epoch_losses(small_settings(small_3d, tmp_path / "default", **common), 10)
    print("default step", step, "epoch losses", np.round(per, 4))
    assert np.all(np.diff(per) < 0) and per[-1] < 0.1 * per[0]
    before = small_settings(small_3d, tmp_path / "before", **common,
                            parameters={"object": {"optimize": True, "step_size": 16 * step}})
    per_before, _ = _epoch_losses(before, 3)
    print("Lz times that step", per_before)
    assert per_before[1] > 5 * per_before[0]


def test_unknown_settings_suggest_the_closest_name(small_2d, tmp_path):
    s = small_settings(small_2d, tmp_path / "x")
    s["optimization"]["minibach_size"] = 3
    with pytest.raises(ConfigError, match="did you mean 'minibatch_size'"):
        load_settings(s)
    with pytest.raises(ConfigError, match="did you mean 'minibatch_size'"):
        daskorym.reconstruct_ptychography(fname=str(small_2d), obj_size=(48, 48, 1),
                                          minibatchsize=5)
    s = small_settings(small_2d, tmp_path / "y", parameters={"probe_position": {"optimize": True}})
    with pytest.raises(ConfigError, match="did you mean 'probe_pos'"):
        load_settings(s)


def test_cli_reconstruct_resume_and_refusal(small_2d, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
[dataset]
path = "{small_2d}"
[model]
unknown_type = "real_imag"
[object]
shape = [48, 48, 1]
[optimization]
n_epochs = 2
minibatch_size = 16
[output]
folder = "out"
progress = false
""")
    runner = CliRunner()
    r = runner.invoke(main, ["reconstruct", str(cfg), "--set", "optimization.n_epochs=1"])
    assert r.exit_code == 0, r.output
    assert "object.zarr" in r.output and (tmp_path / "out" / "object.zarr").exists()
    r = runner.invoke(main, ["reconstruct", str(cfg)])
    assert r.exit_code == 2 and str(tmp_path / "out") in r.output and "resume" in r.output
    r = runner.invoke(main, ["reconstruct", str(cfg), "--resume"])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "out" / "loss.csv").read_text().strip().splitlines()
    with daskorym.open_dataset(small_2d) as ds:
        per_epoch = -(-ds.n_tiles // 16)
    assert len(rows) - 1 == 2 * per_epoch  # epoch 1, then epoch 2 after --resume
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset\npath = 1")
    r = runner.invoke(main, ["reconstruct", str(bad)])
    assert r.exit_code == 2 and "TOML syntax error" in r.output and "bad.toml" in r.output


@pytest.mark.parametrize("probe_type", ["ifft", "aperture_defocus", "plane", "gaussian"])
def test_probe_initialisations_run(small_2d, tmp_path, probe_type):
    probe = {"type": probe_type}
    if probe_type == "aperture_defocus":
        probe.update(aperture_radius_px=5, beamstop_radius_px=1, defocus_cm=1e-5)
    s = small_settings(small_2d, tmp_path / probe_type, probe=probe,
                       optimization={"n_epochs": 2})
    obj, losses = _run(s)
    assert np.all(np.isfinite(obj)) and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_ifft_probe_streams_the_mean_pattern(small_2d, tmp_path, monkeypatch):
    """'ifft' reads the data angle by angle (never the whole array at once)."""
    from daskorym.io import Dataset
    calls = []
    original = Dataset.iter_angles

    def spy(self):
        for item in original(self):
            calls.append(item[1].shape)
            yield item
    monkeypatch.setattr(Dataset, "iter_angles", spy)
    s = small_settings(small_2d, tmp_path / "ifft", probe={"type": "ifft"})
    s["dataset"]["check_values"] = False
    with Reconstruction(s) as rec:
        assert rec.probe.shape == (1, 16, 16, 2)
    assert calls and all(c[0] == rec.problem.n_tiles for c in calls)


def test_engines_are_picked_by_make_reconstruction(small_2d, tmp_path):
    s = small_settings(small_2d, tmp_path / "x", execution={"engine": "mpi"})
    with pytest.raises(ConfigError, match="picks the engine"):
        Reconstruction(s)
    s["execution"]["engine"] = "slurm"
    with pytest.raises(ConfigError, match="engine"):
        make_reconstruction(s)
    assert not (tmp_path / "x").exists()


def test_paths_in_file_are_relative_to_it_and_paths_set_to_the_cwd(tmp_path, monkeypatch):
    from daskorym.config import read_toml
    cfg_dir, work = tmp_path / "configs", tmp_path / "work"
    cfg_dir.mkdir()
    work.mkdir()
    cfg = cfg_dir / "run.toml"
    cfg.write_text('[dataset]\npath = "data.h5"\n[output]\nfolder = "out"\n'
                   '[object]\nsupport_path = "support.npy"\n')
    monkeypatch.chdir(work)
    s = read_toml(cfg)
    assert s.dataset.path == cfg_dir / "data.h5" and s.output.folder == cfg_dir / "out"
    assert s.object.support_path == cfg_dir / "support.npy"
    s = read_toml(cfg, ["dataset.path=data.h5", "output.folder=recon",
                        "object.support_path=mask.npy"])
    assert s.dataset.path == work / "data.h5" and s.output.folder == work / "recon"
    assert s.object.support_path == work / "mask.npy"


class _InFlight(Reconstruction):
    """The local engine with its losses handed back late, as an engine that keeps batches in
    flight does (``lookahead``): the loop must record, checkpoint and resume the same run.
    Reading batch ``fail_at``'s loss raises (a run stopped with batches in flight)."""

    lookahead = 2

    def __init__(self, *a, fail_at=None, **kw):
        self.calls = []  # ("submit", k) / ("read", k) in the order they happened
        self.fail_at = fail_at
        super().__init__(*a, **kw)

    def _run_batch(self, spec):
        k = self.i_batch
        loss = super()._run_batch(spec)
        self.calls.append(("submit", k))

        def read():
            if k == self.fail_at:
                raise RuntimeError("stopped")
            self.calls.append(("read", k))
            return loss
        return read


def test_batches_in_flight_record_checkpoint_and_resume_the_same_run(small_2d, tmp_path):
    common = dict(optimization={"n_epochs": 2, "minibatch_size": 8})
    plain, loss_plain = _run(small_settings(small_2d, tmp_path / "plain", **common))
    per_epoch = len(loss_plain) // 2
    assert per_epoch > 5
    s = small_settings(small_2d, tmp_path / "late", output={"n_batch_per_checkpoint": 3},
                       **common)
    with _InFlight(s) as rec:
        rec.run()
        assert np.array_equal(rec.object, plain)
        assert [h[2] for h in rec.history] == loss_plain
        assert [h[1] for h in rec.history] == list(range(per_epoch)) * 2
        calls = rec.calls
    # two batches in flight; the checkpoint after the third batch (i_batch 3) read them all
    assert calls[:7] == [("submit", 0), ("submit", 1), ("submit", 2), ("read", 0),
                         ("read", 1), ("read", 2), ("submit", 3)]
    assert calls[7:10] == [("submit", 4), ("submit", 5), ("read", 3)]
    # stopped with batches 4 and 5 in flight: the checkpoint after batch 2 is the last kept,
    # and a resume from it gives the same run
    s2 = small_settings(small_2d, tmp_path / "stopped", output={"n_batch_per_checkpoint": 3},
                        **common)
    with _InFlight(s2, fail_at=4) as rec, pytest.raises(RuntimeError, match="stopped"):
        rec.run()
    s2["output"]["resume"] = True
    resumed, _ = _run(s2)
    assert np.array_equal(resumed, plain)
    csv = (tmp_path / "stopped" / "loss.csv").read_text().strip().splitlines()
    assert len(csv) - 1 == len(loss_plain)
