"""``daskorym bench``: time per epoch and peak memory for named standard cases.

Each case simulates its dataset (into a temporary folder), runs a few epochs
and reports the median time per epoch after the first (warm-up) epoch, the
peak resident memory sampled during the run, the backend and thread count.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BenchCase:
    name: str
    description: str
    model: str
    simulate: dict
    settings: dict


CASES: dict[str, BenchCase] = {
    "2d": BenchCase(
        "2d", "2D far field: 256x256 object, 64x64 probe, 529 positions",
        "farfield_ptychography",
        dict(obj_shape=(256, 256), probe_shape=(64, 64), step_px=9, unknown_type="real_imag",
             noise="poisson", phase_max_rad=1.0, absorption=0.3),
        {"model": {"unknown_type": "real_imag"}, "object": {"shape": [256, 256, 1]},
         "optimization": {"minibatch_size": 32}}),
    "3d": BenchCase(
        "3d", "3D multislice ptycho-tomography: 64^3 object, 16 angles, 49 positions of 32x32",
        "farfield_ptychography",
        dict(obj_shape=(64, 64, 64), probe_shape=(32, 32), step_px=6, n_theta=16,
             theta_range_rad=(0.0, np.pi)),
        {"object": {"shape": [64, 64, 64]}, "optimization": {"minibatch_size": 49}}),
}


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2 ** 20


def run_case(case: BenchCase, *, n_epochs: int = 3, backend: str = "torch",
             device: str = "cpu", threads: int = 1, workdir: Path | None = None) -> dict[str, Any]:
    """Simulate and reconstruct one case; a dict of its measurements."""
    from .engine import Reconstruction
    from .simulate import simulate

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        data = simulate(case.model, Path(tmp) / "data.h5", progress=False, **case.simulate)
        settings = json.loads(json.dumps(case.settings))
        settings["dataset"] = {"path": str(data)}
        settings["optimization"]["n_epochs"] = n_epochs
        settings["execution"] = {"backend": backend, "device": device, "threads": threads}
        settings["output"] = {"folder": str(Path(tmp) / "out"), "progress": False,
                              "store_checkpoint": False, "preview_every_epochs": 10 ** 6,
                              "preview_every_minutes": 10 ** 6}
        times = []
        with Reconstruction(settings) as rec, PeakRSS() as mem:
            for _ in range(n_epochs):
                t0 = time.perf_counter()
                rec.run(1)
                times.append(time.perf_counter() - t0)
            final_loss = rec.history[-1][2]
            n_batches = len(rec.history) // n_epochs
    steady = times[1:] or times
    return {"case": case.name, "description": case.description, "backend": backend,
            "device": device, "threads": threads, "epochs": n_epochs,
            "batches_per_epoch": n_batches, "s_per_epoch": statistics.median(steady),
            "first_epoch_s": times[0], "peak_rss_mb": mem.peak_mb, "final_loss": final_loss}


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'case':<5} {'backend':<9} {'device':<7} {'thr':>3} {'epochs':>6} " \
           f"{'s/epoch':>9} {'1st epoch s':>11} {'peak MB':>8} {'final loss':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<5} {r['backend']:<9} {r['device']:<7} {r['threads']:>3} "
                     f"{r['epochs']:>6} {r['s_per_epoch']:>9.3f} {r['first_epoch_s']:>11.3f} "
                     f"{r['peak_rss_mb']:>8.0f} {r['final_loss']:>11.4g}")
    return "\n".join(lines)


def run_bench(cases: list[str], *, n_epochs: int = 3, backends: tuple[str, ...] = ("torch",),
              device: str = "cpu", threads: int = 1, json_path: Path | None = None
              ) -> list[dict[str, Any]]:
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; known: {sorted(CASES)}")
    rows = [run_case(CASES[c], n_epochs=n_epochs, backend=b, device=device, threads=threads)
            for c in cases for b in backends]
    if json_path is not None:
        from .outputs import atomic_write_text
        atomic_write_text(Path(json_path), json.dumps(rows, indent=2))
    return rows


__all__ = ["BenchCase", "CASES", "PeakRSS", "asdict", "format_table", "run_bench", "run_case"]
