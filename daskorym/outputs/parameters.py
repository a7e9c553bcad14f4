"""Refined parameters (positions, offsets, distances, ...) under ``parameters/``."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy, atomic_write_text

__all__ = ["PARAMETERS_DIR", "write_parameter"]

PARAMETERS_DIR = "parameters"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def write_parameter(folder: Path, name: str, array: np.ndarray) -> list[Path]:
    """Write ``parameters/<name>.npy`` and, for 0-, 1- and 2-D arrays, ``parameters/<name>.txt``.

    Parameters
    ----------
    folder : Path
        Output folder (must exist); ``parameters/`` is created if needed.
    name : str
        File stem, e.g. ``"probe_pos_px"``: letters, digits, ``_``, ``.``, ``-``, not
        starting with ``.``.
    array : ndarray, any shape, numeric
        Values, e.g. refined positions [n_spots, 2]. The ``.txt`` copy (``np.savetxt``,
        one row per line, with a header giving name, shape and dtype) is for people;
        ``.npy`` is the exact copy.

    Returns
    -------
    paths : list of Path
        The files written, each replaced atomically.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"parameter name {name!r} must be letters, digits, '_', '.', '-' "
            "and must not start with '.'"
        )
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise TypeError(f"parameter {name!r}: object arrays cannot be saved (no pickle)")
    directory = Path(folder) / PARAMETERS_DIR
    directory.mkdir(exist_ok=True)
    paths = [atomic_save_npy(directory / f"{name}.npy", array)]
    if array.ndim <= 2:
        text = io.StringIO()
        header = f"{name} shape={list(array.shape)} dtype={array.dtype.str}"
        np.savetxt(text, np.atleast_1d(array), header=header)
        paths.append(atomic_write_text(directory / f"{name}.txt", text.getvalue()))
    return paths
