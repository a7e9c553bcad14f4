"""Getting a Dask client: a given one, a local cluster, or a running scheduler."""

from __future__ import annotations

import os

from ..config import ConfigError


def connect(client=None, cluster: str = "local", n_workers: int | None = None, threads: int = 1,
            memory_limit: str | int | None = None, quiet: bool = False):
    """``(client, cluster_or_None)``; the cluster is ours to close when we made it.

    ``cluster``: "local" (a ``LocalCluster`` of ``n_workers`` single-threaded worker
    processes, default: the machine's cores) or a scheduler address
    ("tcp://host:8786").  "slurm" and "pbs" come with dask-jobqueue support.
    """
    from distributed import Client, LocalCluster

    if client is not None:
        return client, None
    if cluster == "local":
        n = n_workers or os.cpu_count() or 1
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                             dashboard_address=":0", memory_limit=memory_limit or "auto",
                             env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
        made = Client(local)
    elif cluster in ("slurm", "pbs"):
        raise ConfigError(f"cluster {cluster!r} is not available yet; start the scheduler "
                          f"yourself and pass its address")
    else:
        local, made = None, Client(cluster)
    if not quiet:
        print(f"daskorym: Dask dashboard at {made.dashboard_link}", flush=True)
    return made, local
