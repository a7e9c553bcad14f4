"""PNG previews of a running reconstruction: central object slices and the loss curve.

Figures are drawn with Matplotlib's Agg canvas directly (no ``pyplot``, no global backend
change, safe in worker threads) and written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_write_bytes
from .objects import check_unknown_type, object_channels

__all__ = ["PREVIEW_LOSS", "PREVIEW_OBJECT", "write_loss_preview", "write_object_preview"]

PREVIEW_OBJECT = "preview_object.png"
PREVIEW_LOSS = "preview_loss.png"
_CHANNEL_NAMES = {"delta_beta": ("delta", "beta"), "real_imag": ("magnitude", "phase (rad)")}


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


def write_object_preview(path: Path, obj: np.ndarray, unknown_type: str) -> Path:
    """Draw the central y-x slice (at z = Lz // 2) and x-z slice (at y = Ly // 2) of both channels.

    Parameters
    ----------
    path : Path
        PNG file to write.
    obj : array-like, float [Ly, Lx, Lz, 2]
        The object (NumPy or Zarr; only the two slices are read).
    unknown_type : {'delta_beta', 'real_imag'}
        Meaning of the last axis; ``real_imag`` is shown as magnitude and phase.
    """
    check_unknown_type(unknown_type)
    if len(obj.shape) != 4 or obj.shape[3] != 2:
        raise ValueError(f"object must be [Ly, Lx, Lz, 2], got shape {tuple(obj.shape)}")
    ly, _, lz, _ = obj.shape
    planes = {
        f"y-x at z={lz // 2}": object_channels(np.asarray(obj[:, :, lz // 2, :]), unknown_type),
        f"x-z at y={ly // 2}": object_channels(np.asarray(obj[ly // 2, :, :, :]), unknown_type),
    }
    figure = Figure(figsize=(9, 7), layout="constrained")
    axes = figure.subplots(2, 2, squeeze=False)
    for row, (title, channels) in enumerate(planes.items()):
        for col, (name, image) in enumerate(zip(_CHANNEL_NAMES[unknown_type], channels)):
            ax = axes[row, col]
            shown = ax.imshow(image, cmap="gray", aspect="auto", interpolation="nearest")
            ax.set_title(f"{name}, {title}")
            ax.set_xlabel("z" if row else "x")
            ax.set_ylabel("x" if row else "y")
            figure.colorbar(shown, ax=ax)
    return _save(figure, path)


def write_loss_preview(path: Path, loss: Mapping[str, np.ndarray]) -> Path:
    """Plot loss against the global batch index (log scale when every loss is positive).

    Parameters
    ----------
    path : Path
        PNG file to write.
    loss : mapping
        Columns as returned by :func:`daskorym.outputs.losslog.read_loss`
        (``epoch`` [n], ``loss`` [n], ...).
    """
    values = np.asarray(loss["loss"], dtype=np.float64)
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot(np.arange(values.size), values, lw=1)
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel("batch (all epochs)")
    ax.set_ylabel("loss")
    epochs = np.asarray(loss["epoch"])
    starts = np.flatnonzero(np.diff(epochs)) + 1  # where each epoch begins: one collection
    if starts.size:
        ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), color="0.8", lw=0.5)
    ax.set_title(f"loss, {values.size} batches, {len(np.unique(epochs))} epochs")
    return _save(figure, path)
