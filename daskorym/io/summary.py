"""Human-readable summary and PNG preview of a dataset (used by ``daskorym inspect``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._atomic import atomic_target
from .dataset import Dataset
from .errors import DatasetError

__all__ = ["summarize", "save_pattern_png", "data_stats"]


def data_stats(ds: Dataset) -> tuple[float, float, float]:
    """``(min, max, mean)`` of the (float32, magnitude) data, streamed one angle at a time."""
    lo, hi, total = math.inf, -math.inf, 0.0
    for _, block in ds.iter_angles():
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
        total += float(block.sum(dtype=np.float64))
    return lo, hi, total / math.prod(ds.shape)


def _distance_line(ds: Dataset) -> str:
    if ds.is_far_field:
        return "distance: far field (free_prop_cm = 'inf')"
    if ds.n_dists > 1:
        return f"distances ({ds.n_dists}): {np.array2string(ds.free_prop_cm, precision=4)} cm"
    return f"distance: {ds.free_prop_cm:.6g} cm"


def _fresnel_line(ds: Dataset) -> str:
    size = max(ds.det_shape)
    nf = ds.fresnel_number(size)
    text = np.array2string(nf, precision=4) if isinstance(nf, np.ndarray) else f"{nf:.4g}"
    return f"Fresnel number (a = {size} px = {size * ds.psize_m:.4g} m): {text}"


def _theta_line(ds: Dataset) -> str:
    theta = ds.theta
    if theta is None:
        return f"angles: {ds.n_theta} (metadata/theta not stored)"
    lo, hi = float(theta.min()), float(theta.max())
    degrees = f"[{math.degrees(lo):.4g}, {math.degrees(hi):.4g}] deg"
    return f"angles: {ds.n_theta}, theta in [{lo:.6g}, {hi:.6g}] rad = {degrees}"


def _positions_line(ds: Dataset) -> str:
    try:
        pos = np.concatenate([ds.positions(i) for i in range(ds.n_theta)])
    except DatasetError as exc:
        return f"positions: unavailable ({exc})"
    kind = "per angle" if ds.positions_item(0) != "metadata/probe_pos_px" else "common"
    (y0, x0), (y1, x1) = pos.min(axis=0), pos.max(axis=0)
    return (
        f"positions ({kind}): {ds.n_tiles} per angle, top-left y in [{y0:.6g}, {y1:.6g}], "
        f"x in [{x0:.6g}, {x1:.6g}] px; tiles cover y [{y0:.6g}, {y1 + ds.det_shape[0]:.6g}), "
        f"x [{x0:.6g}, {x1 + ds.det_shape[1]:.6g}) px"
    )


def summarize(ds: Dataset) -> str:
    """Multi-line description: shapes, dtype, energy, wavelength, pixel size, distances,
    Fresnel number for the detector size, angles, position extent and data min/max/mean
    (streamed one angle at a time)."""
    lo, hi, mean = data_stats(ds)
    lines = [
        f"dataset: {ds.path} ({ds.format})",
        f"exchange/data: shape {ds.shape} [n_theta, n_tiles, det_y, det_x], dtype {ds.dtype}",
        f"energy: {ds.energy_ev:.6g} eV, wavelength: {ds.wavelength_m * 1e9:.6g} nm",
        f"pixel size: {ds.psize_cm:.6g} cm = {ds.psize_m * 1e9:.6g} nm",
        _distance_line(ds),
        _fresnel_line(ds),
        _theta_line(ds),
        _positions_line(ds),
        f"data: min {lo:.6g}, max {hi:.6g}, mean {mean:.6g}",
    ]
    return "\n".join(lines)


def _log_image(pattern: np.ndarray) -> np.ndarray:
    """log10 of ``pattern``, with values <= 0 raised to the smallest positive value."""
    positive = pattern[pattern > 0]
    floor = float(positive.min()) if positive.size else 1.0
    return np.log10(np.maximum(pattern, floor))


def save_pattern_png(
    ds: Dataset, i_theta: int, i_tile: int, out_png: str | os.PathLike[str], log: bool = True
) -> Path:
    """Save one measured pattern ``[det_y, det_x]`` as a PNG with a colour bar (written atomically).

    Parameters
    ----------
    ds : Dataset
    i_theta, i_tile : int
        Angle and tile index.
    out_png : path-like
        Output file; replaced if it exists.
    log : bool
        Show log10 of the values (non-positive values clipped to the smallest positive one).
    """
    pattern = ds.read(i_theta, [i_tile])[0]
    image = _log_image(pattern) if log else pattern
    fig = Figure(figsize=(5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = ax.imshow(image, cmap="viridis", origin="upper")
    fig.colorbar(shown, ax=ax, label="log10(value)" if log else "value")
    ax.set_title(f"{ds.path.name}: theta index {i_theta}, tile {i_tile}")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    out = Path(out_png)
    with atomic_target(out, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out
