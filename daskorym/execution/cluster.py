"""Getting a Dask client: a given one, a local cluster, or a running scheduler."""

from __future__ import annotations

import os

from ..config import ConfigError


def worker_environment(threads: int = 1) -> dict[str, str]:
    """Environment of worker processes: thread counts, and *no* ``MALLOC_TRIM_THRESHOLD_``.

    distributed sets ``MALLOC_TRIM_THRESHOLD_`` for its workers; setting it (to any
    value) turns off glibc's dynamic mmap threshold, so every large temporary of a
    torch kernel is a fresh mmap: measured here, an FFT-and-exp loop ran 2-2.5x
    slower in such a worker than in a plain process.
    """
    n = str(int(threads))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


# The worker's statistical profiler samples every thread's stack every 10 ms, taking the GIL
# from the kernel's many small torch calls; off for daskorym's workers.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def make_local_cluster(n_workers: int, threads: int = 1, memory_limit="auto", **kw):
    """A ``LocalCluster`` of single-threaded worker processes with :func:`worker_environment`."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(threads),
                          **WORKER_CONFIG}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", memory_limit=memory_limit, **kw)


def connect(client=None, cluster: str = "local", n_workers: int | None = None, threads: int = 1,
            memory_limit: str | int | None = None, quiet: bool = False):
    """``(client, cluster_or_None)``; the cluster is ours to close when we made it.

    ``cluster``: "local" (a ``LocalCluster`` of ``n_workers`` single-threaded worker
    processes, default: the machine's cores) or a scheduler address
    ("tcp://host:8786").  "slurm" and "pbs" come with dask-jobqueue support.
    """
    from distributed import Client

    if client is not None:
        return client, None
    if cluster == "local":
        n = n_workers or os.cpu_count() or 1
        local = make_local_cluster(n, threads, memory_limit or "auto")
        made = Client(local)
    elif cluster in ("slurm", "pbs"):
        raise ConfigError(f"cluster {cluster!r} is not available yet; start the scheduler "
                          f"yourself and pass its address")
    else:
        local, made = None, Client(cluster)
    if not quiet:
        print(f"daskorym: Dask dashboard at {made.dashboard_link}", flush=True)
    return made, local
