"""Soak: 500 epochs of a small case on the Dask engine; memory must stay flat.

Opt-in (about 3-4 minutes here): ``python -m pytest -m slow tests/test_soak.py -s``;
the same run as ``daskorym bench --soak --epochs 500``.
"""

from __future__ import annotations

import pytest

from daskorym.bench import run_soak


@pytest.mark.slow
def test_memory_stays_flat_over_500_epochs(tmp_path):
    r = run_soak(500, workdir=tmp_path, report_every=100)
    print(f"client {r['client_start_mb']:.1f} -> {r['client_end_mb']:.1f} MB "
          f"({100 * r['client_growth']:+.1f} %), largest worker {r['worker_start_mb']:.1f} -> "
          f"{r['worker_end_mb']:.1f} MB ({100 * r['worker_growth']:+.1f} %)")
    assert len(r["client_mb"]) == 500 and len(r["worker_mb"][0]) == 2
    assert r["client_growth"] < 0.10 and r["worker_growth"] < 0.10


def test_soak_needs_room_for_its_windows():
    with pytest.raises(ValueError, match="too short"):
        run_soak(4, warmup=3)  # 3 + 2 windows of 1 epoch do not fit in 4
