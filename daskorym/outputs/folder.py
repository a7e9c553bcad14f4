"""``OutputFolder``: the results folder of one reconstruction, and every writer for it.

Files (Adorym's names where Adorym has the output)::

    object.zarr/                      object, float32 [Ly, Lx, Lz, 2], Zarr v3
    delta_ds_1.tiff, beta_ds_1.tiff   (delta_beta) or obj_mag_ds_1.tiff, obj_phase_ds_1.tiff
    probe.npy, probe_mag_ds_1.tiff, probe_phase_ds_1.tiff
    parameters/<name>.npy, .txt       refined positions, offsets, distances, ...
    loss.csv                          epoch,batch,loss,seconds (append-only)
    settings.json                     the run's settings
    preview_object.png, preview_loss.png
    checkpoint/                       see daskorym.outputs.checkpoint

Everything except ``loss.csv`` is replaced atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, losslog, objects, parameters, previews, probe
from .atomic import atomic_write_text, restore_interrupted, temp_sibling
from .errors import OutputExistsError
from .jsonify import numpy_to_json

__all__ = ["RESULT_NAMES", "SETTINGS_JSON", "OutputFolder"]

SETTINGS_JSON = "settings.json"
RESULT_NAMES = (objects.OBJECT_ZARR, checkpoint.CHECKPOINT_DIR, losslog.LOSS_CSV, SETTINGS_JSON)


def _check_writable(path: Path) -> None:
    """Create and remove a small file in ``path``; PermissionError naming it if that fails."""
    probe_file = temp_sibling(path / ".daskorym-write-test")
    try:
        with open(probe_file, "xb") as handle:
            handle.write(b"ok")
        probe_file.unlink()
    except OSError as err:
        raise PermissionError(
            f"output folder {path} is not writable ({err.strerror or err}); "
            "choose another folder or fix its permissions"
        ) from err


def _prepare(path: Path, resume: bool) -> None:
    """Check or create the folder according to ``resume`` (see :class:`OutputFolder`)."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output folder {path} exists but is not a directory")
    if not path.exists():
        if resume:
            raise FileNotFoundError(f"output folder {path} does not exist: nothing to resume")
        try:
            path.mkdir(parents=True)  # mode 0o777 minus the user's umask
        except OSError as err:  # e.g. a parent is a file, or may not be written
            raise type(err)(
                f"cannot create output folder {path} ({err.strerror or err}: "
                f"{err.filename or path}); expected a directory that can be created and "
                "written: choose another folder"
            ) from err
        _check_writable(path)
        return
    _check_writable(path)
    for directory in (objects.OBJECT_ZARR, checkpoint.CHECKPOINT_DIR):
        restore_interrupted(path / directory)  # a replace killed between its two renames
    found = [name for name in RESULT_NAMES if (path / name).exists()]
    if found and not resume:
        raise OutputExistsError(
            f"output folder {path} already holds results ({', '.join(found)}); pass --resume "
            "(use_checkpoint=True) to continue that run, or choose another output folder"
        )
    if resume and not (path / checkpoint.CHECKPOINT_DIR / checkpoint.CHECKPOINT_JSON).is_file():
        raise FileNotFoundError(
            f"output folder {path} has no {checkpoint.CHECKPOINT_DIR}/"
            f"{checkpoint.CHECKPOINT_JSON}: nothing to resume"
        )


class OutputFolder:
    """The results folder of one reconstruction.

    Parameters
    ----------
    path : path-like
        Folder for the results; created with its parents (permissions from the umask) if
        missing.
    resume : bool
        Continue an earlier run from its checkpoint.

    Raises
    ------
    OutputExistsError
        ``resume`` is False and the folder already holds results (``object.zarr``,
        ``checkpoint/``, ``loss.csv`` or ``settings.json``).
    FileNotFoundError
        ``resume`` is True and there is no checkpoint to resume from.
    PermissionError
        The folder cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = bool(resume)
        _prepare(self.path, self.resume)

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, resume={self.resume})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def loss_path(self) -> Path:
        """Path of ``loss.csv``."""
        return self.path / losslog.LOSS_CSV

    @property
    def has_checkpoint(self) -> bool:
        """True if a complete checkpoint is present."""
        return (self.path / checkpoint.CHECKPOINT_DIR / checkpoint.CHECKPOINT_JSON).is_file()

    def write_object(self, obj: np.ndarray, unknown_type: str) -> list[Path]:
        """Write the object, float32 [Ly, Lx, Lz, 2], to ``object.zarr`` and the TIFF stacks.

        See :func:`daskorym.outputs.objects.write_object`.
        """
        return objects.write_object(self.path, obj, unknown_type)

    def write_object_slabs(
        self,
        shape: tuple[int, int, int, int],
        slabs: Iterable[tuple[int, np.ndarray]],
        unknown_type: str,
    ) -> list[Path]:
        """Write an object given as ordered ``(y0, slab [h, Lx, Lz, 2])`` pieces.

        See :func:`daskorym.outputs.objects.write_object_slabs`.
        """
        return objects.write_object_slabs(self.path, shape, slabs, unknown_type)

    def write_probe(self, probe_array: np.ndarray) -> list[Path]:
        """Write the probe (complex [m, py, px] or real [m, py, px, 2]): ``probe.npy`` and
        the magnitude/phase TIFFs [m, py, px]."""
        return probe.write_probe(self.path, probe_array)

    def write_parameter(self, name: str, array: np.ndarray) -> list[Path]:
        """Write ``parameters/<name>.npy`` (and ``.txt`` for arrays of up to 2 dimensions)."""
        return parameters.write_parameter(self.path, name, array)

    def append_loss(self, epoch: int, batch: int, loss: float, seconds: float) -> None:
        """Append the row ``epoch,batch,loss,seconds`` to ``loss.csv`` (flushed)."""
        losslog.append_loss(self.loss_path, epoch, batch, loss, seconds)

    def truncate_loss(self, epoch: int, batch: int) -> int:
        """Drop ``loss.csv`` rows after ``(epoch, batch)``; returns the number dropped."""
        return losslog.truncate_loss(self.loss_path, epoch, batch)

    def read_loss(self) -> dict[str, np.ndarray]:
        """Columns of ``loss.csv``: ``epoch``, ``batch`` int64 [n]; ``loss``, ``seconds`` [n]."""
        return losslog.read_loss(self.loss_path)

    def write_settings(self, settings: Mapping[str, Any]) -> Path:
        """Write ``settings.json`` (sorted keys, indent 2, NumPy values converted)."""
        text = json.dumps(numpy_to_json(dict(settings)), sort_keys=True, indent=2)
        return atomic_write_text(self.path / SETTINGS_JSON, text + "\n")

    def write_previews(
        self, obj: np.ndarray, unknown_type: str, loss_csv: bool = True
    ) -> list[Path]:
        """Write ``preview_object.png`` and, if ``loss_csv`` and it has rows, ``preview_loss.png``.

        ``obj`` is float [Ly, Lx, Lz, 2] (NumPy or Zarr).
        """
        preview = self.path / previews.PREVIEW_OBJECT
        paths = [previews.write_object_preview(preview, obj, unknown_type)]
        if loss_csv:
            loss = self.read_loss()
            if loss["loss"].size:
                paths.append(previews.write_loss_preview(self.path / previews.PREVIEW_LOSS, loss))
        return paths

    def save_checkpoint(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Write ``checkpoint/`` atomically.

        See :func:`daskorym.outputs.checkpoint.save_checkpoint`.
        """
        return checkpoint.save_checkpoint(self.path, arrays=arrays, meta=meta)

    def load_checkpoint(
        self, *, mmap: bool = False
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Read and verify ``checkpoint/``.

        See :func:`daskorym.outputs.checkpoint.load_checkpoint`.
        """
        return checkpoint.load_checkpoint(self.path, mmap=mmap)
