"""The bench's table and its engine ratios (the timings themselves are not asserted)."""

from __future__ import annotations

from daskorym.bench import format_table, relative_lines


def _row(engine, s, case="3d"):
    return {"case": case, "description": "", "backend": "torch", "device": "cpu", "threads": 1,
            "engine": engine, "mode": "dp", "epochs": 3, "batches_per_epoch": 16,
            "s_per_epoch": s, "first_epoch_s": s, "comm_share": None, "peak_rss_mb": 100.0,
            "final_loss": 1.0}


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
