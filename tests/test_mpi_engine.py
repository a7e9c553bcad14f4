"""The MPI engine gives the local engine's numbers: dp, do and h5 with 1, 2 and 3 ranks.

Each rank count is one ``mpiexec`` run of ``tests/mpi_run.py`` (the venv's mpiexec, real
processes) over all cases and modes; 3 ranks split neither the 16 object rows of the 3D case
nor the tiles of a minibatch evenly.  Mode 'h5' with several ranks needs a parallel h5py
(deploy/install-parallel-h5py.sh); without one those cases are skipped, unless
DASKORYM_REQUIRE_MPI is set (as in CI), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import relative_differences, small_settings
from daskorym.execution import make_reconstruction

pytest.importorskip("mpi4py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
REQUIRED = bool(os.environ.get("DASKORYM_REQUIRE_MPI"))
if not MPIEXEC.exists():
    if REQUIRED:
        raise RuntimeError(f"DASKORYM_REQUIRE_MPI is set but there is no {MPIEXEC}")
    pytest.skip(f"no mpiexec in the venv ({MPIEXEC}); pip install mpich",
                allow_module_level=True)

HERE = Path(__file__).parent
CASES = ["small_2d", "small_3d"]
MODES = ["dp", "do", "h5"]
RANKS = [1, 2, 3]


def _parallel_h5py() -> bool:
    import h5py
    return bool(h5py.get_config().mpi)


def mpiexec(n: int, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``args`` on ``n`` ranks with the venv's mpiexec; fail the test on error or hang."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    try:
        proc = subprocess.run([str(MPIEXEC), "-n", str(n)] + args, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} timed out after {timeout} s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, f"mpiexec -n {n} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _settings(data, folder, engine, mode):
    return small_settings(data, folder, execution={"mode": mode, "engine": engine,
                                                   "precision": "float64"},
                          optimization={"n_epochs": 2, "minibatch_size": 8},
                          output={"store_checkpoint": False})


@pytest.fixture(scope="module")
def datasets(request):
    return {case: request.getfixturevalue(case) for case in CASES}


@pytest.fixture(scope="module")
def local_results(datasets, tmp_path_factory):
    out = {}
    for case in CASES:
        for mode in MODES:
            folder = tmp_path_factory.mktemp(f"local_{case}_{mode}")
            with make_reconstruction(_settings(datasets[case], folder / "out", "local",
                                               mode)) as rec:
                rec.run()
                out[case, mode] = (rec.object.copy(), np.array([h[2] for h in rec.history]))
    return out


@pytest.fixture(scope="module", params=RANKS, ids=[f"{n}ranks" for n in RANKS])
def mpi_results(request, datasets, tmp_path_factory):
    """All cases and modes on ``n`` ranks, in one mpiexec run."""
    n = request.param
    work = tmp_path_factory.mktemp(f"mpi{n}")
    args, runs = [sys.executable, str(HERE / "mpi_run.py")], {}
    for case in CASES:
        for mode in MODES:
            if mode == "h5" and n > 1 and not (_parallel_h5py() or REQUIRED):
                continue
            settings = work / f"{case}_{mode}.json"
            settings.write_text(json.dumps(_settings(datasets[case], work / f"{case}_{mode}",
                                                     "mpi", mode), default=str))
            runs[case, mode] = work / f"{case}_{mode}.npz"
            args += [str(settings), str(runs[case, mode])]
    mpiexec(n, args, work)
    return n, work, runs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_mpi_equals_local(case, mode, mpi_results, local_results):
    n, work, runs = mpi_results
    if (case, mode) not in runs:
        pytest.skip("mode 'h5' on several ranks needs h5py built with MPI "
                    "(deploy/install-parallel-h5py.sh)")
    with np.load(runs[case, mode]) as r:
        obj_m, loss_m = r["obj"], r["losses"]
    obj_l, loss_l = local_results[case, mode]
    rel, rel_loss = relative_differences((obj_l, loss_l), (obj_m, loss_m))
    print(f"{case} {mode} {n} rank(s): object rel. diff {rel:.2e}, loss rel. diff {rel_loss:.2e}")
    assert obj_m.shape == obj_l.shape and len(loss_m) == len(loss_l)
    assert rel < 1e-5 and rel_loss < 1e-5
    if mode == "h5":  # the object, gradient and optimizer state lived in one HDF5 file
        import h5py
        with h5py.File(work / f"{case}_{mode}" / "work" / "objects.h5", "r") as f:
            assert {"obj", "grad"} <= set(f)
            np.testing.assert_allclose(f["obj"][...], obj_m, rtol=0, atol=1e-12)


def test_cli_under_mpiexec_resumes_on_another_rank_count(small_3d, tmp_path):
    """`daskorym reconstruct --engine mpi --mode do`: probe and positions refined too;
    1 epoch on 2 ranks, then resumed to 2 epochs on 3 ranks, equals 2 local epochs."""
    import zarr
    from daskorym.outputs.probe import as_complex_probe
    groups = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  parameters={"probe": {"optimize": True},
                              "probe_pos": {"optimize": True, "step_size": 0.05}})
    local = small_settings(small_3d, tmp_path / "local",
                           execution={"mode": "do", "precision": "float64"}, **groups)
    with make_reconstruction(local) as rec:
        rec.run()
        obj_l, probe_l = rec.object.copy(), rec.probe.copy()
    s = small_settings(small_3d, tmp_path / "mpi", execution={"precision": "float64"}, **groups)
    config = tmp_path / "run.toml"
    config.write_text(_toml(s))
    cli = [sys.executable, "-m", "daskorym", "reconstruct", str(config), "--engine", "mpi",
           "--mode", "do", "--quiet"]
    first = mpiexec(2, cli + ["--epochs", "1"], tmp_path)
    assert first.stdout.count("final loss") == 1  # rank 0 reports, once
    mpiexec(3, cli + ["--epochs", "2", "--resume"], tmp_path)
    obj_m = zarr.open_array(tmp_path / "mpi" / "object.zarr", mode="r")[...]
    rel = np.linalg.norm(obj_m - obj_l) / np.linalg.norm(obj_l)
    print(f"CLI do 2 -> 3 ranks with resume: object rel. diff {rel:.2e}")
    assert rel < 1e-5  # object.zarr is float32: the whole object, all ranks' rows
    probe_m = np.load(tmp_path / "mpi" / "probe.npy")
    probe_l = as_complex_probe(probe_l)
    assert np.linalg.norm(probe_m - probe_l) / np.linalg.norm(probe_l) < 1e-5


def _toml(settings: dict) -> str:
    lines = []

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    def table(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for group, d in settings.items():
        table(group, d)
    return "\n".join(lines) + "\n"


ADORYM_SCRIPT = """
import sys
import numpy as np
import daskorym
from daskorym.execution.comm import get_comm

result = daskorym.reconstruct_ptychography(
    fname=sys.argv[1], obj_size=(48, 48, 1), n_epochs=2, minibatch_size=8,
    unknown_type="real_imag", distribution_mode="distributed_object", run_float64=True,
    learning_rate=1e-2, randomize_probe_pos=False, save_path=sys.argv[2], progress=False)
if get_comm().Get_rank() == 0:
    np.savez(sys.argv[3], obj=result.object)
"""


def test_adorym_script_under_mpiexec_runs_on_mpi(small_2d, tmp_path):
    """Like Adorym: the same script under ``mpiexec -n 2`` runs on MPI (no engine named),
    writes one time-stamped output folder, and equals the script run in one process."""
    import daskorym
    script = tmp_path / "adorym_style.py"
    script.write_text(ADORYM_SCRIPT)
    (tmp_path / "mpi").mkdir()
    mpiexec(2, [sys.executable, str(script), str(small_2d), str(tmp_path / "mpi"),
                str(tmp_path / "mpi.npz")], tmp_path)
    folders = list((tmp_path / "mpi").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("recon_")
    settings = json.loads((folders[0] / "settings.json").read_text())
    assert settings["execution"]["engine"] == "mpi" and settings["execution"]["mode"] == "do"
    local = daskorym.reconstruct_ptychography(
        fname=str(small_2d), obj_size=(48, 48, 1), n_epochs=2, minibatch_size=8,
        unknown_type="real_imag", distribution_mode="distributed_object", run_float64=True,
        learning_rate=1e-2, randomize_probe_pos=False, save_path=str(tmp_path / "local"),
        progress=False)
    step = local.object - np.array([1.0, 0.0])  # change from the flat initial object
    with np.load(tmp_path / "mpi.npz") as r:
        rel = np.linalg.norm(r["obj"] - local.object) / np.linalg.norm(step)
    print(f"Adorym-style script, 2 ranks vs 1 process: object difference / object change "
          f"{rel:.2e} (change {np.abs(step).max():.3f})")
    assert np.abs(step).max() > 1e-2 and rel < 1e-5
