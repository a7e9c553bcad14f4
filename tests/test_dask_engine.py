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
