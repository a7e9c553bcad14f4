"""The method examples (CDI, near-field ptychography, sparse multislice, tiled holography)
run in their quick configuration and reach the errors / SSIMs they document.

Thresholds hold with margin at the quick size (measured values in the comments)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, tmp_path: Path) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out",
                          str(tmp_path / "ex")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "results in" in out.stdout
    assert (tmp_path / "ex" / "comparison.png").stat().st_size > 0
    print(out.stdout)
    return out.stdout


def _numbers(stdout: str, line_start: str = "") -> tuple[float, float]:
    m = re.search(re.escape(line_start) + r".*?complex error ([0-9.]+), delta SSIM (-?[0-9.]+)",
                  stdout)
    assert m, stdout
    return float(m.group(1)), float(m.group(2))


def test_cdi_quick(tmp_path):
    """Shrink-wrap tightens the loose support to about the object's area (its box: 0.25)."""
    stdout = _run("cdi.py", tmp_path)
    err, s = _numbers(stdout)
    area = float(re.search(r"support area ([0-9.]+)", stdout).group(1))
    start = float(re.search(r"loose start ([0-9.]+)", stdout).group(1))
    assert area < start - 0.08 and 0.15 < area < 0.3  # measured 0.192 from 0.353
    assert err < 0.2 and s > 0.9  # measured 0.12 and 0.94 (homogeneous object)


def test_nearfield_ptycho_quick(tmp_path):
    err, s = _numbers(_run("nearfield_ptycho.py", tmp_path))
    assert s > 0.95 and err < 0.05  # measured 0.997 and 0.020


def test_sparse_multislice_quick(tmp_path):
    stdout = _run("sparse_multislice.py", tmp_path)
    slices = re.findall(r"slice (\d) at z = [0-9.]+ um: complex error ([0-9.]+), delta SSIM "
                        r"([0-9.]+)", stdout)
    assert len(slices) == 3
    m = re.search(r"^complex error ([0-9.]+), delta SSIM ([0-9.]+)", stdout, re.M)
    err, worst = float(m.group(1)), float(m.group(2))
    assert worst > 0.6 and err < 0.3  # measured worst slice 0.76, mean error 0.17


def test_tiled_holography_quick(tmp_path):
    stdout = _run("tiled_holography.py", tmp_path)
    err_u, ssim_u = _numbers(stdout, "untiled")
    err_t, ssim_t = _numbers(stdout, "\ntiled (")  # not the "untiled (" line
    assert err_u < 0.1 and err_t < 0.1  # measured 0.043 and 0.045
    assert ssim_u > 0.95 and ssim_t > 0.95  # measured 0.994 both


@pytest.mark.parametrize("config", sorted((EXAMPLES / "configs").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_example_configs_are_valid_settings(config):
    """Every TOML under examples/configs validates (names, types, ranges) as the CLI reads it."""
    from daskorym.config import read_toml
    s = read_toml(config)
    assert s.dataset.path.parent == config.parent  # relative paths: next to the TOML
    assert s.optimization.n_epochs >= 1 and s.object.shape is not None


def test_multidistance_holography_quick(tmp_path):
    stdout = _run("multidistance_holography.py", tmp_path)
    ctf = float(re.search(r"CTF retrieval: SSIM ([0-9.]+)", stdout).group(1))
    it = float(re.search(r"iterative Fresnel from CTF start: SSIM ([0-9.]+)", stdout).group(1))
    assert ctf > 0.9 and it > 0.95 and it > ctf  # measured 0.946 and 0.988


def test_tomography_minuslog_quick(tmp_path):
    stdout = _run("tomography_minuslog.py", tmp_path)
    s = float(re.search(r"of beta: Pearson [0-9.]+, SSIM ([0-9.]+)", stdout).group(1))
    assert s > 0.95  # measured 0.996
