"""``daskorym bench``: time per epoch and peak memory for named standard cases.

Each case simulates its dataset (into a temporary folder), runs a few epochs
and reports the median time per epoch after the first (warm-up) epoch (the results written
after the last epoch are not timed), the peak resident memory sampled during the run, the
backend and thread count; for MPI runs also the share of time spent in collectives.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BenchCase:
    name: str
    description: str
    model: str
    simulate: dict
    settings: dict


CASES: dict[str, BenchCase] = {
    "2d": BenchCase(
        "2d", "2D far field: 256x256 object, 64x64 probe, 529 positions",
        "farfield_ptychography",
        dict(obj_shape=(256, 256), probe_shape=(64, 64), step_px=9, unknown_type="real_imag",
             noise="poisson", phase_max_rad=1.0, absorption=0.3),
        {"model": {"unknown_type": "real_imag"}, "object": {"shape": [256, 256, 1]},
         "optimization": {"minibatch_size": 32}}),
    "3d": BenchCase(
        "3d", "3D multislice ptycho-tomography: 64^3 object, 16 angles, 49 positions of 32x32",
        "farfield_ptychography",
        dict(obj_shape=(64, 64, 64), probe_shape=(32, 32), step_px=6, n_theta=16,
             theta_range_rad=(0.0, np.pi)),
        {"object": {"shape": [64, 64, 64]}, "optimization": {"minibatch_size": 49}}),
    "2dl": BenchCase(
        "2dl", "large 2D far field: 1024x1024 object, 128x128 probe, 4225 positions",
        "farfield_ptychography",
        dict(obj_shape=(1024, 1024), probe_shape=(128, 128), step_px=14,
             unknown_type="real_imag", noise="poisson", phase_max_rad=1.0, absorption=0.3),
        {"model": {"unknown_type": "real_imag"}, "object": {"shape": [1024, 1024, 1]},
         "optimization": {"minibatch_size": 32}}),
}


def ffts_per_position(geometry) -> int:
    """The fewest 2D FFTs one probe mode at one position needs per epoch: the forward
    model's (two per Fresnel step between slices, then one to the far field or two to a
    near-field detector) and as many again for the gradient (the adjoint of each)."""
    lz = geometry.obj_shape[2]
    if geometry.pure_projection or lz == 1:
        steps = 1
    elif geometry.slice_pos_m is not None:
        steps = len(geometry.slice_pos_m)
    else:
        steps = -(-lz // geometry.binning)
    far = all(d == float("inf") for d in geometry.free_prop_m)
    last = 1 if far else 2 * len(geometry.free_prop_m)
    return 2 * (2 * (steps - 1) + last)


def fft_seconds(shape: tuple[int, int], batch: int, *, threads: int = 1, device: str = "cpu",
                repeats: int = 50) -> float:
    """Time of one complex64 2D FFT of ``shape``, done ``batch`` at a time (torch,
    ``threads`` threads), in seconds per FFT: the fastest of ``repeats`` (a floor; the
    median moves with the machine's load and clock more than the minimum does)."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn((batch, *shape), dtype=torch.complex64, device=device)
        for _ in range(3):
            torch.fft.fft2(x)
        times = []
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.fft.fft2(x)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times) / batch
    finally:
        torch.set_num_threads(old)


def fft_floor(rec, *, threads: int = 1, device: str = "cpu") -> tuple[float, int]:
    """(seconds, number of FFTs): the epoch's minimum FFT work, timed here and now."""
    g = rec.problem.geometry
    probe = rec.params.get("probe")
    n_modes = int(np.shape(probe.value)[0]) if probe is not None else 1
    n_pos = rec.problem.n_theta * rec.problem.n_tiles
    n = ffts_per_position(g) * n_modes * n_pos
    batch = max(1, min(int(rec.settings.optimization.minibatch_size), rec.problem.n_tiles))
    return n * fft_seconds(tuple(g.probe_shape), batch * n_modes, threads=threads,
                           device=device), n


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss(pid: int | str = "self") -> int:
        """Resident memory in bytes of this process, or of process ``pid``."""
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2 ** 20


def run_case(case: BenchCase, *, n_epochs: int = 3, backend: str = "torch",
             device: str = "cpu", threads: int = 1, workdir: Path | None = None,
             engine: str = "local", n_workers: int = 1, mode: str = "dp",
             exchange: str = "scheduler") -> dict[str, Any]:
    """Simulate and reconstruct one case; a dict of its measurements.

    With ``engine="dask"`` a local cluster of ``n_workers`` single-threaded worker
    processes is started first (not timed); the peak memory is then the largest
    worker's resident memory.  With ``engine="mpi"`` every rank of the ``mpiexec`` run
    calls this; rank 0 simulates, the peak memory is the largest rank's, and
    ``comm_share`` is the largest rank's share of time in MPI collectives.
    """
    from .execution import make_reconstruction
    from .execution.comm import get_comm, max_op

    comm = get_comm() if engine == "mpi" else None
    rank = comm.Get_rank() if comm is not None else 0
    with _shared_tmpdir(comm, workdir) as tmp:
        data = Path(tmp) / "data.h5"
        if rank == 0:
            from .simulate import simulate
            simulate(case.model, data, progress=False, **case.simulate)
        if comm is not None:
            comm.Barrier()
        settings = json.loads(json.dumps(case.settings))
        settings["dataset"] = {"path": str(data)}
        # one epoch more than timed: the results written after the last epoch are not timed
        settings["optimization"]["n_epochs"] = n_epochs + 1
        settings["execution"] = {"backend": backend, "device": device, "threads": threads,
                                 "engine": engine, "mode": mode}
        if engine == "dask":
            settings["execution"]["exchange"] = exchange
        settings["output"] = {"folder": str(Path(tmp) / "out"), "progress": False,
                              "store_checkpoint": False, "preview_every_epochs": 10 ** 6,
                              "preview_every_minutes": 10 ** 6}
        times, comm_times, cpu_times = [], [], []
        gpu = device != "cpu" and engine != "dask"  # the GPU memory of this process
        if gpu:
            import torch
            torch.cuda.reset_peak_memory_stats(device)
        with _client(engine, n_workers) as client:
            kw = {"client": client} if client is not None else {}
            with make_reconstruction(settings, **kw) as rec, PeakRSS() as mem:
                for _ in range(n_epochs):
                    c0 = getattr(rec, "comm_seconds", 0.0)
                    t0, p0 = time.perf_counter(), time.process_time()
                    rec.run(1)
                    times.append(time.perf_counter() - t0)
                    cpu_times.append(time.process_time() - p0)
                    comm_times.append(getattr(rec, "comm_seconds", 0.0) - c0)
                # the error reached: the mean loss over the last epoch's minibatches (the
                # last minibatch's own loss moves with rounding and with which tiles it holds)
                last = rec.history[-1][0]
                final_loss = statistics.fmean(h[2] for h in rec.history if h[0] == last)
                floor_s, n_ffts = fft_floor(rec, threads=threads, device=device)
                n_batches = len(rec.history) // n_epochs
            if client is not None:
                peak_mb = max(client.run(PeakRSS.rss).values()) / 2 ** 20
            else:
                peak_mb = mem.peak_mb
        gpu_peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20 if gpu else None
    steady = times[1:] or times
    s_per_epoch = statistics.median(steady)
    # CPU seconds of this process: the epoch's work for the local and MPI engines (for the
    # Dask engine it runs in the workers: None)
    cpu = statistics.median(cpu_times[1:] or cpu_times) if engine != "dask" else None
    steady_comm = comm_times[1:] or comm_times
    comm_share = sum(steady_comm) / sum(steady)
    if comm is not None:  # the slowest rank's view; CPU time summed over the ranks
        cpu = comm.allreduce(cpu)
        peak_mb = comm.allreduce(peak_mb, op=max_op())
        comm_share = comm.allreduce(comm_share, op=max_op())
        n_workers = comm.Get_size()
    label = "local" if engine == "local" else f"{engine}-{n_workers}"
    if engine == "dask" and exchange == "direct":
        label += "-direct"
    return {"case": case.name, "description": case.description, "backend": backend,
            "device": device, "threads": threads, "engine": label, "mode": mode,
            "epochs": n_epochs, "batches_per_epoch": n_batches,
            "s_per_epoch": s_per_epoch, "first_epoch_s": times[0],
            "cpu_s_per_epoch": cpu, "fft_floor_s": floor_s, "ffts_per_epoch": n_ffts,
            "cpu_over_floor": None if cpu is None else cpu / floor_s,
            "wall_over_floor": s_per_epoch / floor_s, "gpu_peak_mb": gpu_peak_mb,
            "comm_share": comm_share if engine == "mpi" else None,
            "peak_rss_mb": peak_mb, "final_loss": final_loss}


class _shared_tmpdir:
    """A temporary folder; under MPI rank 0 makes it, every rank gets its path."""

    def __init__(self, comm, workdir) -> None:
        self.comm, self.workdir, self._tmp = comm, workdir, None

    def __enter__(self) -> str:
        rank = self.comm.Get_rank() if self.comm is not None else 0
        path = None
        if rank == 0:
            self._tmp = tempfile.TemporaryDirectory(dir=self.workdir)
            path = self._tmp.name
        return self.comm.bcast(path, root=0) if self.comm is not None else path

    def __exit__(self, *exc) -> None:
        if self.comm is not None:
            self.comm.Barrier()
        if self._tmp is not None:
            self._tmp.cleanup()


class _client:
    """A local Dask cluster for the Dask rows of the bench (None for the local engine).

    With ``scheduler_process=True`` the ``LocalCluster`` (its scheduler and the workers'
    nannies) runs in a child process (:func:`_serve_cluster`) and this process holds only the
    ``Client``, so that this process's memory is daskorym's own; ``scheduler_pid`` is then
    the child's pid (else this process's)."""

    def __init__(self, engine: str, n_workers: int, *, scheduler_process: bool = False) -> None:
        self.engine, self.n_workers = engine, n_workers
        self.scheduler_process = scheduler_process
        self.client = self.cluster = self.proc = None

    @property
    def scheduler_pid(self) -> int:
        return self.proc.pid if self.proc is not None else os.getpid()

    def __enter__(self):
        if self.engine == "dask":
            from distributed import Client

            from .execution.cluster import short_logs
            short_logs()
            if self.scheduler_process:
                self.client = Client(self._start_process(), direct_to_workers=True)
            else:
                from .execution.cluster import make_local_cluster
                self.cluster = make_local_cluster(self.n_workers)
                self.client = Client(self.cluster, direct_to_workers=True)
        return self.client

    def _start_process(self) -> str:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c",
             f"from daskorym.bench import _serve_cluster; _serve_cluster({int(self.n_workers)})"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if line.startswith(_SERVE_MARK):
                return line[len(_SERVE_MARK):].strip()
        self._stop_process()
        raise RuntimeError("the cluster process ended before giving its scheduler address")

    def _stop_process(self) -> None:
        import subprocess

        try:
            self.proc.stdin.close()  # _serve_cluster closes the cluster and returns
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.proc is not None:
            self._stop_process()


_SERVE_MARK = "daskorym-scheduler-address: "


def _serve_cluster(n_workers: int) -> None:
    """Child process of ``_client(scheduler_process=True)``: a local cluster of ``n_workers``
    (:func:`~daskorym.execution.cluster.make_local_cluster`), its scheduler address printed,
    kept until stdin is closed (the parent done, or gone)."""
    import sys

    from .execution.cluster import make_local_cluster
    cluster = make_local_cluster(n_workers)
    try:
        print(_SERVE_MARK + cluster.scheduler_address, flush=True)
        sys.stdin.read()
    finally:
        cluster.close()


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'case':<5} {'engine':<13} {'mode':<4} {'backend':<9} {'device':<7} {'thr':>3} {'epochs':>6} " \
           f"{'s/epoch':>9} {'cpu s':>8} {'floor s':>8} {'x floor':>7} {'1st epoch s':>11} " \
           f"{'comm':>5} {'peak MB':>8} {'final loss':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<5} {r['engine']:<13} {r['mode']:<4} {r['backend']:<9} "
                     f"{r['device']:<7} {r['threads']:>3} "
                     f"{r['epochs']:>6} {r['s_per_epoch']:>9.3f} {_num(r.get('cpu_s_per_epoch'))} "
                     f"{r['fft_floor_s']:>8.4f} {_num(r.get('cpu_over_floor'), 7, 1)} "
                     f"{r['first_epoch_s']:>11.3f} "
                     f"{_share(r.get('comm_share')):>5} "
                     f"{r['peak_rss_mb']:>8.0f} {r['final_loss']:>11.4g}")
    lines += relative_lines(rows)
    return "\n".join(lines)


def relative_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Time per epoch of each engine relative to the local engine's, per case and backend.

    Repeated rows of one engine (``--engine local --engine dask-1 --engine local ...``,
    interleaved against drifting machine load) are pooled by their median.
    """
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["backend"], r["mode"]), {}).setdefault(
            r["engine"], []).append(r["s_per_epoch"])
    out = []
    for (case, backend, mode), by_engine in groups.items():
        if "local" not in by_engine or len(by_engine) < 2:
            continue
        ref = statistics.median(by_engine["local"])
        parts = [f"{e} {statistics.median(t) / ref:.2f}x (n={len(t)})"
                 for e, t in by_engine.items() if e != "local"]
        out.append(f"{case} {backend} {mode}: s/epoch relative to local "
                   f"(n={len(by_engine['local'])}): " + ", ".join(parts))
    return out


def _num(value, width: int = 8, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def run_bench(cases: list[str], *, n_epochs: int = 3, backends: tuple[str, ...] = ("torch",),
              device: str = "cpu", threads: int = 1, json_path: Path | None = None,
              engines: tuple[str, ...] = ("local",), mode: str = "dp") -> list[dict[str, Any]]:
    """Run the cases; ``engines`` entries: "local", "dask-1", "dask-2", ... (workers),
    "dask-N-direct" (``execution.exchange = "direct"``), or "mpi" (run under ``mpiexec -n N``;
    every rank calls this, rank 0 writes the JSON)."""
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; known: {sorted(CASES)}")
    rows = []
    for c in cases:
        for b in backends:
            for e in engines:
                name, _, n = e.partition("-")
                n, _, exchange = n.partition("-")
                if not (e in ("local", "mpi") or (name == "dask" and n.isdigit()
                                                  and exchange in ("", "direct"))):
                    raise ValueError(f"engine must be 'local', 'dask-N', 'dask-N-direct' or "
                                     f"'mpi', got {e!r}")
                rows.append(run_case(CASES[c], n_epochs=n_epochs, backend=b, device=device,
                                     threads=threads, engine=name, n_workers=int(n or 1),
                                     mode=mode, exchange=exchange or "scheduler"))
    rank = 0
    if "mpi" in engines:
        from .execution.comm import get_comm
        rank = get_comm().Get_rank()
    if json_path is not None and rank == 0:
        from .outputs import atomic_write_text
        atomic_write_text(Path(json_path), json.dumps(rows, indent=2))
    return rows


def run_split(case: BenchCase, n_procs: int, *, n_batches: int = 16, repeats: int = 3,
              threads: int = 1, workdir: Path | None = None) -> dict[str, Any]:
    """How much splitting the case's minibatches over ``n_procs`` processes can gain on this
    machine, with nothing exchanged: the bound any engine's ``n_procs`` workers or ranks
    stay under.

    The first ``n_batches`` minibatches of the first epoch are done by one process, then by
    ``n_procs`` processes at once, each taking what a slab owner of the Dask engine's direct
    exchange takes (its group of the minibatch's tiles and its y-slab of the object): the
    rotation of its slab to the batch's angle, the gradient of its tiles and the optimizer
    step on its slab, but neither the exchange of rotated slabs and gradient rows nor the
    assembly of the object chunk (each reads its chunks cut beforehand).  Times are per
    minibatch, the median of ``repeats`` passes; with several processes a pass lasts until
    the slowest one is done.
    """
    import multiprocessing

    from .engine.loop import Reconstruction, _chunk
    from .engine.schedule import epoch_batches
    from .execution import tasks
    from .execution.dask_engine import plan_groups
    from .simulate import simulate
    if n_procs < 2:
        raise ValueError(f"split needs at least 2 processes, got {n_procs}")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        data = Path(tmp) / "data.h5"
        simulate(case.model, data, progress=False, **case.simulate)
        settings = json.loads(json.dumps(case.settings))
        settings["dataset"] = {"path": str(data)}
        settings["execution"] = {"threads": threads}
        settings["output"] = {"folder": str(Path(tmp) / "out"), "progress": False,
                              "store_checkpoint": False}
        with Reconstruction(settings) as rec:
            prob, obj = rec.problem, rec.params["object"]
            opt = rec.settings.optimization
            specs = epoch_batches(opt.seed, 0, prob.n_theta, prob.n_tiles,
                                  opt.minibatch_size, opt.randomize_probe_pos)[:n_batches]
            g = prob.geometry
            if n_procs > g.obj_shape[0]:
                raise ValueError(f"split over {n_procs} processes: the object has only "
                                 f"{g.obj_shape[0]} rows to share out")
            update = (obj.optimizer.config(), 0,
                      tasks.SlabConstraints(g.unknown_type, obj.non_negativity, obj.object_type))
            shares = {n: [] for n in (1, n_procs)}
            for spec in specs:
                rotated = rec._rotated(spec.i_theta)
                theta = float(prob.theta_rad[spec.i_theta])
                for n in shares:
                    # the tiles and slabs as the Dask engine's direct exchange deals them
                    wrt, job, groups = plan_groups(rec, spec, n)
                    job = replace(job, wrt=tuple(k for k in wrt if k == "obj"))
                    work = [(job, tb, small, measured, _chunk(tb, rotated, prob.vacuum))
                            for _, tb, small, measured in groups]
                    work += [(job, None, None, None, None)] * (n - len(work))  # no tiles left
                    shares[n].append([w + (theta, y0, y1) for w, (y0, y1) in
                                      zip(work, tasks.even_slabs(g.obj_shape[0], n))])
            state = obj.state
            args = (prob.model, prob.loss, prob.mask, obj.value, state, update)
        ctx = multiprocessing.get_context("spawn")
        per_batch = {}
        for n in shares:
            barrier, queue = ctx.Barrier(n), ctx.Queue()
            procs = [ctx.Process(target=_split_worker,
                                 args=(args, [w[k] for w in shares[n]], repeats, barrier, queue))
                     for k in range(n)]
            for p in procs:
                p.start()
            try:
                times = [queue.get(timeout=600) for _ in procs]
            finally:
                for p in procs:
                    p.join(timeout=60)
                    if p.is_alive():
                        p.kill()
            if any(isinstance(t, str) for t in times):
                raise RuntimeError("a split process failed: " +
                                   "; ".join(t for t in times if isinstance(t, str)))
            # a pass lasts until its slowest process is done
            passes = [max(t[i] for t in times) for i in range(repeats)]
            per_batch[n] = statistics.median(passes) / len(specs)
    return {"case": case.name, "processes": n_procs, "batches": len(specs),
            "s_per_batch_1": per_batch[1], f"s_per_batch_{n_procs}": per_batch[n_procs],
            "speedup": per_batch[1] / per_batch[n_procs]}


def _split_worker(args, work, repeats, barrier, queue) -> None:
    """One process of :func:`run_split`: its share of every minibatch, ``repeats`` times."""
    try:
        from .execution import tasks
        model, loss, mask, obj, state, (cfg, i_update, cons) = args
        y0, y1 = work[0][6], work[0][7]
        slab = obj[y0:y1].copy()
        slab_state = {k: v[y0:y1].copy() for k, v in state.items()}
        grad = np.zeros_like(slab)

        def one_pass():
            nonlocal slab, slab_state, grad
            for job, tb, small, measured, chunk, theta, a, _ in work:
                tasks.rotate_slab(slab, theta)  # (what an owner would send; not read here)
                if tb is not None and job.wrt:
                    be = tasks.cached_backend(*job.backend)

                    def f(q, tb=tb, measured=measured, job=job):
                        return model.tile_loss(be, q, tb, measured, loss, mask,
                                               measured_fft_order=job.measured_fft_order)[0] \
                            / job.n_pix_global

                    _, grads = be.value_and_grad(f, dict(small, obj=chunk), list(job.wrt))
                    tasks.add_object_grad(grad, a, {"grads": grads, "parts": tb.parts()})
                slab, slab_state, grad = tasks.update_slab(slab, grad, slab_state, theta, cfg,
                                                           i_update, cons)

        one_pass()  # warm-up (FFT plans, caches)
        times = []
        for _ in range(repeats):
            barrier.wait(timeout=600)
            t0 = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t0)
        queue.put(times)
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        barrier.abort()  # the others stop waiting for this one
        queue.put(f"{type(err).__name__}: {err}")


SOAK_CASE = BenchCase(
    "soak", "small 2D far field: 48x48 object, 16x16 probe, 64 positions (Dask engine)",
    "farfield_ptychography",
    dict(obj_shape=(48, 48), probe_shape=(16, 16), step_px=4, unknown_type="real_imag"),
    {"model": {"unknown_type": "real_imag"}, "object": {"shape": [48, 48, 1]},
     "optimization": {"minibatch_size": 16}})


def run_soak(n_epochs: int = 500, *, n_workers: int = 2, mode: str = "dp",
             warmup: int | None = None, report_every: int = 50, workdir: Path | None = None,
             scheduler_process: bool = True, echo=print) -> dict[str, Any]:
    """Run the small soak case for ``n_epochs`` epochs on a local Dask cluster, sampling the
    client's, the scheduler's and every worker's resident memory after each epoch.

    With ``scheduler_process`` (default) the cluster's scheduler (and the workers' nannies)
    run in a process of their own, so that the client figure is daskorym's own process;
    without it the scheduler lives in the client process and has no figure of its own
    (``scheduler_*`` None).

    Growth is ``(median of the last 10 % of epochs - median over the 10 % after warm-up) /
    the latter`` (warm-up: the first ``warmup`` epochs, default 10 %), for the client, the
    scheduler and the largest worker.  Returns the samples and the growth figures; the
    scheduler's summary line is echoed here (the client's and workers' by the caller)."""
    from .execution import make_reconstruction
    warmup = max(1, n_epochs // 10) if warmup is None else int(warmup)
    tail = max(1, n_epochs // 10)
    if n_epochs < warmup + 2 * tail:
        raise ValueError(f"n_epochs = {n_epochs} is too short for a warm-up of {warmup} "
                         f"epochs and two windows of {tail}")
    client_mb, scheduler_mb, worker_mb, seconds = [], [], [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        from .simulate import simulate
        data = Path(tmp) / "data.h5"
        simulate(SOAK_CASE.model, data, progress=False, **SOAK_CASE.simulate)
        settings = json.loads(json.dumps(SOAK_CASE.settings))
        settings["dataset"] = {"path": str(data)}
        settings["optimization"]["n_epochs"] = n_epochs
        settings["execution"] = {"engine": "dask", "mode": mode}
        settings["output"] = {"folder": str(Path(tmp) / "out"), "progress": False,
                              "store_checkpoint": True, "n_batch_per_checkpoint": 40,
                              "preview_every_epochs": 100, "preview_every_minutes": 10 ** 6}
        cluster = _client("dask", n_workers, scheduler_process=scheduler_process)
        with cluster as client, make_reconstruction(settings, client=client) as rec:
            for epoch in range(n_epochs):
                t0 = time.perf_counter()
                rec.run(1)
                seconds.append(time.perf_counter() - t0)
                client_mb.append(PeakRSS.rss() / 2 ** 20)
                if scheduler_process:
                    scheduler_mb.append(PeakRSS.rss(cluster.scheduler_pid) / 2 ** 20)
                worker_mb.append(sorted(v / 2 ** 20 for v in client.run(PeakRSS.rss).values()))
                if echo is not None and ((epoch + 1) % report_every == 0 or epoch == 0):
                    sched = f"scheduler {scheduler_mb[-1]:7.1f} MB, " if scheduler_process else ""
                    echo(f"epoch {epoch + 1:5d}: client {client_mb[-1]:7.1f} MB, {sched}workers "
                         + ", ".join(f"{m:7.1f}" for m in worker_mb[-1]) + " MB, "
                         f"{seconds[-1]:.3f} s/epoch")
    worst = [max(w) for w in worker_mb]

    def growth(series):
        if not series:
            return None, None, None
        base = statistics.median(series[warmup:warmup + tail])
        end = statistics.median(series[-tail:])
        return base, end, (end - base) / base

    c0, c1, cg = growth(client_mb)
    s0, s1, sg = growth(scheduler_mb)
    w0, w1, wg = growth(worst)
    if echo is not None and scheduler_mb:
        echo(f"scheduler (own process, with the nannies): {s0:.1f} MB after warm-up -> "
             f"{s1:.1f} MB at the end ({100 * sg:+.1f} %)")
    return {"epochs": n_epochs, "workers": n_workers, "mode": mode, "warmup": warmup,
            "window": tail, "client_mb": client_mb, "scheduler_mb": scheduler_mb or None,
            "worker_mb": worker_mb, "s_per_epoch": seconds,
            "client_start_mb": c0, "client_end_mb": c1, "client_growth": cg,
            "scheduler_start_mb": s0, "scheduler_end_mb": s1, "scheduler_growth": sg,
            "worker_start_mb": w0, "worker_end_mb": w1, "worker_growth": wg}


__all__ = ["BenchCase", "CASES", "PeakRSS", "SOAK_CASE", "asdict", "fft_floor", "fft_seconds",
           "ffts_per_position", "format_table",
           "relative_lines", "run_bench", "run_case", "run_soak", "run_split"]
