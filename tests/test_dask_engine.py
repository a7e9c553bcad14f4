"""The Dask engine gives the local engine's numbers, with 1 and 2 real worker processes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from distributed import Client

from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import make_local_cluster
from conftest import relative_differences, run_reconstruction, small_settings


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def client(request):
    cluster = make_local_cluster(request.param)
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("mode, exchange", [("dp", "scheduler"), ("do", "scheduler"),
                                            ("h5", "scheduler"), ("dp", "direct"),
                                            ("do", "direct")])
@pytest.mark.parametrize("case", ["small_2d", "small_3d"])
def test_dask_equals_local(case, mode, exchange, client, tmp_path, request):
    data = request.getfixturevalue(case)
    groups = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"store_checkpoint": False})
    local = small_settings(data, tmp_path / "local", execution={"mode": mode, "precision": "float64"},
                           **groups)
    dask = small_settings(data, tmp_path / "dask", execution={"mode": mode, "engine": "dask",
                                                              "precision": "float64",
                                                              "exchange": exchange}, **groups)
    rel, rel_loss = relative_differences(run_reconstruction(local),
                                         run_reconstruction(dask, client=client))
    n = len(client.scheduler_info()["workers"])
    print(f"{case} {mode} {exchange} {n} worker(s): object rel. diff {rel:.2e}, loss rel. diff {rel_loss:.2e}")
    assert rel < 1e-5 and rel_loss < 1e-5


@pytest.mark.parametrize("lookahead", [0, 1])
def test_batches_in_flight_with_checkpoints_equal_local(small_3d, client, tmp_path, lookahead,
                                                         monkeypatch):
    """Only the object refined: the Dask engine hands back the loss to be read later (the
    loop reads it after ``lookahead`` more batches); with checkpoints every 3 batches and a
    resume mid-run it still gives the local engine's numbers, with and without batches in
    flight."""
    from daskorym.execution.dask_engine import DaskReconstruction
    monkeypatch.setattr(DaskReconstruction, "lookahead", lookahead)
    common = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"n_batch_per_checkpoint": 3})
    local = small_settings(small_3d, tmp_path / "local", execution={"precision": "float64"},
                           **common)
    dask = small_settings(small_3d, tmp_path / "dask", execution={"engine": "dask",
                                                                  "precision": "float64"},
                          **common)
    obj_l, loss_l = run_reconstruction(local)
    with DaskReconstruction(dask, client=client) as rec:
        late = rec._run_batch(_first_spec(rec))
        assert callable(late) and np.isfinite(late())  # the loss is read when asked for
    dask2 = small_settings(small_3d, tmp_path / "dask2", execution={"engine": "dask",
                                                                    "precision": "float64"},
                           **common)
    with make_reconstruction(dask2, client=client) as rec:
        rec.run(1)
    dask2["output"]["resume"] = True
    obj_d, loss_d = run_reconstruction(dask2, client=client)
    assert np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l) < 1e-5
    second = loss_l[len(loss_l) // 2:]  # the resumed run's own history: the second epoch
    assert len(loss_d) == len(second) and np.max(np.abs(loss_d - second) / second) < 1e-5
    csv = (tmp_path / "dask2" / "loss.csv").read_text().strip().splitlines()
    assert len(csv) - 1 == len(loss_l)


def _step_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("daskorym-slab")]


def test_direct_exchange_checkpoints_resume_and_small_parameters(small_3d, client, tmp_path):
    """Slab owners as actors (``exchange = 'direct'``): several minibatches per call and
    more in flight, checkpoints every 3 batches (a call sent before it is full) and a resume
    mid-run give the local engine's numbers; with the probe refined too (small gradients
    applied on the client between minibatches: one minibatch per call) as well."""
    common = dict(optimization={"n_epochs": 2, "minibatch_size": 8},
                  output={"n_batch_per_checkpoint": 3})
    ex = {"engine": "dask", "precision": "float64", "exchange": "direct"}
    obj_l, loss_l = run_reconstruction(small_settings(
        small_3d, tmp_path / "local", execution={"precision": "float64"}, **common))
    direct = small_settings(small_3d, tmp_path / "direct", execution=ex, **common)
    with make_reconstruction(direct, client=client) as rec:
        assert type(rec).__name__ == "DirectDaskReconstruction"
        assert rec.steps_per_call > 1 and rec.lookahead == 2 * rec.steps_per_call
        sizes, send = [], rec._send_steps
        rec._send_steps = lambda: (sizes.append(len(rec._outbox)), send())
        rec.run(1)
        # an idle owner keeps no step thread (its thread ends when no step is queued)
        deadline = time.monotonic() + 5
        while any(client.run(_step_threads).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(client.run(_step_threads).values())
    assert sum(sizes) == len(loss_l) // 2 and max(sizes) > 1  # every batch, some together
    direct["output"]["resume"] = True
    obj_d, loss_d = run_reconstruction(direct, client=client)
    assert np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l) < 1e-5
    second = loss_l[len(loss_l) // 2:]
    assert len(loss_d) == len(second) and np.max(np.abs(loss_d - second) / second) < 1e-5
    probe = dict(parameters={"probe": {"optimize": True, "step_size": 1e-3}},
                 optimization={"n_epochs": 2, "minibatch_size": 8},
                 output={"store_checkpoint": False})
    obj_l, loss_l = run_reconstruction(small_settings(
        small_3d, tmp_path / "local_p", execution={"precision": "float64"}, **probe))
    obj_d, loss_d = run_reconstruction(small_settings(
        small_3d, tmp_path / "direct_p", execution=ex, **probe), client=client)
    assert np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l) < 1e-5
    assert np.max(np.abs(loss_d - loss_l) / loss_l) < 1e-5


def test_direct_exchange_beside_another_client(small_2d, client, tmp_path):
    """A session holding two clients (the other one made last, so the default): the direct
    exchange's actor handles talk to this run's cluster, and the run gives the local
    engine's numbers."""
    groups = dict(optimization={"n_epochs": 1, "minibatch_size": 8},
                  output={"store_checkpoint": False})
    obj_l, _ = run_reconstruction(small_settings(
        small_2d, tmp_path / "local", execution={"precision": "float64"}, **groups))
    other = make_local_cluster(1)
    try:
        with Client(other) as c2:
            from distributed import default_client
            assert default_client() is c2
            with make_reconstruction(small_settings(small_2d, tmp_path / "direct", execution={
                    "engine": "dask", "precision": "float64", "exchange": "direct"},
                    **groups), client=client) as rec:
                assert all(a._client is client for a in rec._actors)  # not the default c2
                rec.run()
                obj_d = rec.object.copy()
    finally:
        other.close()
    assert np.linalg.norm(obj_d - obj_l) / np.linalg.norm(obj_l) < 1e-5


def test_direct_exchange_is_refused_in_h5_mode(small_2d, tmp_path):
    from daskorym.config import ConfigError
    s = small_settings(small_2d, tmp_path / "x", execution={"engine": "dask", "mode": "h5",
                                                            "exchange": "direct"})
    with pytest.raises(ConfigError, match="exchange = 'direct' applies to modes"):
        make_reconstruction(s)


def _first_spec(rec):
    from daskorym.engine.schedule import epoch_batches
    s = rec.settings
    return epoch_batches(s.optimization.seed, 0, rec.problem.n_theta, rec.problem.n_tiles,
                         s.optimization.minibatch_size)[0]


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


def test_whole_slabs_assemble_as_cut_pieces():
    """A gradient task given whole rotated slabs (``SLAB`` items) builds the same chunk as
    from pieces cut on the owners, for regions inside, across and beyond the slabs."""
    from daskorym.execution import tasks
    from daskorym.physics import Region
    rng = np.random.default_rng(0)
    obj = rng.normal(size=(10, 7, 3, 2))
    bounds = [(0, 4), (4, 8), (8, 10)]
    fill = (0.5, -1.0)
    for region in (Region(1, 2, 3, 3), Region(-2, -1, 14, 9), Region(3, 5, 6, 4),
                   Region(2, 8, 3, 2), Region(-3, -3, 2, 3)):  # (the last two: outside)
        under = [(a, b) for a, b in bounds if a < region.y0 + region.ny and b > region.y0]
        cut = [tasks.cut_piece(obj[a:b], a, region, fill) for a, b in under]
        whole = [(tasks.SLAB, a, obj[a:b]) for a, b in under]
        ref = tasks.assemble(region, cut, (3, 2), fill, obj.dtype)
        into = np.full((region.ny + 2, region.nx + 1, 3, 2), 7.0)  # a view of a larger array
        tasks.assemble(region, whole, (3, 2), fill, obj.dtype, out=into[1:-1, 1:])
        assert np.array_equal(into[1:-1, 1:], ref) and (into[0] == 7).all() and \
            (into[:, 0] == 7).all() and (into[-1] == 7).all()
        mixed = tasks.assemble(region, whole[:1] + cut[1:], (3, 2), fill, obj.dtype)
        assert np.array_equal(tasks.assemble(region, whole, (3, 2), fill, obj.dtype), ref)
        assert np.array_equal(mixed, ref)
        # and both equal the region read from the whole object with the fill outside
        pad = np.empty((16, 13, 3, 2))
        pad[...] = fill
        pad[3:13, 3:10] = obj
        assert np.array_equal(ref, pad[region.y0 + 3:region.y0 + 3 + region.ny,
                                       region.x0 + 3:region.x0 + 3 + region.nx])
    # a slab above or below the region gives an empty piece
    for a, b in ((8, 10), (0, 2)):
        row, piece = tasks.cut_piece(obj[a:b], a, Region(3, 2, 4, 3), fill)
        assert piece.shape == (0, 3, 3, 2)


def test_slab_shares_add_up_to_the_whole_gradient():
    """Each owner adding only its slab's share of a gradient task's object gradient gives
    the same slabs as adding the whole result (box and mosaic parts, regions past the
    object's edges)."""
    from daskorym.execution import tasks
    from daskorym.physics import Region
    rng = np.random.default_rng(1)
    shape = (10, 7, 3, 2)
    bounds = [(0, 4), (4, 8), (8, 10)]
    g = rng.normal(size=(14, 9, 3, 2))
    for parts in ([(Region(-2, -1, 14, 9), 0, 0)],
                  [(Region(1, 0, 5, 4), 0, 0), (Region(5, 3, 6, 5), 5, 4)]):
        result = {"grads": {"obj": g}, "parts": parts}
        for a, b in bounds:
            whole = tasks.add_object_grad(np.zeros((b - a,) + shape[1:]), a, result)
            share = tasks.slab_share(result, a, b)
            assert all(e[3].shape[0] <= b - a for e in share["entries"])
            assert np.array_equal(tasks.add_object_grad(np.zeros((b - a,) + shape[1:]), a, share),
                                  whole)
            assert np.any(whole) or a == 8


def test_tile_groups_are_bands_of_rows():
    """With the tiles' rows given, each worker's group is a band of the object (sorted by
    row, split evenly); one worker keeps the minibatch's order."""
    from daskorym.execution.tasks import tile_groups
    tiles = np.array([10, 11, 12, 13, 14, 15, 16])
    rows = np.array([30.0, 0.0, 24.0, 6.0, 18.0, 12.0, 6.0])
    assert [g.tolist() for g in tile_groups(tiles, 2, rows)] == [[11, 13, 16, 15], [14, 12, 10]]
    assert [g.tolist() for g in tile_groups(tiles, 1, rows)] == [tiles.tolist()]
    assert len(tile_groups(tiles[:2], 3)) == 2


def test_slab_actor_runs_steps_in_order_and_keeps_no_idle_thread():
    """The owner's step queue (no cluster): steps run in the order of their numbers whatever
    the order the calls come in, several per call; the step thread ends when the next step
    has not come; an abort fails the steps still queued."""
    import asyncio

    from daskorym.execution import tasks
    from daskorym.execution.actors import PeerLost, SlabActor

    slab = np.zeros((4, 4, 1, 2))
    actor = SlabActor(0, [(0, 4)], tasks.SlabRecord(slab, {}, slab.copy()), None, (1.0, 0.0),
                      next_batch=5, timeout=5.0, authkey=b"k" * 32)
    ran = []

    def step(key, theta, work, update):
        ran.append(key[0])
        return float(key[0]), {}
    actor._step = step

    def item(i):
        return ((i, 0, 0), 0.0, None, None)

    async def main():
        later = asyncio.ensure_future(actor.steps([item(7), item(8)]))  # before 5 and 6
        await asyncio.sleep(0.05)
        assert not later.done() and ran == []
        first = await asyncio.wait_for(actor.steps([item(5), item(6)]), 5)
        assert first == [(5.0, {}), (6.0, {})]
        assert await asyncio.wait_for(later, 5) == [(7.0, {}), (8.0, {})]
        assert ran == [5, 6, 7, 8]
        for _ in range(100):  # the thread ends once no step is queued
            if not _step_threads():
                break
            await asyncio.sleep(0.01)
        assert not _step_threads()
        stuck = asyncio.ensure_future(actor.steps([item(10)]))  # 9 never comes
        await asyncio.sleep(0.05)
        await actor.abort()
        with pytest.raises(PeerLost):
            await asyncio.wait_for(stuck, 5)
        with pytest.raises(PeerLost):
            await actor.steps([item(9)])

    asyncio.run(main())
