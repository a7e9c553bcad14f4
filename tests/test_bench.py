"""The bench's table and its engine ratios (the timings themselves are not asserted)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from daskorym.bench import (BenchCase, fft_seconds, ffts_per_position, format_table,
                            relative_lines, run_case)
from daskorym.models.base import Geometry


def _row(engine, s, case="3d"):
    return {"case": case, "description": "", "backend": "torch", "device": "cpu", "threads": 1,
            "engine": engine, "mode": "dp", "epochs": 3, "batches_per_epoch": 16,
            "s_per_epoch": s, "first_epoch_s": s, "comm_share": None, "peak_rss_mb": 100.0,
            "final_loss": 1.0, "cpu_s_per_epoch": s, "fft_floor_s": s / 10,
            "ffts_per_epoch": 1000, "cpu_over_floor": 10.0}


def test_relative_lines_pool_repeated_rows_by_median():
    rows = [_row("local", 5.0), _row("dask-1", 6.0), _row("local", 6.0), _row("dask-1", 5.5),
            _row("local", 7.0), _row("dask-2", 3.0)]
    (line,) = relative_lines(rows)
    assert "relative to local (n=3)" in line
    assert "dask-1 0.96x (n=2)" in line  # median(6.0, 5.5) / median(5, 6, 7) = 5.75 / 6
    assert "dask-2 0.50x (n=1)" in line
    assert line in format_table(rows)


def test_no_ratio_without_a_local_row():
    assert relative_lines([_row("dask-1", 6.0), _row("dask-2", 3.0)]) == []
    assert relative_lines([_row("local", 6.0)]) == []


def _geometry(**kw):
    g = dict(wavelength_m=1e-10, psize_m=1e-8, obj_shape=(64, 64, 1), probe_shape=(32, 32))
    g.update(kw)
    return Geometry(**g)


@pytest.mark.parametrize("kw, n", [
    ({}, 2),                                          # 2D far field: one FFT and its adjoint
    ({"free_prop_m": (0.01,)}, 4),                    # near field: FFT, kernel, inverse FFT
    ({"obj_shape": (64, 64, 8)}, 2 * (2 * 7 + 1)),    # 8 slices: 7 Fresnel steps, far field
    ({"obj_shape": (64, 64, 8), "binning": 2}, 2 * (2 * 3 + 1)),
    ({"obj_shape": (64, 64, 8), "pure_projection": True}, 2),
    ({"obj_shape": (64, 64, 8), "slice_pos_m": (0.0, 1e-7, 3e-7)}, 2 * (2 * 2 + 1)),
    ({"free_prop_m": (0.01, 0.02, 0.04)}, 2 * 6),     # three near-field distances
])
def test_fft_count_per_position(kw, n):
    assert ffts_per_position(_geometry(**kw)) == n


def test_fft_seconds_is_per_fft():
    one = fft_seconds((64, 64), 1, repeats=5)
    assert 0 < one < 0.01
    many = fft_seconds((64, 64), 32, repeats=5)
    assert 0 < many < 0.01  # per FFT, not per batch of 32


def test_run_case_reports_cpu_time_and_the_fft_floor(tmp_path):
    case = BenchCase("tiny", "tiny 2D", "farfield_ptychography",
                     dict(obj_shape=(32, 32), probe_shape=(16, 16), step_px=4,
                          unknown_type="real_imag"),
                     {"model": {"unknown_type": "real_imag"}, "object": {"shape": [32, 32, 1]},
                      "optimization": {"minibatch_size": 8}})
    r = run_case(case, n_epochs=2, workdir=tmp_path)
    n_pos = ((32 - 16) // 4 + 1) ** 2
    assert r["ffts_per_epoch"] == 2 * n_pos
    assert r["fft_floor_s"] > 0 and r["cpu_s_per_epoch"] > 0
    assert r["cpu_over_floor"] == pytest.approx(r["cpu_s_per_epoch"] / r["fft_floor_s"])
    assert np.isfinite(r["final_loss"])
    assert "x floor" in format_table([r])


def test_dask_direct_engine_rows(tmp_path):
    """``dask-N-direct`` runs the Dask engine with ``execution.exchange = 'direct'``; it
    reaches the loss the scheduled exchange reaches; unknown engine names are refused."""
    from daskorym.bench import run_bench
    case = BenchCase("tiny3", "tiny 3D", "farfield_ptychography",
                     dict(obj_shape=(16, 16, 16), probe_shape=(8, 8), step_px=3, n_theta=4,
                          theta_range_rad=(0.0, np.pi)),
                     {"object": {"shape": [16, 16, 16]}, "optimization": {"minibatch_size": 9}})
    rows = [run_case(case, n_epochs=2, workdir=tmp_path, engine="dask", n_workers=2,
                     exchange=ex) for ex in ("scheduler", "direct")]
    assert [r["engine"] for r in rows] == ["dask-2", "dask-2-direct"]
    assert rows[1]["final_loss"] == pytest.approx(rows[0]["final_loss"], rel=1e-4)
    assert "dask-2-direct" in format_table(rows)
    with pytest.raises(ValueError, match="dask-N-direct"):
        run_bench(["2d"], engines=("dask-2-fast",))


def test_split_bound_runs_one_and_several_processes(tmp_path):
    """``bench --split N``: each minibatch's work by one process, then by N at once; the
    report holds both times per minibatch and their ratio (values not asserted: timings)."""
    from daskorym.bench import run_split
    case = BenchCase("tiny3", "tiny 3D", "farfield_ptychography",
                     dict(obj_shape=(16, 16, 16), probe_shape=(8, 8), step_px=3, n_theta=4,
                          theta_range_rad=(0.0, np.pi)),
                     {"object": {"shape": [16, 16, 16]}, "optimization": {"minibatch_size": 9}})
    r = run_split(case, 2, n_batches=3, repeats=2, workdir=tmp_path)
    assert r["processes"] == 2 and r["batches"] == 3
    assert r["s_per_batch_1"] > 0 and r["s_per_batch_2"] > 0
    assert r["speedup"] == pytest.approx(r["s_per_batch_1"] / r["s_per_batch_2"])
    with pytest.raises(ValueError, match="at least 2"):
        run_split(case, 1)
    # one tile per minibatch: one process has no tiles (it still rotates and updates its slab)
    one = dataclasses.replace(case, settings={"object": {"shape": [16, 16, 16]},
                                              "optimization": {"minibatch_size": 1}})
    r = run_split(one, 2, n_batches=2, repeats=1, workdir=tmp_path)
    assert r["batches"] == 2 and r["s_per_batch_2"] > 0
