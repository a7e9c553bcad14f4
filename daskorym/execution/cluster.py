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


# distributed keeps the last ``distributed.admin.low-level-log-length`` (default 1000) payloads
# of every batched connection for debugging (``BatchedSend.recent_message_log``), and with them
# every task sent: the Dask engine puts each batch's measured data in its gradient task, so the
# client held ~240 MB of already-computed graphs in the 2D bench case after ~27 epochs (and the
# scheduler the same per worker connection).  The same key bounds other developer logs
# (transitions, events).
LOG_LENGTH = 100


def short_logs() -> None:
    """Make :data:`LOG_LENGTH` the default of ``distributed.admin.low-level-log-length`` in
    this process (a value the user configured is kept).  Called before a client, scheduler or
    worker is made: the logs take their length when they are made; workers started by a
    nanny of this process inherit it."""
    import dask
    import distributed  # noqa: F401 - its defaults first, or ours would be overridden

    dask.config.update_defaults({"distributed": {"admin": {"low-level-log-length": LOG_LENGTH}}})


# Every Dask server (scheduler, nannies, workers) runs a callback each
# ``distributed.admin.tick.interval`` (default 20 ms) that only measures how late its event
# loop is (for the "event loop was unresponsive" log and the dashboard).  On a workstation
# the local cluster's processes share the cores with the computation: at 20 ms the ticks
# took ~0.03 s CPU per second of a 2-worker run on 2 cores (3D bench case); Dask's own test
# suite runs at 500 ms.  Used for the clusters daskorym makes, unless the user set a value.
LOCAL_TICK = "500ms"


def make_local_cluster(n_workers: int, threads: int = 1, memory_limit="auto", **kw):
    """A ``LocalCluster`` of single-threaded worker processes with :func:`worker_environment`
    (and :func:`short_logs`, :data:`LOCAL_TICK`)."""
    import dask
    from distributed import LocalCluster

    short_logs()
    key, tick = "distributed.admin.tick.interval", {}
    if dask.config.get(key) == dask.config.get(key, config=dask.config.merge(
            *dask.config.defaults)):  # not set by the user
        tick = {key: LOCAL_TICK}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(threads),
                          **WORKER_CONFIG, **tick}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", memory_limit=memory_limit, **kw)


JOBQUEUE_SYSTEMS = ("slurm", "pbs")


def worker_prologue(threads: int = 1) -> list[str]:
    """Shell lines run in each batch job before its worker starts.

    They activate this process's virtual environment (if any), export
    :func:`worker_environment`, turn the worker profiler off (:data:`WORKER_CONFIG`) and drop
    the nanny's ``MALLOC_TRIM_THRESHOLD_`` (see :func:`worker_environment`) through Dask's
    environment-variable configuration, which the job's nanny and worker read.
    """
    import shlex
    import sys

    lines = []
    if sys.prefix != sys.base_prefix:  # a venv: its activate script
        lines.append(f"source {shlex.quote(os.path.join(sys.prefix, 'bin', 'activate'))}")
    env = worker_environment(threads)
    lines += [f"export {k}={v}" for k, v in env.items()]
    # a Python literal (Dask parses such variables with ast.literal_eval); None unsets
    pre_spawn = ", ".join([f'"{k}": "{v}"' for k, v in env.items()]
                          + ['"MALLOC_TRIM_THRESHOLD_": None'])
    lines.append(f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON='{{{pre_spawn}}}'")
    for key, value in WORKER_CONFIG.items():
        var = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        lines.append(f"export {var}={value}")
    return lines


def _squeue(kind: str) -> str:
    """The batch system's queue for this user, or a note that it cannot be read."""
    import getpass
    import shutil
    import subprocess

    cmd = (["squeue", "-u", getpass.getuser(), "-o", "%.12i %.20j %.9T %.10M %R"]
           if kind == "slurm" else ["qstat", "-u", getpass.getuser()])
    if shutil.which(cmd[0]) is None:
        return f"({cmd[0]} not found)"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip() or "(empty)"
    except Exception as e:  # noqa: BLE001 - only for the error message
        return f"({' '.join(cmd)} failed: {e})"


def jobqueue_config(path) -> dict:
    """A jobqueue YAML file (like ``deploy/jobqueue.yaml``) as dotted keys for ``dask.config.set``.

    Setting the keys one by one keeps dask-jobqueue's defaults for the keys the file leaves
    out (``dask.config.set({"jobqueue": ...})`` would replace the whole section).
    """
    import dask_jobqueue  # noqa: F401 - registers the defaults before any set() over them
    import yaml

    with open(path) as f:
        tree = yaml.safe_load(f) or {}

    def flat(prefix, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                yield from flat(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            yield prefix, value
    return dict(flat("", tree))


def make_jobqueue_cluster(kind: str, threads: int = 1, memory_limit=None,
                          n_workers: int | None = None, **options):
    """A dask-jobqueue ``SLURMCluster`` / ``PBSCluster``, its jobs not yet submitted.

    ``options`` (daskorym's names first, then any keyword of the cluster class, e.g.
    ``local_directory``, ``log_directory``, ``interface``, ``job_name``): ``cores``,
    ``memory``, ``processes`` (1 per job unless configured), ``walltime``, ``queue``,
    ``account``, ``gpus`` (SLURM: ``--gres=gpu:G``; PBS: ``:ngpus=G`` in the select line; the
    workers then declare the resource ``GPU=G`` for ``execution.gpu_tasks``). Values not
    given come from Dask's ``jobqueue.<kind>`` configuration (``deploy/jobqueue.yaml``
    copied to ``~/.config/dask/``, or ``DASK_CONFIG``), and without those from here:
    cores = ``threads``, memory = ``memory_limit`` or 4 GiB, processes = 1.
    The scale-related keys (jobs, adapt, ...) are handled by :func:`connect`.
    """
    import dask

    if kind == "slurm":
        from dask_jobqueue import SLURMCluster as cls
    elif kind == "pbs":
        from dask_jobqueue import PBSCluster as cls
    else:
        raise ConfigError(f"unknown batch system {kind!r}; expected one of {JOBQUEUE_SYSTEMS}")
    opts = {k: v for k, v in options.items() if v is not None}
    conf = dask.config.get(f"jobqueue.{kind}", default={}) or {}

    def default(key, value):
        if key not in opts and conf.get(key.replace("_", "-")) is None:
            opts[key] = value
    default("cores", int(threads))
    default("memory", memory_limit or "4GiB")
    default("processes", 1)
    # the configured lists are kept; ours are added to them
    prologue = list(opts.pop("job_script_prologue", None)
                    or conf.get("job-script-prologue") or [])
    opts["job_script_prologue"] = prologue + worker_prologue(threads)
    gpus = int(opts.pop("gpus", 0) or 0)
    if gpus:
        directives = list(opts.pop("job_extra_directives", None)
                          or conf.get("job-extra-directives") or [])
        if kind == "slurm":
            opts["job_extra_directives"] = directives + [f"--gres=gpu:{gpus}"]
        else:
            if directives:
                opts["job_extra_directives"] = directives
            if "resource_spec" not in opts and conf.get("resource-spec") is None:
                from dask.utils import parse_bytes
                from dask_jobqueue.pbs import pbs_format_bytes_ceil
                cores = opts.get("cores") or conf.get("cores")
                mem = pbs_format_bytes_ceil(parse_bytes(opts.get("memory") or conf.get("memory")))
                opts["resource_spec"] = f"select=1:ncpus={int(cores)}:mem={mem}:ngpus={gpus}"
        extra = list(opts.pop("worker_extra_args", None) or conf.get("worker-extra-args") or [])
        opts["worker_extra_args"] = extra + ["--resources", f"GPU={gpus}"]
    if "scheduler_options" not in opts and not conf.get("scheduler-options"):
        opts["scheduler_options"] = {"dashboard_address": ":0"}
    try:
        return cls(**opts)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"cannot make a {cls.__name__}: {e}") from e


def connect(client=None, cluster: str = "local", n_workers: int | None = None, threads: int = 1,
            memory_limit: str | int | None = None, quiet: bool = False, *,
            jobqueue: dict | None = None, timeout: float | None = None):
    """``(client, cluster_or_None)``; the cluster is ours to close when we made it.

    ``cluster``: "local" (a ``LocalCluster`` of ``n_workers`` single-threaded worker
    processes, default: the machine's cores), "slurm" or "pbs" (dask-jobqueue: each worker
    is a batch job, see :func:`make_jobqueue_cluster`), or a scheduler address
    ("tcp://host:8786") or scheduler file (a path to a ``.json`` file, e.g. from dask-mpi).

    ``jobqueue`` (slurm/pbs only): ``jobs`` (default: ``n_workers`` / processes, or 1), or
    ``adapt=True`` with ``minimum_jobs`` / ``maximum_jobs`` for an adaptive cluster, and the
    options of :func:`make_jobqueue_cluster`. ``timeout`` (default 600 s, or
    ``jobqueue["timeout"]``): how long to wait for the workers; then a :class:`ConfigError`
    that shows the queue (``squeue``/``qstat``), and the jobs are cancelled. Closing the
    returned cluster cancels its jobs.
    """
    from distributed import Client

    if client is not None:
        return client, None
    short_logs()
    if cluster == "local":
        n = n_workers or os.cpu_count() or 1
        local = make_local_cluster(n, threads, memory_limit or "auto")
        # its workers are on this machine: calls and results go to them without a hop
        # through the scheduler (the direct exchange's actor calls included)
        made = Client(local, direct_to_workers=True)
    elif cluster in JOBQUEUE_SYSTEMS:
        made, local = _connect_jobqueue(cluster, n_workers, threads, memory_limit,
                                        dict(jobqueue or {}), timeout)
    elif cluster.endswith(".json") and os.path.exists(cluster):
        local, made = None, Client(scheduler_file=cluster)
    else:
        local, made = None, Client(cluster)
    if not quiet:
        print(f"daskorym: Dask dashboard at {made.dashboard_link}", flush=True)
    return made, local


def _close_quietly(*things) -> None:
    """Close clients/clusters on an error path without hiding the error being raised.

    (A job whose submission failed stays in state "created", and ``SpecCluster.close``
    then fails an assertion.)
    """
    for thing in things:
        try:
            thing.close()
        except Exception:  # noqa: BLE001
            pass


def _check_submission(kind: str, jq) -> None:
    """SLURM: ``sbatch --test-only`` of the job script, for an immediate, clear error when
    the partition, account, walltime or resources are refused (rather than a timeout)."""
    import shutil
    import subprocess
    import tempfile

    if kind != "slurm" or shutil.which("sbatch") is None:
        return
    script = jq.job_script()
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
        f.write(script)
        f.flush()
        try:
            r = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True,
                               text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return  # a slow controller: let the real submission and its timeout decide
    if r.returncode != 0:
        _close_quietly(jq)
        raise ConfigError(f"slurm refuses the worker job (sbatch --test-only):\n"
                          f"{(r.stdout + r.stderr).strip()}\njob script:\n{script}")


def _connect_jobqueue(kind, n_workers, threads, memory_limit, options, timeout):
    from distributed import Client

    jobs = options.pop("jobs", None)
    adapt = options.pop("adapt", False)
    minimum_jobs = options.pop("minimum_jobs", None)
    maximum_jobs = options.pop("maximum_jobs", None)
    timeout = options.pop("timeout", None) if timeout is None else timeout
    timeout = 600.0 if timeout is None else float(timeout)
    jq = make_jobqueue_cluster(kind, threads, memory_limit, **options)
    per_job = max(1, int(jq._dummy_job.worker_processes))
    _check_submission(kind, jq)
    if adapt or minimum_jobs is not None or maximum_jobs is not None:
        lo = int(minimum_jobs if minimum_jobs is not None else (jobs or 1))
        hi = int(maximum_jobs if maximum_jobs is not None else max(lo, jobs or 1))
        if not 1 <= lo <= hi:
            _close_quietly(jq)
            raise ConfigError(f"adaptive jobs: need 1 <= minimum_jobs ({lo}) <= maximum_jobs ({hi})")
        jq.adapt(minimum_jobs=lo, maximum_jobs=hi)
        n_jobs = lo
    else:
        n_jobs = int(jobs or -(-(n_workers or per_job) // per_job))
        if n_jobs < 1:
            _close_quietly(jq)
            raise ConfigError(f"jobs must be >= 1, not {n_jobs}")
        jq.scale(jobs=n_jobs)
    client = Client(jq)
    wanted = n_jobs * per_job
    try:
        client.wait_for_workers(wanted, timeout=timeout)
    except (TimeoutError, OSError) as e:  # distributed raises asyncio's/builtins' TimeoutError
        got = len(client.scheduler_info().get("workers", {}))
        queue = _squeue(kind)
        script = jq.job_script()
        unsubmitted = sum(getattr(w, "job_id", 1) is None for w in jq.workers.values())
        note = (f" {unsubmitted} job(s) were never submitted: {jq._dummy_job.submit_command} "
                f"failed (its error is logged above)." if unsubmitted else "")
        _close_quietly(client, jq)
        raise ConfigError(
            f"{kind}: {got} of {wanted} Dask worker(s) connected within {timeout:g} s "
            f"({n_jobs} job(s) x {per_job} worker(s)); the jobs were cancelled.{note} Jobs still "
            f"pending (queue full, partition/queue or resources not available) or failing at "
            f"start (see the job logs; log_directory= keeps them)?\nqueue:\n{queue}\n"
            f"job script:\n{script}") from e
    return client, jq
