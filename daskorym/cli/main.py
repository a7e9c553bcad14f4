"""The ``daskorym`` command line: ``simulate``, ``inspect`` and ``tile``.

Errors in the input (a missing or unreadable dataset, bad settings, a file
that exists) are reported as one line ``error: ...`` on stderr with exit code 2,
without a traceback.
"""

from __future__ import annotations

import importlib.metadata
import math
from pathlib import Path
from typing import Any

import click
import h5py

from ..io import open_dataset, save_pattern_png, summarize

EXIT_BAD_INPUT = 2
_EXPECTED_ERRORS = (ValueError, OSError, IndexError)  # DatasetError is a ValueError


def _version() -> str:
    try:
        return importlib.metadata.version("daskorym")
    except importlib.metadata.PackageNotFoundError:
        import daskorym
        return str(getattr(daskorym, "__version__", "unknown (not installed)"))


class _Group(click.Group):
    """A click group that turns expected errors into ``error: ...`` and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _EXPECTED_ERRORS as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            message = message.replace("pass overwrite=True", "use --overwrite")
            click.echo(f"error: {message}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


class _Numbers(click.ParamType):
    """Comma-separated numbers, e.g. ``128,128,1``; ``inf`` allowed for floats."""

    def __init__(self, kind: type, name: str) -> None:
        self.kind, self.name = kind, name

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(self.kind(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated {self.name}s (e.g. 128,128,1), got {value!r}",
                      param, ctx)


INTS = _Numbers(int, "integer")
FLOATS = _Numbers(float, "number")


@click.group(cls=_Group)
@click.version_option(_version(), "--version", prog_name="daskorym")
def main() -> None:
    """daskorym: X-ray image reconstruction by automatic differentiation."""


def _simulation_overrides(opts: dict[str, Any]) -> dict[str, Any]:
    """Settings given on the command line (options left out keep the model's defaults).

    Every option of ``simulate`` other than MODEL, --out, --overwrite and --quiet is a
    field of :class:`daskorym.simulate.SimulationSettings`.
    """
    out = {k: v for k, v in opts.items() if v is not None}
    free = out.get("free_prop_cm")
    if free is not None and all(math.isinf(v) for v in free):
        out["free_prop_cm"] = "inf"
    if out.get("noise") == "none":
        out["noise"] = None
    return out


def _describe_truth(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return f"obj {f['obj'].shape} [Ly, Lx, Lz, 2], probe {f['probe'].shape} [m, py, px, 2]"


@main.command()
@click.argument("model")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output dataset (.h5 or .zarr); the truth goes to <stem>_truth.h5.")
@click.option("--obj-shape", type=INTS, help="Object shape Ly,Lx[,Lz] in pixels.")
@click.option("--probe-shape", type=INTS, help="Probe shape py,px (scanned-probe models).")
@click.option("--n-theta", type=int, help="Number of rotation angles (> 1: tomography).")
@click.option("--theta-range", "theta_range_rad", type=(float, float),
              help="First and end angle in rad (end excluded); default 0 pi.")
@click.option("--energy-ev", type=float, help="Photon energy in eV.")
@click.option("--psize-cm", type=float, help="Object pixel size in cm.")
@click.option("--free-prop-cm", type=FLOATS, help="Distance(s) in cm, comma-separated, or inf.")
@click.option("--step", "step_px", type=float, help="Raster scan step in pixels.")
@click.option("--jitter", "jitter_px", type=float, help="Random position jitter in pixels.")
@click.option("--scan-margin", "scan_margin_px", type=float,
              help="Scan this many pixels beyond the object on every side (tapered probes).")
@click.option("--modes", "n_probe_modes", type=int, help="Number of probe modes.")
@click.option("--fly-scan", "fly_scan_px", type=float,
              help="Fly scan: probe motion along x during each exposure, in pixels.")
@click.option("--noise", type=click.Choice(["none", "poisson"]), help="Noise model.")
@click.option("--photons", "photons_per_pixel", type=float, help="Mean photons per pixel.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--tiles", type=(int, int), help="Detector tiles NY NX (tiled holography).")
@click.option("--n-dists", type=int, help="Number of distances (multi-distance holography).")
@click.option("--safe-zone", "safe_zone_px", type=int, help="Tile buffer in pixels.")
@click.option("--n-slices", type=int, help="Number of slices (sparse multislice).")
@click.option("--slice-pos-cm", type=FLOATS, help="Slice positions in cm (sparse multislice).")
@click.option("--unknown-type", type=click.Choice(["delta_beta", "real_imag"]))
@click.option("--phase-max", "phase_max_rad", type=float, help="Peak projected phase (rad).")
@click.option("--absorption", type=float, help="Peak absorbed amplitude fraction, [0, 1).")
@click.option("--kappa", type=float, help="Homogeneous object: beta = KAPPA * delta.")
@click.option("--precision", type=click.Choice(["float32", "float64"]))
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(model: str, out: Path, overwrite: bool, quiet: bool, **opts: Any) -> None:
    """Simulate a dataset of MODEL (a registered forward model) and its ground truth."""
    from ..simulate import simulate as run_simulation
    from ..simulate import truth_path

    path = run_simulation(model, out, overwrite=overwrite, progress=not quiet,
                          **_simulation_overrides(opts))
    with open_dataset(path, check_values=False) as ds:
        click.echo(f"wrote data: {path} shape {ds.shape} [n_theta, n_tiles, det_y, det_x]")
    truth = truth_path(path)
    click.echo(f"wrote truth: {truth} {_describe_truth(truth)}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--png", type=click.Path(path_type=Path), help="Save one pattern as a PNG.")
@click.option("--angle", "i_theta", type=int, default=0, show_default=True,
              help="Angle index of the PNG.")
@click.option("--tile", "i_tile", type=int, default=0, show_default=True,
              help="Tile index of the PNG.")
@click.option("--linear", is_flag=True, help="Linear instead of log10 scale in the PNG.")
def inspect(path: Path, png: Path | None, i_theta: int, i_tile: int, linear: bool) -> None:
    """Print a summary of the dataset PATH (and optionally save a pattern as a PNG)."""
    with open_dataset(path) as ds:
        click.echo(summarize(ds))
        if png is not None:
            written = save_pattern_png(ds, i_theta, i_tile, png, log=not linear)
            click.echo(f"wrote png: {written}")


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--tiles", type=(int, int), required=True, help="Tiles NY NX per image.")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def tile(src: Path, dst: Path, tiles: tuple[int, int], overwrite: bool, quiet: bool) -> None:
    """Divide the full-field images of SRC into NY x NX tiles, written to DST."""
    from ..simulate import tile_dataset

    path = tile_dataset(src, dst, tiles[0], tiles[1], overwrite=overwrite, progress=not quiet)
    with open_dataset(path, check_values=False) as ds:
        click.echo(f"wrote tiles: {path} shape {ds.shape} [n_theta, n_tiles, det_y, det_x]")
