"""The job scripts daskorym's jobqueue clusters submit, rendered from deploy/jobqueue.yaml.

No batch system needed: ``job_script()`` only renders the script.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dask
import pytest

from daskorym.execution.cluster import jobqueue_config, make_jobqueue_cluster

YAML = Path(__file__).resolve().parents[1] / "deploy" / "jobqueue.yaml"


def _script(kind, **options):
    with dask.config.set(jobqueue_config(YAML)):
        cluster = make_jobqueue_cluster(kind, **options)
        try:
            return cluster.job_script()
        finally:
            cluster.close()


def _directives(script, prefix):
    return [line for line in script.splitlines() if line.startswith(prefix)]


def _check_prologue(script):
    lines = script.splitlines()
    if sys.prefix != sys.base_prefix:
        assert f"source {os.path.join(sys.prefix, 'bin', 'activate')}" in lines
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert f"export {var}=1" in lines
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in lines
    spawn = [x for x in lines if x.startswith("export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=")]
    assert len(spawn) == 1 and '"MALLOC_TRIM_THRESHOLD_": None' in spawn[0]
    worker = lines[-1]
    assert f"{sys.executable} -m distributed.cli.dask_worker" in worker
    # the prologue comes before the worker
    assert lines.index(spawn[0]) < len(lines) - 1
    return worker


def test_pbs_job_script_from_yaml():
    script = _script("pbs")
    print(script)
    assert _directives(script, "#PBS") == [
        "#PBS -N daskorym-worker",
        "#PBS -q workq",
        "#PBS -A myproject",
        "#PBS -l select=1:ncpus=1:mem=4096MB",
        "#PBS -l walltime=01:00:00",
    ]
    worker = _check_prologue(script)
    assert "--nthreads 1" in worker and "--memory-limit 4.00GiB" in worker
    assert "--death-timeout 120" in worker


def test_pbs_job_script_overrides_and_gpus():
    script = _script("pbs", cores=4, memory="16GiB", walltime="02:30:00", queue="gpu",
                     account="proj2", gpus=2, job_script_prologue=["module load cuda"])
    print(script)
    assert _directives(script, "#PBS") == [
        "#PBS -N daskorym-worker",
        "#PBS -q gpu",
        "#PBS -A proj2",
        "#PBS -l select=1:ncpus=4:mem=16GB:ngpus=2",
        "#PBS -l walltime=02:30:00",
    ]
    lines = script.splitlines()
    assert lines.index("module load cuda") < lines.index("export OMP_NUM_THREADS=1")
    worker = _check_prologue(script)
    assert "--nthreads 4" in worker and "--resources GPU=2" in worker


def test_slurm_job_script_from_yaml():
    script = _script("slurm")
    print(script)
    assert _directives(script, "#SBATCH") == [
        "#SBATCH -J daskorym-worker",
        "#SBATCH -p debug",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4G",
        "#SBATCH -t 01:00:00",
    ]
    worker = _check_prologue(script)
    assert "--nthreads 1" in worker and "--memory-limit 4.00GiB" in worker


def test_slurm_job_script_overrides_and_gpus(tmp_path):
    script = _script("slurm", cores=8, memory="32GiB", walltime="00:10:00", queue="gpu",
                     account="proj", gpus=1, processes=2, local_directory=str(tmp_path),
                     job_extra_directives=["--constraint=a100"])
    print(script)
    assert _directives(script, "#SBATCH") == [
        "#SBATCH -J daskorym-worker",
        "#SBATCH -p gpu",
        "#SBATCH -A proj",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH -t 00:10:00",
        "#SBATCH --constraint=a100",
        "#SBATCH --gres=gpu:1",
    ]
    worker = _check_prologue(script)
    assert "--nworkers 2" in worker and "--nthreads 4" in worker
    assert f"--local-directory {tmp_path}" in worker and "--resources GPU=1" in worker


def test_unknown_batch_system():
    from daskorym.config import ConfigError
    with pytest.raises(ConfigError, match="unknown batch system"):
        make_jobqueue_cluster("lsf")
