"""``daskorym reconstruct`` and ``daskorym bench``."""

from __future__ import annotations

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
@click.option("--backend", type=click.Choice(["torch", "autograd"]), help="Array backend.")
@click.option("--device", help="torch device, e.g. cpu or cuda:0.")
@click.option("--epochs", "n_epochs", type=int, help="Number of epochs.")
@click.option("--output", "folder", type=click.Path(path_type=Path), help="Output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reconstruct(config: Path, overrides: tuple[str, ...], resume: bool, quiet: bool,
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
        with make_reconstruction(settings) as rec:
            result = rec.run()
        if getattr(rec, "rank", 0) == 0:
            click.echo(f"object: {result.output_folder / 'object.zarr'}")
            click.echo(f"final loss: {result.final_loss:.6g} after {result.epochs} epochs")


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
              help="local, dask-N (N workers) or mpi (under mpiexec -n N); repeatable "
                   "(default local).")
@click.option("--mode", default="dp", type=click.Choice(["dp", "do", "h5"]), show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write JSON here.")
def bench(cases, n_epochs, backends, device, threads, engines, mode, json_path) -> None:
    """Time per epoch and peak memory of the standard cases."""
    from ..bench import CASES, format_table, run_bench

    names = list(cases) or list(CASES)
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
