"""CUDA checks (run by deploy/gpu-check.sh on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.losses import LSQLoss
from daskorym.models import MODELS
from conftest import relative_differences, run_reconstruction, small_settings
from model_cases import make_case

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_kernel_equals_cpu(name):
    model, params, batch, measured, _ = make_case(name, experiment=True)
    out = {}
    for device in ("cpu", "cuda"):
        be = get_backend("torch", "float64", device)
        out[device] = be.value_and_grad(
            lambda p: model.tile_loss(be, p, batch, measured, LSQLoss())[0], params,
            list(model.inputs))
    assert np.isclose(out["cpu"][0], out["cuda"][0], rtol=1e-10)
    for k in model.inputs:
        g_cpu, g_gpu = out["cpu"][1][k], out["cuda"][1][k]
        assert np.linalg.norm(g_cpu - g_gpu) <= 1e-9 * np.linalg.norm(g_cpu)


@pytest.mark.parametrize("mode", ["dp", "do"])
@pytest.mark.parametrize("case", ["small_2d", "small_3d"])
def test_cuda_reconstruction_equals_cpu(case, mode, tmp_path, request):
    """The local engine on CUDA reaches the CPU's object and losses (float64, 2 epochs)."""
    data = request.getfixturevalue(case)
    groups = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"store_checkpoint": False})
    cpu = run_reconstruction(small_settings(data, tmp_path / "cpu", execution={
        "mode": mode, "precision": "float64"}, **groups))
    gpu = run_reconstruction(small_settings(data, tmp_path / "gpu", execution={
        "mode": mode, "precision": "float64", "device": "cuda"}, **groups))
    rel, rel_loss = relative_differences(cpu, gpu)
    print(f"{case} {mode}: object rel. diff {rel:.2e}, loss rel. diff {rel_loss:.2e}")
    assert rel < 1e-8 and rel_loss < 1e-8


@pytest.mark.parametrize("exchange", ["scheduler", "direct"])
def test_dask_gpu_workers_equal_cpu(small_3d, exchange, tmp_path):
    """Two Dask worker processes computing on CUDA (declaring a GPU resource, which the
    scheduler exchange's gradient tasks ask for) reach the local CPU engine's result."""
    import dask
    from distributed import Client, LocalCluster
    groups = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"store_checkpoint": False})
    cpu = run_reconstruction(small_settings(
        small_3d, tmp_path / "cpu", execution={"precision": "float64"}, **groups))
    with dask.config.set({"distributed.worker.resources.GPU": 1}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    with cluster, Client(cluster) as c:
        gpu = run_reconstruction(small_settings(small_3d, tmp_path / "gpu", execution={
            "precision": "float64", "device": "cuda", "engine": "dask", "exchange": exchange,
            "gpu_tasks": exchange == "scheduler"}, **groups), client=c)
        devices = c.run(lambda: torch.cuda.is_initialized())
    rel, rel_loss = relative_differences(cpu, gpu)
    print(f"dask {exchange} on cuda: object rel. diff {rel:.2e}, loss rel. diff {rel_loss:.2e}")
    assert rel < 1e-5 and rel_loss < 1e-5
    assert all(devices.values()), devices  # the workers' computing ran on the GPU
