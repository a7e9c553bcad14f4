"""Tests of daskorym.io: round trips (HDF5, Zarr), lazy reads, atomic writes, validation."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from daskorym.io import (
    HC_EV_M,
    DatasetError,
    open_dataset,
    save_pattern_png,
    summarize,
    validate_dataset,
    write_dataset,
)
from daskorym.io import write as write_module

N_THETA, N_TILES, DET = 3, 4, (8, 6)
FORMATS = ["h5", "zarr"]
DROP = object()


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((N_THETA, N_TILES, *DET)).astype(np.float32)


def _positions(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3.0, 10.0, (N_TILES, 2))


def _write(path: Path, data: np.ndarray | None = None, **kwargs: Any) -> Path:
    args: dict[str, Any] = dict(
        probe_pos_px=_positions(), energy_ev=8000.0, psize_cm=2e-7, free_prop_cm="inf"
    )
    args.update(kwargs)
    return write_dataset(path, _data() if data is None else data, **args)


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) with its bytes, to compare before/after."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("free_prop_cm", ["inf", 0.5, [0.1, 0.2]], ids=["inf", "float", "array"])
def test_round_trip(tmp_path: Path, suffix: str, free_prop_cm: Any) -> None:
    data = _data()
    theta = np.linspace(0.0, math.pi, N_THETA)
    per_angle = [_positions(seed=10 + i) for i in range(N_THETA)]
    path = _write(
        tmp_path / f"d.{suffix}", data, theta=theta, free_prop_cm=free_prop_cm,
        probe_pos_px_per_angle=per_angle, extra_metadata={"note": "sim v1", "probe_size_px": 8},
    )
    with open_dataset(path) as ds:
        assert ds.format == ("hdf5" if suffix == "h5" else "zarr")
        assert ds.shape == (N_THETA, N_TILES, *DET) and ds.det_shape == DET
        assert (ds.n_theta, ds.n_tiles, ds.dtype) == (N_THETA, N_TILES, np.float32)
        for i, block in ds.iter_angles():
            np.testing.assert_array_equal(block, data[i])
            np.testing.assert_array_equal(ds.positions(i), per_angle[i])
        assert ds.energy_ev == 8000.0 and ds.psize_cm == 2e-7
        assert ds.wavelength_m == pytest.approx(1239.84193e-9 / 8000.0)
        assert ds.psize_m == pytest.approx(2e-9)
        np.testing.assert_array_equal(ds.theta, theta)
        np.testing.assert_array_equal(ds.probe_pos_px, _positions())
        assert ds.read_metadata("note") == "sim v1" and int(ds.read_metadata("probe_size_px")) == 8
        if free_prop_cm == "inf":
            assert ds.is_far_field and math.isinf(ds.free_prop_cm) and ds.n_dists == 1
            assert ds.fresnel_number(8) == 0.0
        elif isinstance(free_prop_cm, float):
            assert not ds.is_far_field and ds.free_prop_cm == 0.5 and ds.n_dists == 1
            assert ds.free_prop_m == pytest.approx(0.005)
            expected = (8 * 2e-9) ** 2 / (HC_EV_M / 8000.0 * 0.005)
            assert ds.fresnel_number(8) == pytest.approx(expected)
        else:
            assert ds.n_dists == 2 and not ds.is_far_field
            np.testing.assert_allclose(ds.free_prop_cm, free_prop_cm)
            assert ds.fresnel_number(8).shape == (2,)


@pytest.mark.parametrize("suffix", FORMATS)
def test_chunks_are_one_tile(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"d.{suffix}")
    if suffix == "h5":
        with h5py.File(path, "r") as f:
            assert f["exchange/data"].chunks == (1, 1, *DET)
            assert f["exchange/data"].dtype == np.float32
    else:
        import zarr

        assert zarr.open_group(path, mode="r")["exchange/data"].chunks == (1, 1, *DET)


def test_hdf5_inf_as_fixed_bytes_and_single_tile_default(tmp_path: Path) -> None:
    path = tmp_path / "adorym.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = np.ones((2, 1, 4, 4), np.complex64) * (3 + 4j)
        f["metadata/energy_ev"] = 5000.0
        f["metadata/psize_cm"] = 1e-7
        f["metadata/free_prop_cm"] = np.bytes_(b"inf")
    with open_dataset(path) as ds:
        assert ds.is_far_field and ds.theta is None
        np.testing.assert_array_equal(ds.positions(1), [[0.0, 0.0]])
        np.testing.assert_allclose(ds.read(0, [0]), 5.0)  # magnitude of complex data
        assert ds.read(0, [0]).dtype == np.float32


def test_complex_data_written_as_magnitude(tmp_path: Path) -> None:
    data = _data() * np.exp(1j * 0.7)
    with open_dataset(_write(tmp_path / "c.zarr", data)) as ds:
        np.testing.assert_allclose(ds.read_angle(1), np.abs(data[1]), rtol=1e-6)


# -- lazy reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_read_unsorted_tiles_equals_fancy_indexing(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data()
    with open_dataset(_write(tmp_path / f"d.{suffix}", data)) as ds:
        seen: list[Any] = []
        real = ds._src.read_block

        def spy(name: str, i_theta: int, sel: Any) -> np.ndarray:
            seen.append(sel)
            return real(name, i_theta, sel)

        monkeypatch.setattr(ds._src, "read_block", spy)
        for idx in ([3, 0, 2], [2, 2, 0], [1, 2], [3]):
            np.testing.assert_array_equal(ds.read(2, idx), data[2][idx])
        assert ds.read(0, []).shape == (0, *DET)
        # only the requested tiles are read, sorted and without duplicates
        assert [s.tolist() if isinstance(s, np.ndarray) else s for s in seen] == [
            [0, 2, 3], [0, 2], slice(1, 3), slice(3, 4),
        ]
        with pytest.raises(IndexError):
            ds.read(0, [N_TILES])
        with pytest.raises(IndexError):
            ds.read(N_THETA, [0])


@pytest.mark.parametrize("suffix", FORMATS)
def test_mean_pattern_streams_and_matches_numpy(tmp_path: Path, suffix: str) -> None:
    data = _data()
    with open_dataset(_write(tmp_path / f"d.{suffix}", data)) as ds:
        np.testing.assert_allclose(ds.mean_pattern(), data.mean(axis=(0, 1), dtype=np.float64), rtol=1e-6)


# -- atomic writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_existing_untouched_without_overwrite(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"d.{suffix}")
    before = _tree(path)
    with pytest.raises(FileExistsError, match=f"d.{suffix}"):
        _write(path, _data(seed=5))
    assert _tree(path) == before
    assert os.listdir(tmp_path) == [path.name]
    _write(path, _data(seed=5), overwrite=True)
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(ds.read_angle(0), _data(seed=5)[0])
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("suffix", FORMATS)
def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"d.{suffix}")
    before = _tree(path)
    bad = _data().astype(object)
    bad[1, 2, 0, 0] = {"not": "a number"}  # fails when angle 1 is converted, after angle 0 is written
    with pytest.raises((TypeError, ValueError)):
        _write(path, bad, overwrite=True)
    assert _tree(path) == before
    assert os.listdir(tmp_path) == [path.name]


def test_failed_write_midway_monkeypatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def failing(block: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return np.asarray(block, np.float32)

    monkeypatch.setattr(write_module, "magnitude_f32", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "new.zarr")
    assert os.listdir(tmp_path) == []


def test_write_rejects_bad_metadata_before_writing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="energy_ev"):
        _write(tmp_path / "d.h5", energy_ev=-1.0)
    with pytest.raises(ValueError, match="suffix"):
        _write(tmp_path / "d.npy")
    assert os.listdir(tmp_path) == []


# -- validation --------------------------------------------------------------------------------


def _h5(path: Path, items: dict[str, Any]) -> Path:
    """A valid HDF5 dataset made with h5py directly; ``items`` replace (or DROP) entries."""
    base: dict[str, Any] = {
        "exchange/data": _data(),
        "metadata/probe_pos_px": _positions(),
        "metadata/energy_ev": 8000.0,
        "metadata/psize_cm": 2e-7,
        "metadata/free_prop_cm": "inf",
        "metadata/theta": np.linspace(0, 1, N_THETA),
    }
    base.update(items)
    with h5py.File(path, "w") as f:
        for name, value in base.items():
            if value is not DROP:
                f[name] = value
    return path


def _with(**items: Any) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        return _h5(tmp / "bad.h5", {k.replace("__", "/"): v for k, v in items.items()})

    return make


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.h5").write_text("exchange/data is not here\n")
    return tmp / "notes.h5"


def _truncated(tmp: Path) -> Path:
    good = _h5(tmp / "good.h5", {}).read_bytes()
    (tmp / "cut.h5").write_bytes(good[: len(good) // 2])
    return tmp / "cut.h5"


def _plain_dir(tmp: Path) -> Path:
    (tmp / "store.zarr").mkdir()
    return tmp / "store.zarr"


def _negative(tmp: Path) -> Path:
    data = _data()
    data[2, 1, 3, 3] = -0.5
    return _h5(tmp / "bad.h5", {"exchange/data": data})


def _nan(tmp: Path) -> Path:
    data = _data()
    data[1, 0, 0, 0] = np.nan
    return _h5(tmp / "bad.h5", {"exchange/data": data})


def _inf(tmp: Path) -> Path:
    data = _data()
    data[0, 3, 1, 1] = np.inf
    return _h5(tmp / "bad.h5", {"exchange/data": data})


def _bad_per_angle(tmp: Path) -> Path:
    return _h5(tmp / "bad.h5", {"metadata/probe_pos_px_1": np.zeros((N_TILES + 1, 2))})


BAD_CASES: list[tuple[str, Callable[[Path], Path], dict[str, Any], str]] = [
    ("text_file", _text_file, {}, "not an HDF5 file or Zarr store"),
    ("truncated_hdf5", _truncated, {}, "truncated"),
    ("dir_without_zarr_json", _plain_dir, {}, "not an HDF5 file or Zarr store"),
    ("missing_data", _with(exchange__data=DROP), {}, "exchange/data: missing"),
    ("data_3d", _with(exchange__data=np.ones((2, 4, 4), np.float32)), {}, "4D"),
    ("data_empty", _with(exchange__data=np.ones((0, 4, 8, 6), np.float32)), {}, "empty"),
    ("missing_energy", _with(metadata__energy_ev=DROP), {}, "energy_ev: missing"),
    ("missing_psize", _with(metadata__psize_cm=DROP), {}, "psize_cm: missing"),
    ("energy_negative", _with(metadata__energy_ev=-10.0), {}, "energy_ev"),
    ("energy_nan", _with(metadata__energy_ev=np.nan), {}, "energy_ev"),
    ("energy_string", _with(metadata__energy_ev="8 keV"), {}, "energy_ev"),
    ("psize_zero", _with(metadata__psize_cm=0.0), {}, "psize_cm"),
    ("psize_inf", _with(metadata__psize_cm=np.inf), {}, "psize_cm"),
    ("free_prop_missing", _with(metadata__free_prop_cm=DROP), {}, "free_prop_cm='inf'"),
    ("free_prop_negative", _with(metadata__free_prop_cm=-1.0), {}, "free_prop_cm"),
    ("free_prop_nan", _with(metadata__free_prop_cm=np.nan), {}, "NaN"),
    ("free_prop_wrong_length", _with(metadata__free_prop_cm=[1.0, 2.0, 3.0]), {}, "wrong length"),
    ("free_prop_bad_string", _with(metadata__free_prop_cm="far"), {}, "free_prop_cm"),
    ("positions_missing", _with(metadata__probe_pos_px=DROP), {}, "probe_pos_px: missing"),
    ("positions_wrong_shape", _with(metadata__probe_pos_px=np.zeros((N_TILES, 3))), {}, "wrong shape"),
    ("positions_wrong_count", _with(metadata__probe_pos_px=np.zeros((N_TILES - 1, 2))), {}, "probe_pos_px"),
    ("positions_nan", _with(metadata__probe_pos_px=np.full((N_TILES, 2), np.nan)), {}, "probe_pos_px"),
    ("per_angle_positions_wrong_count", _bad_per_angle, {}, "probe_pos_px_1"),
    ("theta_wrong_length", _with(metadata__theta=np.zeros(N_THETA + 2)), {}, "theta"),
    ("theta_nan", _with(metadata__theta=np.array([0.0, np.nan, 1.0])), {}, "theta"),
    ("data_nan", _nan, {}, "NaN"),
    ("data_inf", _inf, {}, "inf values"),
    ("data_negative", _negative, {}, "negative"),
    ("probe_larger_than_object", _with(), {"obj_shape": (7, 20, 5)}, "larger than the object"),
    ("tile_outside_object", _with(metadata__probe_pos_px=np.array([[0, 0], [1, 1], [2, 2], [40, 0]])),
     {"obj_shape": (30, 30, 5)}, "wholly outside"),
    ("probe_shape_differs", _with(), {"probe_shape": (8, 8)}, "probe shape"),
]


@pytest.mark.parametrize(
    ("make", "kwargs", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_inputs_are_rejected(
    tmp_path: Path, make: Callable[[Path], Path], kwargs: dict[str, Any], expected: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(DatasetError) as info:
        if kwargs:
            with open_dataset(path) as ds:
                validate_dataset(ds, **kwargs)
        else:
            open_dataset(path).close()
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_reference_file_is_valid(tmp_path: Path) -> None:
    """The file the bad cases start from passes, so each failure comes from its one change."""
    with open_dataset(_h5(tmp_path / "good.h5", {})) as ds:
        validate_dataset(ds, obj_shape=(30, 30, 5), probe_shape=DET, raw_data_type="intensity")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        open_dataset(tmp_path / "nothing.h5")


# -- summary and preview -----------------------------------------------------------------------


def test_summarize_and_png(tmp_path: Path) -> None:
    data = _data()
    path = _write(tmp_path / "d.zarr", data, free_prop_cm=1.5, theta=np.linspace(0, 1, N_THETA))
    with open_dataset(path) as ds:
        text = summarize(ds)
        png = save_pattern_png(ds, 1, 2, tmp_path / "p.png")
        save_pattern_png(ds, 0, 0, tmp_path / "lin.png", log=False)
    for part in ("(3, 4, 8, 6)", "float32", "8000 eV", "wavelength: 0.15498 nm", "1.5 cm", "Fresnel",
                 "angles: 3",
                 f"max {data.max():.6g}", f"min {data.min():.6g}", f"mean {data.mean(dtype=np.float64):.6g}"):
        assert part in text, part
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["d.zarr", "lin.png", "p.png"]
