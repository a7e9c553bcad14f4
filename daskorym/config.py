"""Validated reconstruction settings, grouped by concern.

``Settings`` is what :func:`daskorym.reconstruct` takes and what
``daskorym reconstruct CONFIG.toml`` reads: one table per group
(``[dataset]``, ``[geometry]``, ``[model]``, ``[object]``, ``[probe]``,
``[parameters.<name>]``, ``[loss]``, ``[regularizers]``,
``[optimization]``, ``[execution]``, ``[output]``).  Unknown keys are
rejected with the closest valid name suggested.  Units are in the names.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A settings problem: names the item, what was expected and what was found."""


def suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = list(cls.model_fields)
            for key in data:
                if key not in valid:
                    raise ValueError(f"unknown setting {key!r} in [{cls._section()}]"
                                     f"{suggest(str(key), valid)} (valid: {', '.join(valid)})")
        return data

    @classmethod
    def _section(cls) -> str:
        return cls.__name__.replace("Settings", "").lower()


class DatasetSettings(_Group):
    path: Path
    raw_data_type: Literal["magnitude", "intensity"] = "magnitude"
    check_values: bool = True
    cache_mb: float = Field(1024.0, ge=0)
    # data hold -log(I / I0) line integrals (Adorym's is_minus_logged): used unchanged,
    # model "minuslog_tomography" (projection), least squares on line integrals
    is_minus_logged: bool = False


class GeometrySettings(_Group):
    """Overrides of the dataset's metadata (None: read from the file)."""

    energy_ev: float | None = Field(None, gt=0, allow_inf_nan=False)
    psize_cm: float | None = Field(None, gt=0, allow_inf_nan=False)
    free_prop_cm: float | str | list[float] | None = None
    theta_st_rad: float = 0.0
    theta_end_rad: float = math.pi
    sign_convention: Literal[1, -1] = 1
    fresnel_approx: bool = True
    normalize_fft: bool = False

    @field_validator("free_prop_cm")
    @classmethod
    def _inf_or_positive(cls, v):
        if isinstance(v, str) and v != "inf":
            raise ValueError(f"free_prop_cm must be 'inf', a number or a list, got {v!r}")
        distances = v if isinstance(v, list) else [] if v is None or isinstance(v, str) else [v]
        if not all(d > 0 for d in distances):  # NaN fails too
            raise ValueError(f"free_prop_cm must be 'inf' or distances > 0 in cm, got {v!r}")
        return v


class ModelSettings(_Group):
    name: str = "auto"
    unknown_type: Literal["delta_beta", "real_imag"] = "delta_beta"
    binning: int = Field(1, ge=1)
    pure_projection: bool = False
    # buffer of each tile (tiled holography); None: the dataset's metadata/safe_zone_px, else 0
    safe_zone_px: int | None = Field(None, ge=0)
    slice_pos_cm: list[float] | None = None
    scale_ri_by_k: bool = True
    # homogeneous object: beta = kappa * delta (kappa is the beta/delta ratio); None: independent
    kappa: float | None = Field(None, gt=0)
    # near-field multi-distance: exact Fresnel model or its linearisation (Adorym's "ctf")
    forward_algorithm: Literal["fresnel", "ctf"] = "fresnel"


class ObjectSettings(_Group):
    shape: tuple[int, int, int] | None = None
    init: Literal["random", "constant", "supplied"] = "random"
    initial_guess: Path | None = None
    random_means_sigmas: tuple[float, float, float, float] = (8.7e-7, 5.1e-8, 1e-7, 1e-8)
    non_negativity: bool = False
    object_type: Literal["normal", "phase_only", "absorption_only"] = "normal"
    support_path: Path | None = None
    shrink_cycle: int | None = Field(None, ge=1)
    shrink_threshold: float = 1e-9

    @field_validator("shape", mode="before")
    @classmethod
    def _three_sizes(cls, v):
        if isinstance(v, (list, tuple)) and len(v) != 3:
            raise ValueError(f"object shape must be 3 sizes (Ly, Lx, Lz) in pixels (Lz = 1 for a "
                             f"2D object), got {len(v)}: {list(v)}")
        return v

    @field_validator("shape")
    @classmethod
    def _positive(cls, v):
        if v is not None and min(v) < 1:
            raise ValueError(f"object shape must be positive (Ly, Lx, Lz), got {v}")
        return v


class ProbeSettings(_Group):
    type: Literal["gaussian", "aperture_defocus", "ifft", "supplied", "plane"] | None = None
    n_modes: int = Field(1, ge=1)
    mag_sigma_px: float | None = Field(None, gt=0)
    phase_sigma_px: float = Field(1.0, gt=0)
    phase_max_rad: float = 0.0
    aperture_radius_px: float | None = Field(None, gt=0)
    beamstop_radius_px: float = Field(0.0, ge=0)
    defocus_cm: float = 0.0
    initial: Path | None = None
    # scale the starting probe to the data's power; None: yes, except a plane wave in the
    # near field (holograms are flat-field corrected: the incident wave has amplitude 1)
    rescale_intensity: bool | None = None
    # constraints of the refined probe, applied after each update (all off by default)
    power_normalize: bool = False  # keep the total power sum |P|^2 of the initial probe
    support_radius_px: float | None = Field(None, gt=0)  # zero outside a centred disk
    center: bool = False  # keep the centre of mass of sum_m |P_m|^2 at the array centre
    orthogonalize: bool = False  # orthogonal modes, strongest first, total power unchanged


class ParameterSettings(_Group):
    optimize: bool = False
    optimizer: str = "adam"
    step_size: float | None = Field(None, gt=0)
    # starting value, broadcast to the parameter's shape (None: the parameter's own default,
    # e.g. zero offsets, the geometry's distances or slice positions)
    initial: float | list[Any] | None = None
    # remove the mean over angles after each update (a common shift or turn is the object's);
    # None: the parameter's default (on for offsets, off for tilts)
    remove_mean: bool | None = None
    start_batch: int = Field(0, ge=0)
    stop_batch: int | None = None
    every: int = Field(1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


def _default_parameters() -> dict[str, ParameterSettings]:
    return {"object": ParameterSettings(optimize=True, optimizer="adam"),
            "probe": ParameterSettings(optimize=False, optimizer="adam")}


class LossSettings(_Group):
    type: Literal["lsq", "poisson"] = "lsq"
    poisson_multiplier: float = Field(1.0, gt=0)
    beamstop: Path | None = None
    eps: float = Field(1e-12, ge=0)


class RegularizerSettings(_Group):
    alpha_d: float = Field(0.0, ge=0)
    alpha_b: float = Field(0.0, ge=0)
    gamma: float = Field(0.0, ge=0)
    reweighted_l1: bool = False


class OptimizationSettings(_Group):
    n_epochs: int = Field(10, ge=1)
    minibatch_size: int = Field(32, ge=1)
    seed: int = 0
    randomize_probe_pos: bool = True
    n_batch_per_update: int | None = Field(None, ge=1)


class JobqueueSettings(_Group):
    """dask-jobqueue options for ``execution.cluster = "slurm"`` or ``"pbs"``.

    Unset values come from Dask's ``jobqueue.<slurm|pbs>`` configuration
    (``deploy/jobqueue.yaml`` copied to ``~/.config/dask/``), else cores = ``threads``,
    memory 4 GiB, 1 worker process per job.
    """
    jobs: int | None = Field(None, ge=1)  # default: n_workers / processes, or 1
    cores: int | None = Field(None, ge=1)
    memory: str | None = None  # per job, e.g. "8GiB"
    processes: int | None = Field(None, ge=1)  # Dask workers per job
    gpus: int = Field(0, ge=0)  # per job: --gres=gpu:G (SLURM), :ngpus=G (PBS)
    walltime: str | None = None  # e.g. "01:00:00"
    queue: str | None = None  # SLURM partition / PBS queue
    account: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    adapt: bool = False  # adaptive between minimum_jobs and maximum_jobs
    minimum_jobs: int | None = Field(None, ge=1)
    maximum_jobs: int | None = Field(None, ge=1)
    timeout: float = Field(600.0, gt=0)  # seconds to wait for the workers


class ExecutionSettings(_Group):
    engine: Literal["local", "dask", "mpi"] = "local"
    mode: Literal["dp", "do", "h5"] = "dp"
    backend: Literal["torch", "autograd"] = "torch"
    device: str = "cpu"
    precision: Literal["float32", "float64"] = "float32"
    n_workers: int | None = Field(None, ge=1)
    cluster: str = "local"
    threads: int = Field(1, ge=1)
    gpu_tasks: bool = False  # Dask: gradient tasks ask for resources={"GPU": 1}
    jobqueue: JobqueueSettings = Field(default_factory=JobqueueSettings)
    # Dask: what a run does when a worker holding object slabs is lost ('epoch': the client
    # keeps the state at the start of each epoch and redoes the epoch on the workers left)
    recovery: Literal["epoch", "off"] = "epoch"
    max_recoveries: int = Field(3, ge=0)
    # Dask, modes dp and do: how slab owners exchange rotated slabs and gradient rows:
    # 'scheduler' (a chain of scheduled tasks per minibatch) or 'direct' (one actor per
    # worker, sending to the others without the scheduler: fewer hops per minibatch)
    exchange: Literal["scheduler", "direct"] = "scheduler"


class OutputSettings(_Group):
    folder: Path = Path("recon")
    resume: bool = False
    n_batch_per_checkpoint: int = Field(10, ge=1)
    store_checkpoint: bool = True
    preview_every_epochs: int = Field(10, ge=1)
    preview_every_minutes: float | None = Field(2.0, gt=0)
    progress: bool = True


class Settings(_Group):
    dataset: DatasetSettings
    geometry: GeometrySettings = Field(default_factory=GeometrySettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    object: ObjectSettings = Field(default_factory=ObjectSettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    parameters: dict[str, ParameterSettings] = Field(default_factory=_default_parameters)
    loss: LossSettings = Field(default_factory=LossSettings)
    regularizers: RegularizerSettings = Field(default_factory=RegularizerSettings)
    optimization: OptimizationSettings = Field(default_factory=OptimizationSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @field_validator("parameters")
    @classmethod
    def _known_parameters(cls, v: dict[str, ParameterSettings]):
        from .parameters import PARAMETERS
        for name in v:
            if name not in PARAMETERS:
                raise ValueError(f"unknown refinable parameter {name!r}"
                                 f"{suggest(name, sorted(PARAMETERS))} "
                                 f"(known: {', '.join(sorted(PARAMETERS))})")
        merged = _default_parameters()
        merged.update(v)
        return merged

    @classmethod
    def _section(cls) -> str:
        return "top level"

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {loc}: {msg} (got {e.get('input')!r})"
                     if e["type"] not in ("value_error", "missing") else f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_settings(data: dict, source: str = "settings") -> Settings:
    """Validate a nested dict into :class:`Settings`; :class:`ConfigError` on any problem."""
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """``data['a']['b'] = value`` for ``dotted = 'a.b'`` (creating tables)."""
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a table")
    cur[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``'optimization.n_epochs=5'`` -> ``('optimization.n_epochs', 5)`` (value parsed as TOML)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def read_toml(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Settings from a TOML file plus ``key=value`` overrides; relative paths resolved to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file (expected a UTF-8 TOML text file): "
                          f"{getattr(err, 'strerror', None) or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: TOML syntax error: {err}") from None
    # paths written in the file are relative to the file; paths given with --set are
    # relative to the current directory, like any path typed on a command line
    _resolve_paths(data, path.parent)
    for item in overrides:
        key, value = parse_override(item)
        if key in _PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute():
            value = str(Path.cwd() / value)
        set_dotted(data, key, value)
    return load_settings(data, str(path))


_PATH_KEYS = ("dataset.path", "output.folder", "object.support_path")


def _resolve_paths(data: dict, base: Path) -> None:
    for dotted in _PATH_KEYS:
        group, key = dotted.split(".")
        table = data.get(group, {})
        if isinstance(table, dict) and isinstance(table.get(key), str) \
                and not Path(table[key]).is_absolute():
            table[key] = str(base / table[key])
