"""``daskorym reconstruct`` and ``daskorym bench``."""

from __future__ import annotations

import json

from contextlib import contextmanager
from pathlib import Path

import click

from .main import main


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set optimization.n_epochs=20 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in the output folder.")
@click.option("--engine", type=click.Choice(["local", "dask", "mpi"]), help="Where to run.")
@click.option("--mode", type=click.Choice(["dp", "do", "h5"]), help="Update/distribution mode.")
@click.option("--workers", "n_workers", type=int, help="Number of Dask workers.")
@click.option("--cluster", help="Dask cluster: local (default), slurm or pbs (dask-jobqueue: "
              "workers as batch jobs), a scheduler address or a scheduler file (.json).")
@click.option("--jobs", type=int, help="slurm/pbs: number of worker jobs.")
@click.option("--cores", type=int, help="slurm/pbs: cores per job.")
@click.option("--memory", help="slurm/pbs: memory per job, e.g. 8GiB.")
@click.option("--gpus", type=int, help="slurm/pbs: GPUs per job.")
@click.option("--walltime", help="slurm/pbs: job walltime, e.g. 01:00:00.")
@click.option("--queue", help="slurm/pbs: partition (SLURM) or queue (PBS).")
@click.option("--account", help="slurm/pbs: account to charge.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS: CA certificate (PEM) of the --cluster tls://host:port scheduler.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS: this client's certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS: this client's private key (PEM).")
@click.option("--backend", type=click.Choice(["torch", "autograd"]), help="Array backend.")
@click.option("--device", help="torch device, e.g. cpu or cuda:0.")
@click.option("--epochs", "n_epochs", type=int, help="Number of epochs.")
@click.option("--output", "folder", type=click.Path(path_type=Path), help="Output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reconstruct(config: Path, overrides: tuple[str, ...], resume: bool, quiet: bool,
                tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None,
                **opts) -> None:
    """Reconstruct with the settings in CONFIG (TOML)."""
    from ..config import read_toml
    from ..execution import make_reconstruction

    flags = {"engine": "execution.engine", "mode": "execution.mode",
             "n_workers": "execution.n_workers", "cluster": "execution.cluster",
             "backend": "execution.backend",
             "device": "execution.device", "n_epochs": "optimization.n_epochs",
             "folder": "output.folder",
             **{k: f"execution.jobqueue.{k}"
                for k in ("jobs", "cores", "memory", "gpus", "walltime", "queue", "account")}}
    extra = [f"{flags[k]}={_toml(v)}" for k, v in opts.items() if v is not None]
    if resume:
        extra.append("output.resume=true")
    if quiet:
        extra.append("output.progress=false")
    settings = read_toml(config, list(overrides) + extra)
    with _abort_all_ranks_on_error(settings.execution.engine):
        with _tls_client(settings, tls_ca, tls_cert, tls_key) as engine_options:
            with make_reconstruction(settings, **engine_options) as rec:
                result = rec.run()
        if getattr(rec, "rank", 0) == 0:
            click.echo(f"object: {result.output_folder / 'object.zarr'}")
            click.echo(f"final loss: {result.final_loss:.6g} after {result.epochs} epochs")


@contextmanager
def _tls_client(settings, ca: Path | None, cert: Path | None, key: Path | None):
    """``{"client": ...}`` connected over TLS to the ``--cluster`` scheduler (closed after),
    or ``{}`` without ``--tls-*`` options (the engine connects as usual)."""
    from ..config import ConfigError

    given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
    engine, cluster = settings.execution.engine, settings.execution.cluster
    if not any(given.values()):
        if engine == "dask" and cluster.startswith("tls://"):
            import dask
            if not dask.config.get("distributed.comm.tls.ca-file", None):
                raise ConfigError(f"--cluster {cluster}: a TLS scheduler needs --tls-ca, "
                                  "--tls-cert and --tls-key (or distributed.comm.tls.* in the "
                                  "Dask configuration)")
        yield {}
        return
    missing = [name for name, path in given.items() if path is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} missing: --tls-ca, --tls-cert and --tls-key "
                          "go together")
    if engine != "dask" or not (cluster.startswith("tls://") or cluster.endswith(".json")):
        raise ConfigError(f"--tls-* connect to a running scheduler: expected --engine dask and "
                          f"--cluster tls://host:port or a scheduler file (.json), got engine "
                          f"{engine!r}, cluster {cluster!r}")
    from distributed import Client
    from distributed.security import Security

    from ..execution.cluster import short_logs
    short_logs()  # before the client: its connection logs take their length when made
    security = Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                        require_encryption=True)
    client = (Client(scheduler_file=cluster, security=security) if cluster.endswith(".json")
              else Client(cluster, security=security))
    try:
        yield {"client": client}
    finally:
        client.close()


@contextmanager
def _abort_all_ranks_on_error(engine: str):
    """Under ``mpiexec`` an error on one rank stops every rank (no rank left waiting)."""
    try:
        yield
    except Exception as err:
        if engine == "mpi":
            from ..execution.comm import get_comm
            comm = get_comm()
            if comm.Get_size() > 1:
                click.echo(f"daskorym: error on rank {comm.Get_rank()}: {err}", err=True)
                comm.Abort(1)
        raise


def _toml(v) -> str:
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


@main.command()
@click.option("--case", "cases", multiple=True, help="Case name (repeatable; default all).")
@click.option("--epochs", "n_epochs", type=int, default=3, show_default=True)
@click.option("--backend", "backends", multiple=True, type=click.Choice(["torch", "autograd"]),
              help="Backend(s) to time (default torch).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--engine", "engines", multiple=True,
              help="local, dask-N (N workers), dask-N-direct (execution.exchange direct) or "
                   "mpi (under mpiexec -n N); repeatable (default local).")
@click.option("--mode", default="dp", type=click.Choice(["dp", "do", "h5"]), show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write JSON here.")
@click.option("--soak", is_flag=True,
              help="Instead: the soak run, a small case for --epochs epochs (e.g. 500) on 2 "
                   "Dask workers, memory of the client and workers sampled every epoch.")
@click.option("--split", type=int, metavar="N",
              help="Instead: the gain N processes can give at most here: each case's minibatch "
                   "work (rotation, gradient, optimizer step) done by one process, then split "
                   "over N at once with nothing exchanged.")
def bench(cases, n_epochs, backends, device, threads, engines, mode, json_path, soak,
          split) -> None:
    """Time per epoch and peak memory of the standard cases."""
    from ..bench import CASES, format_table, run_bench

    if soak:
        from ..bench import SOAK_CASE, run_soak
        click.echo(f"soak: {SOAK_CASE.description}, {n_epochs} epochs, mode {mode}")
        r = run_soak(n_epochs, mode=mode, echo=click.echo)
        click.echo(f"client: {r['client_start_mb']:.1f} MB after warm-up -> "
                   f"{r['client_end_mb']:.1f} MB at the end ({100 * r['client_growth']:+.1f} %)")
        click.echo(f"largest worker: {r['worker_start_mb']:.1f} MB -> {r['worker_end_mb']:.1f} "
                   f"MB ({100 * r['worker_growth']:+.1f} %) (medians of {r['window']} epochs; "
                   f"warm-up {r['warmup']} epochs)")
        if json_path is not None:
            from ..outputs import atomic_write_text
            atomic_write_text(Path(json_path), json.dumps(r, indent=2))
        return

    names = list(cases) or list(CASES)
    if split is not None:
        from ..bench import run_split
        unknown = [c for c in names if c not in CASES]
        if unknown:
            raise click.UsageError(f"unknown bench case(s) {unknown}; known: {sorted(CASES)}")
        results = []
        for name in names:
            r = run_split(CASES[name], split, threads=threads)
            results.append(r)
            click.echo(f"{name}: {CASES[name].description}\n  split over {split} processes, "
                       f"nothing exchanged ({r['batches']} minibatches): 1 process "
                       f"{1e3 * r['s_per_batch_1']:.1f} ms/minibatch, {split} processes "
                       f"{1e3 * r[f's_per_batch_{split}']:.1f} ms/minibatch: "
                       f"{r['speedup']:.2f}x at most")
        if json_path is not None:
            from ..outputs import atomic_write_text
            atomic_write_text(Path(json_path), json.dumps(results, indent=2))
        return

    rows = run_bench(names, n_epochs=n_epochs, backends=tuple(backends) or ("torch",),
                     device=device, threads=threads, json_path=json_path,
                     engines=tuple(engines) or ("local",), mode=mode)
    if "mpi" in engines:
        from ..execution.comm import get_comm
        if get_comm().Get_rank() != 0:
            return
    for name in names:
        click.echo(f"{name}: {CASES[name].description}")
    click.echo(format_table(rows))
