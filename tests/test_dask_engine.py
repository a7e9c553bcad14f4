"""The Dask engine gives the local engine's numbers, with 1 and 2 real worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import make_local_cluster
from conftest import small_settings


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def client(request):
    cluster = make_local_cluster(request.param)
    with Client(cluster) as c:
        yield c
    cluster.close()


def _run(settings, **kw):
    with make_reconstruction(settings, **kw) as rec:
        rec.run()
        return rec.object.copy(), np.array([h[2] for h in rec.history])


@pytest.mark.parametrize("mode", ["dp", "do", "h5"])
@pytest.mark.parametrize("case", ["small_2d", "small_3d"])
def test_dask_equals_local(case, mode, client, tmp_path, request):
    data = request.getfixturevalue(case)
    groups = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"store_checkpoint": False})
    local = small_settings(data, tmp_path / "local", execution={"mode": mode, "precision": "float64"},
                           **groups)
    dask = small_settings(data, tmp_path / "dask", execution={"mode": mode, "engine": "dask",
                                                              "precision": "float64"}, **groups)
    obj_l, loss_l = _run(local)
    obj_d, loss_d = _run(dask, client=client)
    rel = np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l)
    rel_loss = np.max(np.abs(loss_d - loss_l) / np.abs(loss_l))
    n = len(client.scheduler_info()["workers"])
    print(f"{case} {mode} {n} worker(s): object rel. diff {rel:.2e}, loss rel. diff {rel_loss:.2e}")
    assert rel < 1e-5 and rel_loss < 1e-5


def test_gradient_tasks_can_require_a_gpu_resource(small_2d, tmp_path):
    """With execution.gpu_tasks the gradient tasks run only on workers declaring "GPU"."""
    import dask
    from distributed import LocalCluster
    with dask.config.set({"distributed.worker.resources.GPU": 1}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                               dashboard_address=":0")
    with cluster, Client(cluster) as c:
        s = small_settings(small_2d, tmp_path / "gpu", execution={"engine": "dask",
                                                                  "gpu_tasks": True},
                           optimization={"n_epochs": 1}, output={"store_checkpoint": False})
        submitted = []
        original = c.submit

        def spy(fn, *args, **kw):
            submitted.append((getattr(fn, "__name__", str(fn)), kw.get("resources")))
            return original(fn, *args, **kw)
        c.submit = spy
        with make_reconstruction(s, client=c) as rec:
            rec.run()
    assert np.isfinite(rec.history[-1][2])
    grads = [r for name, r in submitted if name == "gradient_task"]
    assert grads and all(r == {"GPU": 1} for r in grads)
    assert all(r is None for name, r in submitted if name != "gradient_task")
