"""The runnable examples work in their quick configuration (the README's main command)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, tmp_path: Path, *extra: str) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out",
                          str(tmp_path / "ex"), *extra], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "results in" in out.stdout
    return out.stdout


@pytest.mark.parametrize("engine", [[], ["--engine", "dask", "--workers", "2"]],
                         ids=["local", "dask-2"])
def test_ptycho2d_quick(tmp_path, engine):
    stdout = _run("ptycho2d.py", tmp_path, *engine)
    ratio = float(re.search(r"ratio ([0-9.]+)", stdout).group(1))
    print(stdout)
    assert ratio < 0.6
    assert f"on engine {engine[1] if engine else 'local'}" in stdout
    assert (tmp_path / "ex" / "recon" / "object.zarr").exists()


@pytest.mark.parametrize("regime", ["multislice", "projection"])
def test_ptychotomo3d_quick(tmp_path, regime):
    stdout = _run("ptychotomo3d.py", tmp_path, "--regime", regime)
    r = float(re.search(r"Pearson ([0-9.]+)", stdout).group(1))
    ssim_volume = float(re.search(r"SSIM ([0-9.]+) \(volume\)", stdout).group(1))
    print(stdout)
    assert stdout.startswith(f"{regime}:") or f"\n{regime}:" in stdout
    assert r > 0.75 and ssim_volume > 0.75  # quick: 24^3, 8 angles (0.83 / 0.82 here)
    assert (tmp_path / "ex" / "comparison.png").stat().st_size > 0


def test_ptycho2d_modes_quick(tmp_path):
    """Fly-scan data: three probe modes fit better than one."""
    stdout = _run("ptycho2d_modes.py", tmp_path)
    print(stdout)
    found = {int(m): (float(e), float(s)) for m, e, s in re.findall(
        r"(\d) probe mode\(s\): complex error ([0-9.]+), phase SSIM ([0-9.]+)", stdout)}
    assert set(found) == {1, 3}
    assert found[3][0] < found[1][0]
    assert found[3][1] >= 0.9
    assert (tmp_path / "ex" / "comparison.png").stat().st_size > 0
