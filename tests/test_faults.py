"""Faults with real processes: a Dask worker killed (SIGKILL) in the middle of an epoch.

The run must notice, spread the object's slabs over the workers left (or the one the
nanny starts in its place), go back to the start of the epoch and end with the object a
run without the fault gives.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from distributed import Client

from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import make_local_cluster
from conftest import small_settings


@pytest.fixture
def client():
    """A fresh 2-worker cluster per test (killed workers are not always back in time)."""
    cluster = make_local_cluster(2)
    with Client(cluster) as c:
        yield c
    cluster.close()


def _settings(data, folder, mode, **execution):
    return small_settings(data, folder, execution=dict(engine="dask", mode=mode,
                                                       precision="float64", **execution),
                          optimization={"n_epochs": 3, "minibatch_size": 8},
                          output={"store_checkpoint": False})


def _kill_owner_during(rec, client, epoch: int, batch: int, killed: list) -> None:
    """SIGKILL the process of the first slab's owner when the run reaches ``(epoch, batch)``
    (after the previous batch's tasks were submitted, so some are in flight)."""
    run_batch = rec._run_batch
    seen = []  # the minibatches handed to the engine in that epoch (some are still running)

    def hooked(spec):
        if rec.epoch == epoch:
            seen.append(spec)
        if not killed and rec.epoch == epoch and len(seen) == batch + 1:
            owner = rec.owners[0]
            pid = client.run(os.getpid, workers=[owner])[owner]
            os.kill(pid, signal.SIGKILL)
            killed.append((owner, pid))
        return run_batch(spec)
    rec._run_batch = hooked


@pytest.mark.parametrize("mode", ["dp", "do", "h5", "dp-direct", "do-direct"])
def test_worker_killed_mid_epoch(small_3d, client, tmp_path, mode):
    mode, _, exchange = mode.partition("-")
    extra = {"exchange": exchange} if exchange else {}
    with make_reconstruction(_settings(small_3d, tmp_path / "ref", mode, **extra),
                             client=client) as rec:
        rec.run()
        ref = rec.object.copy()
        ref_loss = [h[2] for h in rec.history]
    killed = []
    with make_reconstruction(_settings(small_3d, tmp_path / "kill", mode, **extra),
                             client=client) as rec:
        n_batches = len([h for h in rec.history])  # 0: nothing ran yet
        assert n_batches == 0
        _kill_owner_during(rec, client, epoch=1, batch=3, killed=killed)
        rec.run()
        obj = rec.object.copy()
        loss = [h[2] for h in rec.history]
        recoveries = list(rec.recoveries)
        n_end = len(rec.workers)  # the nanny's replacement is dealt slabs at an epoch start
        csv = rec.out.read_loss()
    rel = np.linalg.norm(obj - ref) / np.linalg.norm(ref)
    print(f"{mode}: killed {killed}; recoveries {recoveries}; {n_end} workers at the end; "
          f"object rel. diff {rel:.2e}")
    assert killed and len(recoveries) == 1
    epoch, batch, reason, n_workers = recoveries[0]
    assert (epoch, batch) == (1, 0) and killed[0][0] in reason and n_workers >= 1
    assert rec.epoch == 3 and len(loss) == len(ref_loss)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert len(csv["loss"]) == len(ref_loss)  # the redone epoch's rows are not doubled
    assert rel < 1e-5


def test_recovery_off_fails_clearly(small_2d, client, tmp_path):
    killed = []
    s = _settings(small_2d, tmp_path / "off", "dp", recovery="off")
    with make_reconstruction(s, client=client) as rec:
        _kill_owner_during(rec, client, epoch=0, batch=2, killed=killed)
        with pytest.raises(Exception) as info:
            rec.run()
    print(f"recovery off: {type(info.value).__name__}: {info.value}")
    assert killed and not isinstance(info.value, AssertionError)
