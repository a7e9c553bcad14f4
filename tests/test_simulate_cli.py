"""Tests of daskorym.simulate (phantoms, scans, simulation, tiling) and of the command line."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import daskorym
from daskorym.cli import main
from daskorym.io import HC_EV_M, open_dataset, write_dataset
from daskorym.models import MODELS
from daskorym.simulate import (grid_tiles, object_2d, phantom_2d, raster_positions, simulate,
                               sparse_object, tile_dataset, truth_path, untile, value_volume)

# tiny settings per model, and the data shape they give
TINY = {
    "farfield_ptychography": (dict(obj_shape=(16, 16), probe_shape=(8, 8), step_px=4),
                              (1, 9, 8, 8)),
    "nearfield_ptychography": (dict(obj_shape=(16, 16), probe_shape=(8, 8), step_px=4),
                               (1, 9, 8, 8)),
    "sparse_multislice": (dict(obj_shape=(16, 16), probe_shape=(8, 8), step_px=4), (1, 9, 8, 8)),
    "fullfield_cdi": (dict(obj_shape=(16, 16)), (1, 1, 16, 16)),
    "tiled_holography": (dict(obj_shape=(16, 16), tiles=(2, 2), safe_zone_px=2), (1, 4, 8, 8)),
    "multidistance_holography": (dict(obj_shape=(16, 16), tiles=(2, 2), safe_zone_px=2,
                                      n_dists=3), (1, 12, 8, 8)),
}
CLI_ARGS = {
    "farfield_ptychography": ["--obj-shape", "16,16", "--probe-shape", "8,8", "--step", "4"],
    "nearfield_ptychography": ["--obj-shape", "16,16", "--probe-shape", "8,8", "--step", "4"],
    "sparse_multislice": ["--obj-shape", "16,16", "--probe-shape", "8,8", "--step", "4"],
    "fullfield_cdi": ["--obj-shape", "16,16"],
    "tiled_holography": ["--obj-shape", "16,16", "--tiles", "2", "2", "--safe-zone", "2"],
    "multidistance_holography": ["--obj-shape", "16,16", "--tiles", "2", "2", "--safe-zone", "2",
                                 "--n-dists", "3"],
}
# models that only reconstruct (approximations of the wave models: linearised CTF, line
# integrals of minus-logged data); their data are simulated with the wave models
RECONSTRUCT_ONLY = {"multidistance_ctf", "minuslog_tomography"}
ALL_MODELS = sorted(set(MODELS) - RECONSTRUCT_ONLY)


def _sim(model: str, path: Path, **kw) -> Path:
    return simulate(model, path, progress=False, **{**TINY[model][0], **kw})


# ---------------------------------------------------------------- phantoms and scans
def test_phantoms_are_two_different_unit_images_and_deterministic():
    a, b = phantom_2d((24, 20), seed=0)
    assert a.shape == b.shape == (24, 20)
    for img in (a, b):
        assert img.min() == 0.0 and img.max() == 1.0
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.9
    np.testing.assert_array_equal(phantom_2d((24, 20), 0)[0], a)
    assert not np.array_equal(phantom_2d((24, 20), 1)[0], a)


def test_object_builders_ranges_and_slices():
    ri = object_2d((16, 16), "real_imag", 1.0, 0.5)
    mag = np.hypot(ri[..., 0], ri[..., 1])
    assert ri.shape == (16, 16, 1, 2) and ri.dtype == np.float32
    assert mag.min() >= 0.5 - 1e-6 and mag.max() <= 1 + 1e-6
    db = object_2d((16, 16), "delta_beta", 1e-3, 2e-4)
    assert db[..., 0].max() == pytest.approx(1e-3) and db[..., 1].max() == pytest.approx(2e-4)
    sp = sparse_object((16, 16), 3, "delta_beta", 1.0, 1.0)
    assert sp.shape == (16, 16, 3, 2)
    assert not np.allclose(sp[:, :, 0], sp[:, :, 1]) and not np.allclose(sp[:, :, 1], sp[:, :, 2])


def test_value_volume_stays_inside_cylinder_and_is_seeded():
    v = value_volume((10, 24, 20), seed=3)
    _, x, z = np.meshgrid(np.arange(10), np.arange(24) - 11.5, np.arange(20) - 9.5, indexing="ij")
    assert v.max() <= 1.0 and v.min() >= 0.0 and v.max() > 0.5
    assert np.all(v[x ** 2 + z ** 2 > (0.4 * 20) ** 2] == 0)
    np.testing.assert_array_equal(v, value_volume((10, 24, 20), seed=3))
    assert not np.array_equal(v, value_volume((10, 24, 20), seed=4))


@pytest.mark.parametrize("shape, probe, step", [((20, 18), (8, 8), 4), ((17, 30), (9, 6), 5)])
def test_raster_positions_cover_object(shape, probe, step):
    pos = raster_positions(shape, probe, step)
    hits = np.zeros(shape, int)
    for y, x in pos.astype(int):
        hits[max(y, 0):y + probe[0], max(x, 0):x + probe[1]] += 1
    assert hits.min() >= 1
    assert pos.min() > -probe[0] / 2 and np.all(pos.max(axis=0) + probe < np.array(shape) +
                                                np.array(probe) / 2)
    jit = raster_positions(shape, probe, step, jitter_px=0.4, seed=1)
    np.testing.assert_array_equal(jit, raster_positions(shape, probe, step, jitter_px=0.4, seed=1))
    assert 0 < np.abs(jit - pos).max() <= 0.4
    with pytest.raises(ValueError, match="larger than the object"):
        raster_positions((4, 4), probe, step)


def test_raster_scan_margin_lights_the_border():
    """A Gaussian probe (sigma = size / 6) scanned over the object alone barely lights the
    object's border rows (0.1 % of the peak); a margin of six pixels brings them to
    several per cent."""
    shape, probe, step = (64, 64), (32, 32), 6
    yy, xx = np.mgrid[:32, :32] - 15.5
    intensity = np.exp(-(yy ** 2 + xx ** 2) / (32 / 6) ** 2)

    def light(pos):
        out = np.zeros((64 + 64, 64 + 64))  # room for tiles sticking out
        for y, x in pos.astype(int):
            out[32 + y:32 + y + 32, 32 + x:32 + x + 32] += intensity
        return out[32:96, 32:96]

    plain, wide = raster_positions(shape, probe, step), raster_positions(shape, probe, step,
                                                                          margin_px=6)
    assert len(wide) > len(plain)
    assert wide.min() <= plain.min() - 6 and wide.max() >= plain.max() + 6
    lp, lw = light(plain), light(wide)
    assert lp[0].max() < 0.005 * lp.max()          # the border row is almost dark
    assert lw[0, 8:56].min() > 0.05 * lw.max()     # lit with the margin (centre columns)
    assert lw[8:56, 8:56].min() > 0.5 * lw.max()
    assert np.all(np.diff(wide[:, 0][::9]) == step)
    with pytest.raises(ValueError, match="margin_px"):
        raster_positions(shape, probe, step, margin_px=17)
    with pytest.raises(ValueError, match="margin_px"):
        raster_positions(shape, probe, step, margin_px=-1)


@pytest.mark.parametrize("shape, tiles", [((10, 7), (3, 2)), ((16, 16), (2, 2)), ((5, 10), (1, 4))])
def test_grid_tiles_cover_every_pixel_once(shape, tiles):
    pos, (ty, tx) = grid_tiles(shape, *tiles)
    assert (ty, tx) == (math.ceil(shape[0] / tiles[0]), math.ceil(shape[1] / tiles[1]))
    assert len(pos) == tiles[0] * tiles[1]
    hits = np.zeros((tiles[0] * ty, tiles[1] * tx), int)
    for y, x in pos.astype(int):
        hits[y:y + ty, x:x + tx] += 1
    assert np.all(hits == 1)
    with pytest.raises(ValueError, match="outside"):
        grid_tiles((9, 9), 4, 1)


# ---------------------------------------------------------------- simulation
def test_every_model_has_tiny_settings():
    assert set(TINY) == set(MODELS) - RECONSTRUCT_ONLY


@pytest.mark.parametrize("model", ALL_MODELS)
def test_simulate_each_model(tmp_path, model):
    suffix = ".zarr" if model in ("fullfield_cdi", "multidistance_holography") else ".h5"
    path = _sim(model, tmp_path / f"sim{suffix}")
    expected = TINY[model][1]
    with open_dataset(path) as ds:
        assert ds.shape == expected
        data = ds.read_angle(0)
        pos = ds.positions(0)
        assert ds.theta is not None and len(ds.theta) == 1
    assert np.all(np.isfinite(data)) and data.max() > 0
    with h5py.File(truth_path(path), "r") as f:
        assert f.attrs["model"] == model
        assert f["obj"].ndim == 4 and f["obj"].shape[-1] == 2
        assert f["probe"].shape[0] == 1 and f["probe"].shape[-1] == 2
        np.testing.assert_array_equal(f["probe_pos_px"][...], pos)
        if model == "multidistance_holography":
            assert len(f.attrs["free_prop_cm"]) == 3
            np.testing.assert_array_equal(pos[:4], pos[4:8])
        if model == "sparse_multislice":
            assert len(f.attrs["slice_pos_cm"]) == f["obj"].shape[2] == 3
            gaps = np.diff(f.attrs["slice_pos_cm"])
            assert not np.isclose(gaps[0], gaps[1])


def _numpy_farfield(obj, probe, pos, energy_ev, psize_cm):
    """sum over modes of |fftshift(fft2(T[crop] * probe))|^2, T with vacuum (1) outside."""
    k1 = 2 * np.pi * psize_cm * 1e-2 / (HC_EV_M / energy_ev)
    t = np.exp(-k1 * obj[:, :, 0, 1]) * np.exp(-1j * k1 * obj[:, :, 0, 0])
    py, px = probe.shape[1:3]
    pad = max(py, px)
    t = np.pad(t, pad, constant_values=1.0)
    p = probe[..., 0] + 1j * probe[..., 1]
    out = []
    for y, x in pos.astype(int):
        crop = t[y + pad:y + pad + py, x + pad:x + pad + px]
        far = np.fft.fftshift(np.fft.fft2(crop[None] * p), axes=(-2, -1))
        out.append(np.sqrt(np.sum(np.abs(far) ** 2, axis=0)))
    return np.stack(out)


def test_farfield_equals_direct_numpy(tmp_path):
    path = simulate("farfield_ptychography", tmp_path / "ff.h5", obj_shape=(18, 18),
                    probe_shape=(8, 8), step_px=4, n_probe_modes=2, precision="float64",
                    progress=False)
    with h5py.File(truth_path(path), "r") as f:
        obj, probe, pos = f["obj"][...], f["probe"][...], f["probe_pos_px"][...]
    assert pos.min() < 0 and pos.max() + 8 > 18  # tiles stick out: vacuum padding is tested
    with open_dataset(path) as ds:
        data = ds.read_angle(0)
        ref = _numpy_farfield(obj.astype(np.float64), probe.astype(np.float64), pos,
                              ds.energy_ev, ds.psize_cm)
    assert np.linalg.norm(data - ref) / np.linalg.norm(ref) < 1e-6


def test_multidistance_is_tiled_holography_in_tile_then_distance_order(tmp_path):
    common = dict(obj_shape=(16, 16), tiles=(2, 2), safe_zone_px=2, precision="float64",
                  progress=False)
    multi = simulate("multidistance_holography", tmp_path / "md.h5", free_prop_cm=[1.0, 2.0],
                     **common)
    with open_dataset(multi) as ds:
        md = ds.read_angle(0)
    for i_dist, dist in enumerate((1.0, 2.0)):
        one = simulate("tiled_holography", tmp_path / f"t{i_dist}.h5", free_prop_cm=dist,
                       **common)
        with open_dataset(one) as ds:
            np.testing.assert_allclose(md[4 * i_dist:4 * i_dist + 4], ds.read_angle(0),
                                       rtol=1e-6, atol=1e-7)


def test_poisson_noise_is_seeded_and_scaled(tmp_path):
    kw = dict(noise="poisson", photons_per_pixel=50.0)
    a = _sim("farfield_ptychography", tmp_path / "a.h5", **kw)
    b = _sim("farfield_ptychography", tmp_path / "b.h5", **kw)
    c = _sim("farfield_ptychography", tmp_path / "c.h5", seed=1, **kw)
    clean = _sim("farfield_ptychography", tmp_path / "clean.h5")
    da, db, dc, d0 = (open_dataset(p).read_angle(0) for p in (a, b, c, clean))
    np.testing.assert_array_equal(da, db)
    assert not np.array_equal(da, dc) and not np.allclose(da, d0)
    with h5py.File(truth_path(a), "r") as f:
        scale = f.attrs["photons_per_intensity"]
    counts = da.astype(np.float64) ** 2 * scale
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3 * max(1.0, counts.max()))
    assert np.mean(d0.astype(np.float64) ** 2) * scale == pytest.approx(50.0, rel=1e-4)
    assert counts.mean() == pytest.approx(50.0, rel=0.1)


def test_tomography_rotates_a_3d_object(tmp_path):
    path = simulate("farfield_ptychography", tmp_path / "tomo.h5", n_theta=3,
                    obj_shape=(8, 12, 12), probe_shape=(8, 8), step_px=4, progress=False)
    with open_dataset(path) as ds:
        assert ds.shape == (3, 2, 8, 8)  # 1 x 2 raster
        np.testing.assert_allclose(ds.theta, [0, np.pi / 3, 2 * np.pi / 3])
        angles = [ds.read_angle(i) for i in range(3)]
    assert not np.allclose(angles[0], angles[1])
    with h5py.File(truth_path(path), "r") as f:
        assert f["obj"].shape == (8, 12, 12, 2)


def test_settings_are_checked_up_front(tmp_path):
    out = tmp_path / "x.h5"
    cases = [
        (("nope",), {}, "unknown forward model 'nope'; known: .*farfield_ptychography"),
        (("farfield_ptychography",), dict(obj_shape=(8, 8), probe_shape=(16, 16)),
         "larger than the object"),
        (("fullfield_cdi",), dict(probe_shape=(8, 8)), "probe_shape is set by the object"),
        (("farfield_ptychography",), dict(free_prop_cm=1.0), "far field"),
        (("sparse_multislice",), dict(n_theta=2), "one view"),
        (("farfield_ptychography",), dict(obj_shap=(8, 8)),
         r"unknown simulation setting.*obj_shap"),
        (("multidistance_holography",), dict(free_prop_cm=[1, 2], n_dists=3), "n_dists=3"),
        (("farfield_ptychography",), dict(noise="gauss"), "noise must be"),
        (("sparse_multislice",), dict(n_slices=2, slice_pos_cm=[0, 1e-4, 2e-4]), "disagrees"),
        (("tiled_holography",), dict(n_slices=2), "sparse_multislice only"),
    ]
    for args, kw, match in cases:
        with pytest.raises(ValueError, match=match):
            simulate(*args, out, progress=False, **kw)
    assert not out.exists() and not truth_path(out).exists()


def test_sparse_slices_from_n_slices(tmp_path):
    path = _sim("sparse_multislice", tmp_path / "sp.h5", n_slices=4)
    with h5py.File(truth_path(path), "r") as f:
        assert f["obj"].shape == (16, 16, 4, 2)
        np.testing.assert_allclose(f.attrs["slice_pos_cm"], [0, 6e-5, 1.6e-4, 2.2e-4])


def test_existing_outputs_need_overwrite(tmp_path):
    path = _sim("fullfield_cdi", tmp_path / "cdi.h5")
    before = open_dataset(path).read_angle(0)
    with pytest.raises(FileExistsError):
        _sim("fullfield_cdi", path, seed=5)
    np.testing.assert_array_equal(open_dataset(path).read_angle(0), before)
    _sim("fullfield_cdi", path, seed=5, overwrite=True)
    assert not np.array_equal(open_dataset(path).read_angle(0), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdi.h5", "cdi_truth.h5"]


# ---------------------------------------------------------------- tiling
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_tile_dataset_tile_then_distance(tmp_path, suffix):
    rng = np.random.default_rng(0)
    full = rng.random((2, 3, 10, 13)).astype(np.float32)  # 2 angles, 3 distances
    src = write_dataset(tmp_path / f"full{suffix}", full, probe_pos_px=np.zeros((3, 2)),
                        energy_ev=9000.0, psize_cm=1e-5, free_prop_cm=[1.0, 2.0, 3.0],
                        theta=[0.0, 0.5])
    dst = tile_dataset(src, tmp_path / "tiled.h5", 3, 2)
    with open_dataset(dst) as ds:
        assert ds.shape == (2, 3 * 6, 4, 7)
        assert ds.energy_ev == 9000.0 and ds.psize_cm == 1e-5
        np.testing.assert_array_equal(ds.free_prop_cm, [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(ds.theta, [0.0, 0.5])
        pos = ds.positions(0)
        grid, _ = grid_tiles((10, 13), 3, 2)
        np.testing.assert_array_equal(pos, np.tile(grid, (3, 1)))
        for i_theta in range(2):
            tiles = ds.read_angle(i_theta)
            for i_dist in range(3):
                k = slice(i_dist * 6, (i_dist + 1) * 6)
                image = untile(tiles[k], pos[k], (10, 13))
                np.testing.assert_array_equal(image, full[i_theta, i_dist])


def test_tile_dataset_rejects_far_field_and_tiled_input(tmp_path):
    far = _sim("fullfield_cdi", tmp_path / "cdi.h5")
    with pytest.raises(ValueError, match="far-field"):
        tile_dataset(far, tmp_path / "t.h5", 2, 2)
    tiled = _sim("tiled_holography", tmp_path / "th.h5")
    with pytest.raises(ValueError, match="found 4 tiles per angle"):
        tile_dataset(tiled, tmp_path / "t.h5", 2, 2)


# ---------------------------------------------------------------- command line
def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_cli_simulate_then_inspect(tmp_path, model):
    out = tmp_path / "d.h5"
    res = _run(["simulate", model, "--out", str(out), "--quiet", *CLI_ARGS[model]])
    assert res.exit_code == 0, res.output
    assert "wrote data" in res.stdout and "wrote truth" in res.stdout
    assert str(TINY[model][1]) in res.stdout and truth_path(out).is_file()
    res = _run(["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert f"shape {TINY[model][1]}" in res.stdout
    energy = "5000 eV" if model in ("farfield_ptychography", "sparse_multislice",
                                    "fullfield_cdi") else "10000 eV"
    assert f"energy: {energy}" in res.stdout


def test_cli_inspect_png_and_tile(tmp_path):
    out = tmp_path / "md.h5"
    args = ["simulate", "multidistance_holography", "--out", str(out), "--quiet",
            "--obj-shape", "12,12", "--free-prop-cm", "1,1.5", "--noise", "poisson"]
    assert _run(args).exit_code == 0
    png = tmp_path / "p.png"
    res = _run(["inspect", str(out), "--png", str(png), "--angle", "0", "--tile", "1"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = _run(["tile", str(out), str(tmp_path / "t.zarr"), "--tiles", "2", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "(1, 12, 6, 4)" in res.stdout


def test_cli_version():
    res = _run(["--version"])
    assert res.exit_code == 0 and daskorym.__version__ in res.stdout


@pytest.mark.parametrize("case", ["missing", "text", "model", "exists", "tile-index"])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, case):
    text = tmp_path / "notes.txt"
    text.write_text("not a dataset\n")
    existing = _sim("fullfield_cdi", tmp_path / "cdi.h5")
    args, needle = {
        "missing": (["inspect", str(tmp_path / "nothing.h5")], "nothing.h5 does not exist"),
        "text": (["inspect", str(text)], "notes.txt: not an HDF5 file or Zarr store"),
        "model": (["simulate", "holo", "--out", str(tmp_path / "x.h5")],
                  "unknown forward model 'holo'"),
        "exists": (["simulate", "fullfield_cdi", "--out", str(existing)], "--overwrite"),
        "tile-index": (["inspect", str(existing), "--png", str(tmp_path / "p.png"), "--tile", "3"],
                       "tile indices must be in [0, 1)"),
    }[case]
    res = _run(args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in res.output


def test_python_m_daskorym_subprocess(tmp_path):
    root = Path(daskorym.__file__).resolve().parent.parent
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    out = tmp_path / "cdi.h5"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "daskorym", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)

    res = run("simulate", "fullfield_cdi", "--out", str(out), "--obj-shape", "16,16", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "wrote data" in res.stdout and out.is_file() and truth_path(out).is_file()
    res = run("inspect", str(tmp_path / "missing.h5"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and "missing.h5" in res.stderr
    assert "Traceback" not in res.stderr
