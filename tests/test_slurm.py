"""The Dask engine on a real SLURM (dask-jobqueue): workers are batch jobs on this node.

Needs a SLURM whose node is up, e.g. the one-node SLURM of ``bash deploy/start-slurm.sh``.
Skipped without one, except with ``DASKORYM_REQUIRE_SLURM=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from daskorym.config import ConfigError
from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import connect
from conftest import small_settings

REQUIRE = os.environ.get("DASKORYM_REQUIRE_SLURM") == "1"
UP_STATES = {"idle", "mixed", "allocated", "completing"}


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found (no SLURM here; bash deploy/start-slurm.sh starts one)"
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    states = {s.rstrip("*~#") for s in r.stdout.split()}
    if r.returncode != 0 or not states & UP_STATES:
        return f"no SLURM node up: sinfo says {(r.stdout + r.stderr).strip()!r}"
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                          timeout=30).stdout.split()
    if max((int(c.rstrip("+")) for c in cpus if c.rstrip("+").isdigit()), default=0) < 2:
        return f"the SLURM node has fewer than 2 CPUs (sinfo %c: {cpus}); the tests run 2 jobs"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_up():
    problem = _slurm_problem()
    if problem is not None:
        if REQUIRE:
            pytest.fail(f"DASKORYM_REQUIRE_SLURM=1 but {problem}", pytrace=False)
        pytest.skip(problem)


def _jobqueue(tmp, **kw):
    return dict(dict(jobs=2, cores=1, memory="2GiB", walltime="00:10:00", queue="debug",
                     job_name="daskorym-test", local_directory=str(tmp),
                     log_directory=str(tmp / "logs")), **kw)


def _my_jobs(name="daskorym-test") -> list[str]:
    r = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True,
                       text=True, timeout=30)
    return r.stdout.split()


def _wait(cond, timeout=60.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture
def slurm_client(tmp_path):
    client, cluster = connect(cluster="slurm", quiet=True, jobqueue=_jobqueue(tmp_path),
                              timeout=180)
    yield client
    client.close()
    cluster.close()  # cancels the jobs
    assert _wait(lambda: not _my_jobs(), 60), f"jobs left: {_my_jobs()}"


def _groups(n_epochs=2):
    return dict(optimization={"n_epochs": n_epochs, "minibatch_size": 8},
                output={"store_checkpoint": False})


def test_workers_are_slurm_jobs(slurm_client):
    info = slurm_client.run(lambda: (os.environ.get("SLURM_JOB_ID"),
                                     os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                     os.environ.get("OMP_NUM_THREADS")))
    jobs = _my_jobs()
    print("workers:", info, "jobs:", jobs)
    assert len(info) == 2 and sorted(j for j, _, _ in info.values()) == sorted(jobs)
    assert all(m is None and omp == "1" for _, m, omp in info.values())


def test_dask_on_slurm_equals_local(small_2d, slurm_client, tmp_path):
    local = small_settings(small_2d, tmp_path / "local", execution={"precision": "float64"},
                           **_groups())
    dask = small_settings(small_2d, tmp_path / "dask",
                          execution={"engine": "dask", "precision": "float64"}, **_groups())
    with make_reconstruction(local) as rec:
        rec.run()
        obj_l = rec.object.copy()
    with make_reconstruction(dask, client=slurm_client) as rec:
        rec.run()
        obj_d = rec.object.copy()
        assert len(rec.workers) == 2
    rel = np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l)
    print(f"SLURM 2 jobs x 1 worker: object rel. diff {rel:.2e}")
    assert rel < 1e-5


def test_run_survives_a_cancelled_job(small_2d, slurm_client, tmp_path):
    s = small_settings(small_2d, tmp_path / "lost", execution={"engine": "dask",
                                                               "precision": "float64"},
                       **_groups(n_epochs=3))
    with make_reconstruction(s, client=slurm_client) as rec:
        rec.run(n_epochs=1)
        jobs = _my_jobs()
        assert len(jobs) == 2
        subprocess.run(["scancel", jobs[0]], check=True, timeout=30)
        assert _wait(lambda: len(slurm_client.scheduler_info()["workers"]) < 2, 60)
        rec.run()
        obj = rec.object.copy()
        print(f"after scancel {jobs[0]}: recoveries {rec.recoveries}")
        assert len(rec.recoveries) == 1 and rec.epoch == 3
    ref = small_settings(small_2d, tmp_path / "ref", execution={"precision": "float64"},
                         **_groups(n_epochs=3))
    with make_reconstruction(ref) as rec_l:
        rec_l.run()
        obj_l = rec_l.object.copy()
    rel = np.linalg.norm(obj - obj_l) / np.linalg.norm(obj_l)
    print(f"cancelled job: object rel. diff to the local run {rel:.2e}")
    assert rel < 1e-5


def test_pending_jobs_give_a_clear_error(tmp_path):
    """Jobs that cannot start in time: a ConfigError showing the queue; the jobs are cancelled."""
    jq = _jobqueue(tmp_path, jobs=1, job_name="daskorym-pending",
                   job_extra_directives=["--begin=now+1hour"])
    with pytest.raises(ConfigError) as info:
        connect(cluster="slurm", quiet=True, jobqueue=jq, timeout=10)
    msg = str(info.value)
    print(msg)
    assert "0 of 1 Dask worker(s) connected within 10 s" in msg
    assert "PENDING" in msg and "daskorym-pending"[:8] in msg
    assert _wait(lambda: not _my_jobs("daskorym-pending"), 60)


def test_cli_reconstruct_on_slurm(small_2d, tmp_path):
    """The README's command: deploy/jobqueue.yaml as the Dask config, `--cluster slurm`."""
    import sys
    from pathlib import Path
    conf = tmp_path / "dask-config"
    conf.mkdir()
    yaml = (Path(__file__).resolve().parents[1] / "deploy" / "jobqueue.yaml").read_text()
    # 2 GiB jobs (the file's 4 GiB x 2 may not fit a small test machine's node)
    (conf / "jobqueue.yaml").write_text(yaml.replace("memory: 4GiB", "memory: 2GiB", 1))
    cfg = _run_toml(small_2d, tmp_path)
    exe = Path(sys.executable).with_name("daskorym")
    cmd = [str(exe), "reconstruct", str(cfg), "--engine", "dask", "--cluster", "slurm",
           "--workers", "2", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=dict(os.environ, DASK_CONFIG=str(conf)))
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0
    assert "final loss" in r.stdout and (tmp_path / "out" / "object.zarr").exists()
    assert _wait(lambda: not _my_jobs("daskorym-worker"), 60)


def _run_toml(small_2d, tmp_path):
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
minibatch_size = 8
[output]
folder = "{tmp_path / 'out'}"
progress = false
preview_every_epochs = 1000
preview_every_minutes = 1000
""")
    return cfg


def _sbatch(script, tmp_path, *args, **env):
    import sys
    from pathlib import Path
    venv = Path(sys.executable).parents[1]
    path = Path(__file__).resolve().parents[1] / "deploy" / script
    # not `sbatch --wait`: it polls the job with growing pauses (up to 32 s)
    r = subprocess.run(["sbatch", "--parsable", "-n", "2", str(path), *args],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env=dict(os.environ, VENV=str(venv), **env))
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]

    def done():
        q = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                           text=True, timeout=30)
        return q.stdout.strip() in ("", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
    finished = _wait(done, 300)
    if not finished:
        subprocess.run(["scancel", job], timeout=30)
    info = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True,
                          text=True, timeout=30).stdout
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("daskorym-*.out")))
    print(info, logs)
    assert finished, f"job {job} still running after 300 s"
    return subprocess.CompletedProcess(r.args, 0 if "ExitCode=0:0" in info else 1), logs


@pytest.mark.parametrize("launch", ["mpiexec", "srun"])
def test_sbatch_mpi_engine(small_2d, tmp_path, launch):
    pytest.importorskip("mpi4py")
    r, logs = _sbatch("slurm-mpi.sbatch", tmp_path, str(_run_toml(small_2d, tmp_path)), "--quiet",
                      LAUNCH=launch)
    assert r.returncode == 0
    # one "final loss" line: rank 0's, so the two tasks were two ranks of one run
    assert f"2 ranks on" in logs and logs.count("final loss") == 1 and "final loss" in logs and (tmp_path / "out" / "object.zarr").exists()


@pytest.mark.parametrize("launch", ["srun", "dask-mpi"])
def test_sbatch_dask_in_one_allocation(small_2d, tmp_path, launch):
    """deploy/slurm-dask-mpi.sbatch: `srun dask worker`, or dask-mpi (scheduler on rank 0)."""
    if launch == "dask-mpi":
        pytest.importorskip("dask_mpi")
    r, logs = _sbatch("slurm-dask-mpi.sbatch", tmp_path, str(_run_toml(small_2d, tmp_path)),
                      "--quiet", LAUNCH=launch)
    assert r.returncode == 0
    n = 2 if launch == "srun" else 1  # 2 tasks; dask-mpi's rank 0 is the scheduler
    assert f"{n} worker(s) on" in logs and f", {launch})" in logs and "final loss" in logs
    assert (tmp_path / "out" / "object.zarr").exists()


def test_refused_job_gives_an_immediate_error(tmp_path):
    """A job SLURM refuses (here: no such partition): ConfigError at once, not a timeout."""
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="(?s)slurm refuses the worker job.*nosuchpart"):
        connect(cluster="slurm", quiet=True, timeout=120,
                jobqueue=_jobqueue(tmp_path, jobs=1, queue="nosuchpart"))
    assert time.monotonic() - t0 < 60 and not _my_jobs()
