"""Python entry points: :func:`reconstruct` and the Adorym-compatible
:func:`reconstruct_ptychography`.

``reconstruct_ptychography`` takes Adorym's parameter names and meanings
(``shared/spec/adorym-reference.md``, section 2.3) and turns them into
validated :class:`~daskorym.config.Settings`.  Differences, on purpose:

* unknown or misspelt names are an error naming the closest valid one
  (Adorym silently ignored them);
* ``n_epochs='auto'`` means the default finite number of epochs (10), not
  "never stop"; ``minibatch_size=None`` means 32 tiles;
* ``gamma`` (TV) defaults to 0: no regularizer unless asked;
* ``use_checkpoint`` defaults to False: an output folder holding results is
  never resumed silently, and never overwritten either;
* the initial random object is seeded (``seed``), not drawn from the clock;
* ``backend`` defaults to ``'pytorch'``;
* the refinement switches ``optimize_probe_defocusing``, ``optimize_probe_pos_offset``,
  ``optimize_prj_pos_offset``, ``optimize_slice_pos``, ``optimize_free_prop``,
  ``optimize_prj_affine``, ``optimize_tilt`` and ``optimize_ctf_lg_kappa`` become blocks
  ``parameters.<name>`` (:data:`REFINE_SWITCHES`) with Adorym's default optimizer and
  learning rate; rates given in mm or cm (probe defocus, slice positions, propagation
  distances) are converted to metres, the unit of those parameters here.  The probe
  defocus is refined per angle (one value for all angles in Adorym);
* ``initial_tilt`` keeps Adorym's layout ``[3, n_theta]`` (stored transposed); given
  without ``optimize_tilt`` the tilts are applied as fixed values, not dropped;
* ``ctf_lg_kappa`` (log10 of beta/delta) sets ``model.kappa`` (a homogeneous object) only
  when passed or when ``optimize_ctf_lg_kappa`` is on; otherwise delta and beta stay
  independent.
Parameters Adorym accepted but never read are accepted and ignored.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, Settings, load_settings, suggest
from .engine import InMemoryInputs, ReconstructionResult
from .execution import make_reconstruction
from .execution.comm import launched_ranks
from .optim import Optimizer

# Adorym parameters accepted and ignored (unused by Adorym itself, or implementation details
# that daskorym decides for itself).
IGNORED = {
    "crit_conv_rate", "max_nepochs", "n_epoch_final_pass", "n_batch_per_update", "fix_object",
    "core_parallelization", "fourier_disparity", "dynamic_rate", "probe_circ_mask",
    "dynamic_dropping", "dropping_threshold", "two_d_mode", "n_dp_batch",
    "precalculate_rotation_coords", "cache_dtype", "rotate_out_of_loop", "n_split_mpi_ata",
    "optimizer_batch_number_increment", "save_intermediate", "save_intermediate_level",
    "save_history", "save_stdout", "debug", "common_probe_pos", "interpolation",
    "force_to_use_checkpoint",
}
# accepted only with their default value (other values are not available yet)
ONLY_DEFAULT = {
    "theta_downsample": None, "multiscale_level": 1,
    "update_using_external_algorithm": None,
    "shared_probe_among_angles": True, "probe_extra_defocus_cm": None, "use_epie": False,
    "xpu": False, "run_bfloat16": False,
}
RATE_ONLY = {"epie_alpha"}  # settings of methods not available: accepted and ignored
# Refinement switches beyond object, probe and scan positions:
# switch -> (parameter name in ``settings.parameters``, stem of ``<stem>_learning_rate`` and
# ``optimizer_<stem>``, default optimizer, default learning rate in the Adorym unit,
# factor from that unit to the parameter's unit)
REFINE_SWITCHES: dict[str, tuple[str, str, str, float, float]] = {
    "optimize_probe_defocusing": ("probe_defocus", "probe_defocusing", "adam", 1e-5, 1e-3),
    "optimize_probe_pos_offset": ("probe_pos_offset", "probe_pos_offset", "gd", 1e-2, 1.0),
    "optimize_prj_pos_offset": ("prj_pos_offset", "prj_pos_offset", "gd", 1e-2, 1.0),
    "optimize_slice_pos": ("slice_pos", "slice_pos", "adam", 1e-4, 1e-2),
    "optimize_free_prop": ("free_prop", "free_prop", "adam", 1e-2, 1e-2),
    "optimize_prj_affine": ("prj_affine", "prj_affine", "adam", 1e-3, 1.0),
    "optimize_tilt": ("tilt", "tilt", "adam", 1e-3, 1.0),
    "optimize_ctf_lg_kappa": ("ctf_lg_kappa", "ctf_lg_kappa", "adam", 1e-3, 1.0),
}
ADORYM_CTF_LG_KAPPA = 1.7  # default log10(beta/delta) when optimize_ctf_lg_kappa is on
REFINE_NAMES = {name for switch, (_, stem, *_rest) in REFINE_SWITCHES.items()
                for name in (switch, f"{stem}_learning_rate", f"optimizer_{stem}")}
PROBE_KWARGS = {"probe_mag_sigma", "probe_phase_sigma", "probe_phase_max", "aperture_radius",
                "beamstop_radius", "probe_defocus_cm"}
HANDLED = {
    "fname", "obj_size", "probe_pos", "theta_st", "theta_end", "n_theta", "energy_ev",
    "psize_cm", "free_prop_cm", "raw_data_type", "slice_pos_cm_ls", "n_epochs", "regularizers",
    "alpha_d", "alpha_b", "gamma", "minibatch_size", "initial_guess",
    "random_guess_means_sigmas", "reweighted_l1", "update_scheme", "unknown_type",
    "randomize_probe_pos", "optimize_object", "optimizer", "learning_rate",
    "finite_support_mask_path", "shrink_cycle", "shrink_threshold", "object_type",
    "non_negativity", "forward_model", "binning", "fresnel_approx", "pure_projection",
    "probe_type", "probe_initial", "n_probe_modes", "rescale_probe_intensity",
    "loss_function_type", "poisson_multiplier", "beamstop", "normalize_fft", "safe_zone_width",
    "scale_ri_by_k", "sign_convention", "save_path", "output_folder", "store_checkpoint",
    "use_checkpoint", "n_batch_per_checkpoint", "cpu_only", "gpu_index", "distribution_mode",
    "dist_mode_n_batch_per_update", "optimize_probe", "probe_learning_rate", "optimizer_probe",
    "probe_update_delay", "probe_update_limit", "optimize_all_probe_pos",
    "all_probe_pos_learning_rate", "optimizer_all_probe_pos", "other_params_update_delay",
    "pupil_function", "backend", "t_max_min", "run_float64", "initial_tilt", "ctf_lg_kappa",
    "forward_algorithm", "is_minus_logged",
    *REFINE_NAMES,
    # daskorym's own execution keywords (DESIGN.md)
    "engine", "mode", "n_workers", "cluster", "seed", "progress", "threads",
}
VALID = sorted(HANDLED | IGNORED | set(ONLY_DEFAULT) | RATE_ONLY | PROBE_KWARGS)
MODES = {None: "dp", "distributed_object": "do", "shared_file": "h5",
         "dp": "dp", "do": "do", "h5": "h5"}


class PtychographyModel:
    """Stand-in for Adorym's ``PtychographyModel``: lets daskorym choose the model ('auto')."""

    name = "auto"


def reconstruct(settings: Settings | dict, inputs: InMemoryInputs | None = None,
                **engine_options) -> ReconstructionResult:
    """Run a reconstruction to the end from validated settings (see :mod:`daskorym.config`).

    ``engine_options`` go to the engine, e.g. ``client=`` (a ``distributed.Client``).
    """
    with make_reconstruction(settings, inputs, **engine_options) as rec:
        return rec.run()


def _check_names(params: dict) -> None:
    for key in params:
        if key not in VALID:
            raise ConfigError(f"reconstruct_ptychography: unknown parameter {key!r}"
                              f"{suggest(key, VALID)}")
    for key, default in ONLY_DEFAULT.items():
        if key in params and params[key] != default and params[key] is not None:
            raise ConfigError(f"reconstruct_ptychography: {key}={params[key]!r} is not available "
                              f"yet in daskorym (only {default!r})")


def _param_block(optimize: bool, optimizer: Any, rate: float | None, default_opt: str,
                 start: int = 0, stop: int | None = None) -> dict:
    block: dict[str, Any] = {"optimize": bool(optimize), "start_batch": int(start or 0)}
    if stop is not None:
        block["stop_batch"] = int(stop)
    if isinstance(optimizer, str):
        block["optimizer"] = optimizer
    else:
        block["optimizer"] = default_opt
    if rate is not None:
        block["step_size"] = float(rate)
    return block


def _same_on_all_ranks(engine: str, value):
    """``value`` from rank 0 under the MPI engine (e.g. a time-stamped folder name)."""
    if engine != "mpi":
        return value
    from .execution.comm import get_comm
    return get_comm().bcast(value, root=0)


def adorym_to_settings(p: dict) -> tuple[dict, InMemoryInputs]:
    """Translate Adorym keyword arguments into a settings dict and in-memory inputs."""
    _check_names(p)
    g = p.get
    save_path = Path(g("save_path", "."))
    # like Adorym: a script started by mpiexec on several ranks runs on MPI
    engine = g("engine") or ("mpi" if launched_ranks() > 1 else "local")
    out_name = g("output_folder") or _same_on_all_ranks(engine,
                                                        time.strftime("recon_%Y%m%d_%H%M%S"))
    n_epochs = g("n_epochs", "auto")
    mode = g("mode") or MODES.get(g("distribution_mode"))
    if mode is None:
        raise ConfigError(f"distribution_mode must be None, 'distributed_object' or 'shared_file', "
                          f"got {g('distribution_mode')!r}")
    if g("update_scheme", "immediate") == "per angle" and mode == "dp" and engine == "local":
        mode = "do"  # accumulate over the angle, then update
    fm = g("forward_model", "auto")
    model_name = fm if isinstance(fm, str) else getattr(fm, "name", None) or "auto"
    free = g("free_prop_cm")
    s: dict[str, Any] = {
        "dataset": {"path": str(save_path / g("fname")),
                    "raw_data_type": g("raw_data_type", "magnitude"),
                    "is_minus_logged": bool(g("is_minus_logged", False))},
        "geometry": {"theta_st_rad": float(g("theta_st", 0.0)),
                     "theta_end_rad": float(g("theta_end", math.pi)),
                     "sign_convention": int(g("sign_convention", 1)),
                     "fresnel_approx": bool(g("fresnel_approx", True)),
                     "normalize_fft": bool(g("normalize_fft", False))},
        "model": {"name": model_name, "unknown_type": g("unknown_type", "delta_beta"),
                  "binning": int(g("binning", 1)), "pure_projection": bool(g("pure_projection", False)),
                  # 0 or unset: the dataset's own buffer (metadata/safe_zone_px), if any
                  "safe_zone_px": int(g("safe_zone_width")) if g("safe_zone_width") else None,
                  "scale_ri_by_k": bool(g("scale_ri_by_k", True)),
                  "forward_algorithm": g("forward_algorithm", "fresnel") or "fresnel"},
        "object": {"shape": list(g("obj_size")) if g("obj_size") is not None else None,
                   "non_negativity": bool(g("non_negativity", False)),
                   "object_type": g("object_type", "normal"),
                   "shrink_threshold": float(g("shrink_threshold", 1e-9))},
        "probe": {"type": {"fixed": "supplied"}.get(g("probe_type", "gaussian"), g("probe_type", "gaussian")),
                  "n_modes": int(g("n_probe_modes", 1)),
                  "rescale_intensity": (None if g("rescale_probe_intensity") is None
                                        else bool(g("rescale_probe_intensity")))},
        "parameters": {
            "object": _param_block(g("optimize_object", True), g("optimizer", "adam"),
                                   g("learning_rate", 1e-5), "adam"),
            "probe": _param_block(g("optimize_probe", False), g("optimizer_probe"),
                                  g("probe_learning_rate", 1e-5), "adam",
                                  g("probe_update_delay", 0), g("probe_update_limit")),
            "probe_pos": _param_block(g("optimize_all_probe_pos", False),
                                      g("optimizer_all_probe_pos"),
                                      g("all_probe_pos_learning_rate", 1e-2), "adam",
                                      g("other_params_update_delay", 0)),
        },
        "loss": {"type": g("loss_function_type", "lsq"),
                 "poisson_multiplier": float(g("poisson_multiplier", 1.0))},
        "regularizers": {"alpha_d": float(g("alpha_d") or 0), "alpha_b": float(g("alpha_b") or 0),
                         "gamma": float(g("gamma") or 0), "reweighted_l1": bool(g("reweighted_l1", False))},
        "optimization": {"minibatch_size": int(g("minibatch_size") or 32),
                         "randomize_probe_pos": bool(g("randomize_probe_pos", False)),
                         "seed": int(g("seed", 0))},
        "execution": {"engine": engine, "mode": mode,
                      "backend": {"pytorch": "torch"}.get(g("backend", "pytorch"), g("backend", "pytorch")),
                      "precision": "float64" if g("run_float64") else "float32",
                      "device": _device(g("cpu_only", False), g("gpu_index", 0)),
                      "threads": int(g("threads", 1)), "cluster": g("cluster") or "local"},
        "output": {"folder": str(save_path / out_name), "resume": bool(g("use_checkpoint", False)),
                   "store_checkpoint": bool(g("store_checkpoint", True)),
                   "n_batch_per_checkpoint": int(g("n_batch_per_checkpoint", 10)),
                   "progress": bool(g("progress", True))},
    }
    if g("n_workers") is not None:
        s["execution"]["n_workers"] = int(g("n_workers"))
    if n_epochs != "auto":
        s["optimization"]["n_epochs"] = int(n_epochs)
    if g("dist_mode_n_batch_per_update") is not None:
        s["optimization"]["n_batch_per_update"] = int(g("dist_mode_n_batch_per_update"))
    if free is not None:
        s["geometry"]["free_prop_cm"] = free if isinstance(free, str) else np.atleast_1d(free).tolist()
    for key in ("energy_ev", "psize_cm"):
        if g(key) is not None:
            s["geometry"][key] = float(g(key))
    if g("slice_pos_cm_ls") is not None:
        s["model"]["slice_pos_cm"] = [float(v) for v in g("slice_pos_cm_ls")]
    if g("finite_support_mask_path"):
        s["object"]["support_path"] = str(g("finite_support_mask_path"))
    if g("shrink_cycle"):
        s["object"]["shrink_cycle"] = int(g("shrink_cycle"))
    if g("random_guess_means_sigmas") is not None:
        s["object"]["random_means_sigmas"] = list(g("random_guess_means_sigmas"))
    _refine_blocks(s, p)
    _probe_kwargs(s["probe"], p)
    return s, _inputs(p)


def _refine_blocks(s: dict, p: dict) -> None:
    """Parameter blocks of the switches in :data:`REFINE_SWITCHES` (learning rates converted
    to the parameter's unit), the initial tilts and the beta/delta ratio."""
    g = p.get
    for switch, (name, stem, default_opt, default_rate, factor) in REFINE_SWITCHES.items():
        on = g(switch) or False
        if not isinstance(on, (bool, np.bool_)):
            raise ConfigError(f"reconstruct_ptychography: {switch} must be True or False, "
                              f"got {on!r}")
        if not on:
            continue
        rate = g(f"{stem}_learning_rate", default_rate)
        if rate is not None:
            try:
                rate = float(rate) * factor
            except (TypeError, ValueError):
                raise ConfigError(f"reconstruct_ptychography: {stem}_learning_rate must be a "
                                  f"number, got {rate!r}") from None
        s["parameters"][name] = _param_block(True, g(f"optimizer_{stem}"), rate, default_opt,
                                             g("other_params_update_delay", 0))
    tilt = g("initial_tilt")
    if tilt is not None:
        tilt = np.asarray(tilt, np.float64)
        if tilt.ndim != 2 or tilt.shape[0] != 3:
            raise ConfigError(f"reconstruct_ptychography: initial_tilt must have shape "
                              f"[3, n_theta] (three tilt angles in radians per angle), got "
                              f"{list(tilt.shape)}")
        # without optimize_tilt the given tilts are applied as fixed values
        block = s["parameters"].setdefault("tilt", {"optimize": False})
        block["initial"] = tilt.T.tolist()  # daskorym stores tilts as [n_theta, 3]
    if g("ctf_lg_kappa") is not None or g("optimize_ctf_lg_kappa", False):
        lg_kappa = g("ctf_lg_kappa")
        try:
            lg_kappa = float(ADORYM_CTF_LG_KAPPA if lg_kappa is None else lg_kappa)
        except (TypeError, ValueError):
            raise ConfigError(f"reconstruct_ptychography: ctf_lg_kappa must be a number (log10 "
                              f"of the beta/delta ratio), got {lg_kappa!r}") from None
        s["model"]["kappa"] = 10.0 ** lg_kappa


def _device(cpu_only: bool, gpu_index: int) -> str:
    if cpu_only:
        return "cpu"
    try:
        import torch
        return f"cuda:{gpu_index}" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _probe_kwargs(probe: dict, p: dict) -> None:
    names = {"probe_mag_sigma": "mag_sigma_px", "probe_phase_sigma": "phase_sigma_px",
             "probe_phase_max": "phase_max_rad", "aperture_radius": "aperture_radius_px",
             "beamstop_radius": "beamstop_radius_px", "probe_defocus_cm": "defocus_cm"}
    for a, b in names.items():
        if p.get(a) is not None:
            probe[b] = float(p[a])


def _inputs(p: dict) -> InMemoryInputs:
    inp = InMemoryInputs()
    guess = p.get("initial_guess")
    if guess is not None:
        inp.initial_object = np.stack([np.asarray(guess[0]), np.asarray(guess[1])], -1)
    if p.get("probe_initial") is not None:
        mag, phase = (np.asarray(a) for a in p["probe_initial"])
        inp.initial_probe = mag * np.exp(1j * phase)
    if p.get("beamstop") is not None:
        inp.mask = np.asarray(p["beamstop"])
    if p.get("probe_pos") is not None:
        inp.positions_px = np.asarray(p["probe_pos"], np.float64)
    if p.get("pupil_function") is not None:
        inp.pupil = np.asarray(p["pupil_function"])
    if p.get("regularizers") is not None:
        inp.regularizers = list(p["regularizers"])
    for key, name in (("optimizer", "object"), ("optimizer_probe", "probe"),
                      ("optimizer_all_probe_pos", "probe_pos")):
        if isinstance(p.get(key), Optimizer):
            inp.optimizers[name] = p[key]
    for switch, (name, stem, *_rest) in REFINE_SWITCHES.items():
        if p.get(switch) and isinstance(p.get(f"optimizer_{stem}"), Optimizer):
            inp.optimizers[name] = p[f"optimizer_{stem}"]
    return inp


def reconstruct_ptychography(*, client=None, **params: Any) -> ReconstructionResult:
    """Adorym-compatible entry point: Adorym's parameter names and meanings.

    See the module docstring for the deliberate differences; execution
    keywords (``engine``, ``n_workers``, ``cluster``, ``mode``) follow
    DESIGN.md.  Returns a :class:`~daskorym.engine.ReconstructionResult`.
    """
    if "fname" not in params or "obj_size" not in params:
        missing = [k for k in ("fname", "obj_size") if k not in params]
        raise ConfigError(f"reconstruct_ptychography: missing required parameter(s) {missing}")
    settings_dict, inputs = adorym_to_settings(params)
    engine_options = {} if client is None else {"client": client}
    settings = load_settings(settings_dict, "reconstruct_ptychography")
    t_max_min = params.get("t_max_min")
    with make_reconstruction(settings, inputs, **engine_options) as rec:
        if t_max_min is None:
            return rec.run()
        deadline = time.monotonic() + 60.0 * float(t_max_min)
        while rec.epoch < rec.n_epochs and time.monotonic() < deadline:
            rec.run(1)
        return rec.result()
