"""h5 mode reconstructs an object several times larger than each worker's memory limit.

The limit applies to the data a worker stores (task results: slab pieces, gradient
chunks); process-memory actions are off because torch's own code and thread pools take
~0.35 GiB per process before any work, more than the small limit used here.  The test
prints both the stored-data peak and the resident-memory growth after a torch warm-up.
"""

from __future__ import annotations

import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client

from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import make_local_cluster
from daskorym.simulate import simulate

LIMIT = 32 * 2 ** 20  # bytes per worker
SHAPE = (256, 256, 256)  # object: 256^3 x 2 x 4 B = 128 MiB = 4x the limit (5 such arrays on disk)


def _warm_up():
    """First use of torch's kernels (a one-time ~250 MiB of code and thread pools)."""
    import torch
    x = torch.randn(2, 32, 32, 8, dtype=torch.complex64, requires_grad=True)
    y = torch.fft.fft2(torch.exp(x.real) * x).abs().sum()
    y.backward()
    return True


def _start_sampler(dask_worker):
    """Peak resident memory and peak managed (stored task-result) bytes of this worker."""
    import os

    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    dask_worker._dk_peak = {"rss": rss(), "base": rss(), "managed": 0}
    dask_worker._dk_stop = threading.Event()

    def loop():
        while not dask_worker._dk_stop.is_set():
            peak = dask_worker._dk_peak
            peak["rss"] = max(peak["rss"], rss())
            peak["managed"] = max(peak["managed"], dask_worker.state.nbytes)
            time.sleep(0.005)
    threading.Thread(target=loop, daemon=True).start()


def _stop_sampler(dask_worker):
    dask_worker._dk_stop.set()
    slow = getattr(dask_worker.data, "slow", {})
    return dict(dask_worker._dk_peak, spilled=len(slow))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("ooc") / "big.h5"
    simulate("farfield_ptychography", path, progress=False, obj_shape=SHAPE,
             probe_shape=(32, 32), step_px=32, n_theta=2, theta_range_rad=(0.0, np.pi / 2))
    return path


def _settings(data, folder, mode):
    return {"dataset": {"path": str(data)}, "object": {"shape": list(SHAPE)},
            "optimization": {"n_epochs": 1, "minibatch_size": 4},
            "execution": {"engine": "dask", "mode": mode},
            "output": {"folder": str(folder), "progress": False, "store_checkpoint": False,
                       "preview_every_epochs": 1000, "preview_every_minutes": 1000}}


def test_h5_mode_object_larger_than_worker_memory(data, tmp_path):
    memory = {"distributed.worker.memory.target": 0.95,  # stored data beyond this would spill
              "distributed.worker.memory.spill": False,  # process memory (torch's own ~0.3 GB)
              "distributed.worker.memory.pause": False,  # is not held against the limit
              "distributed.worker.memory.terminate": False}
    with dask.config.set(memory):
        cluster = make_local_cluster(2, memory_limit=LIMIT)
    with cluster, Client(cluster) as client:
        client.run(_warm_up)
        client.run(_start_sampler)
        with make_reconstruction(_settings(data, tmp_path / "h5", "h5"), client=client,
                                 slab_height=8) as rec:
            rec.run()
            obj_h5 = rec.object
        peaks = client.run(_stop_sampler)
    for addr, p in peaks.items():
        print(f"worker {addr}: peak managed {p['managed'] / 2**20:.1f} MiB, peak RSS "
              f"{p['rss'] / 2**20:.0f} MiB (baseline {p['base'] / 2**20:.0f} MiB, growth "
              f"{(p['rss'] - p['base']) / 2**20:.0f} MiB), spilled keys {p['spilled']}")
        assert p["spilled"] == 0
        assert p["managed"] < LIMIT
    assert obj_h5.nbytes >= 4 * LIMIT

    with make_local_cluster(2) as cluster, Client(cluster) as client:  # memory enough for 'do'
        with make_reconstruction(_settings(data, tmp_path / "do", "do"), client=client,
                                 slab_height=8) as rec:
            rec.run()
            obj_do = rec.object
    rel = np.linalg.norm(obj_h5 - obj_do) / np.linalg.norm(obj_do)
    print(f"h5 vs do: relative difference {rel:.2e}")
    assert rel < 1e-5
