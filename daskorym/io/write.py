"""Write a dataset in Adorym's layout to HDF5 (``.h5``/``.hdf5``) or Zarr v3 (``.zarr``), atomically."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from ._atomic import atomic_target
from ._sources import magnitude_f32
from .validate import (
    check_data_shape,
    check_n_dists,
    check_positions,
    check_positive_scalar,
    check_theta,
    parse_free_prop_cm,
)

__all__ = ["write_dataset", "format_for_suffix"]

_SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}
_RESERVED = re.compile(r"^(energy_ev|psize_cm|free_prop_cm|theta|probe_pos_px(_\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def format_for_suffix(path: Path) -> str:
    """``'hdf5'`` for ``.h5``/``.hdf5``, ``'zarr'`` for ``.zarr``; ValueError otherwise."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path}: expected suffix .h5, .hdf5 or .zarr, found {path.suffix!r}"
        )
    return fmt


def _extra(extra: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (extra or {}).items():
        if not _NAME.match(name) or _RESERVED.match(name):
            raise ValueError(
                f"{where}: extra metadata name {name!r} is reserved or not a plain name ([A-Za-z0-9_.-]+)"
            )
        out[name] = value if isinstance(value, str) else np.asarray(value)
    return out


def _positions(
    shape: tuple[int, ...], common: Any, per_angle: Sequence[Any] | None, where: str
) -> dict[str, np.ndarray]:
    n_theta, n_tiles = shape[0], shape[1]
    out: dict[str, np.ndarray] = {}
    if common is not None:
        out["probe_pos_px"] = check_positions(common, n_tiles, f"{where}: metadata/probe_pos_px")
    if per_angle is not None:
        if len(per_angle) != n_theta:
            raise ValueError(
                f"{where}: probe_pos_px_per_angle: expected {n_theta} arrays (one per angle), "
                f"found {len(per_angle)}"
            )
        for i, pos in enumerate(per_angle):
            out[f"probe_pos_px_{i}"] = check_positions(pos, n_tiles, f"{where}: metadata/probe_pos_px_{i}")
    if not out and n_tiles > 1:
        raise ValueError(
            f"{where}: metadata/probe_pos_px: {n_tiles} tiles per angle need probe_pos_px [n_tiles, 2]"
        )
    return out


def _metadata(shape: tuple[int, ...], where: str, **given: Any) -> dict[str, Any]:
    """Check and normalise every metadata item; return name -> value (str or ndarray)."""
    meta: dict[str, Any] = {
        "energy_ev": check_positive_scalar(given["energy_ev"], f"{where}: metadata/energy_ev"),
        "psize_cm": check_positive_scalar(given["psize_cm"], f"{where}: metadata/psize_cm"),
    }
    dist = parse_free_prop_cm(given["free_prop_cm"], f"{where}: metadata/free_prop_cm")
    if isinstance(dist, np.ndarray):
        check_n_dists(dist.size, shape[1], f"{where}: metadata/free_prop_cm")
    meta["free_prop_cm"] = "inf" if not isinstance(dist, np.ndarray) and math.isinf(dist) else dist
    if given["theta"] is not None:
        meta["theta"] = check_theta(given["theta"], shape[0], f"{where}: metadata/theta")
    meta.update(_positions(shape, given["probe_pos_px"], given["per_angle"], where))
    meta.update(_extra(given["extra"], where))
    return {k: v if isinstance(v, str) else np.asarray(v) for k, v in meta.items()}


def _write_hdf5(
    tmp: Path, data: Any, shape: tuple[int, ...], chunks: tuple[int, ...], meta: dict[str, Any]
) -> None:
    with h5py.File(tmp, "w") as f:
        md = f.create_group("metadata")
        for name, value in meta.items():
            if isinstance(value, str):
                md.create_dataset(name, data=value, dtype=h5py.string_dtype("utf-8"))
            else:
                md.create_dataset(name, data=value)
        out = f.create_dataset("exchange/data", shape=shape, dtype=np.float32, chunks=chunks)
        for i in range(shape[0]):
            out[i] = magnitude_f32(np.asarray(data[i]))


def _write_zarr(
    tmp: Path, data: Any, shape: tuple[int, ...], chunks: tuple[int, ...], meta: dict[str, Any]
) -> None:
    root = zarr.open_group(tmp, mode="w-")
    md = root.require_group("metadata")
    for name, value in meta.items():
        if isinstance(value, str):
            md.attrs[name] = value  # strings (e.g. free_prop_cm = 'inf') live as attributes
        else:
            md.create_array(name, data=value)
    # every chunk is stored, all-zero ones too: a chunk missing from the store then means
    # a damaged copy (see validate.check_chunks_present), not an empty tile
    out = root.require_group("exchange").create_array(
        "data", shape=shape, dtype=np.float32, chunks=chunks, config={"write_empty_chunks": True}
    )
    for i in range(shape[0]):
        out[i] = magnitude_f32(np.asarray(data[i]))


def write_dataset(
    path: str | os.PathLike[str],
    data: Any,
    *,
    probe_pos_px: Any = None,
    energy_ev: float,
    psize_cm: float,
    free_prop_cm: float | str | Sequence[float] | np.ndarray,
    theta: Any = None,
    probe_pos_px_per_angle: Sequence[Any] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunks: tuple[int, int, int, int] | None = None,
) -> Path:
    """Write ``data`` and its metadata in Adorym's layout; atomic (temporary sibling, rename).

    Parameters
    ----------
    path : path-like
        Target: ``.h5``/``.hdf5`` (HDF5 file) or ``.zarr`` (Zarr v3 directory store).
    data : array-like [n_theta, n_tiles, det_y, det_x]
        Magnitudes or intensities (>= 0). Written as float32 one angle at a time, so it may be a
        lazy array (h5py/zarr/dask); complex values are written as their magnitude.
    probe_pos_px : array-like [n_tiles, 2], optional
        Top-left (y, x) of each tile in object pixels (may be negative). Required when
        n_tiles > 1 unless ``probe_pos_px_per_angle`` is given.
    energy_ev, psize_cm : float
        Photon energy (eV) and object pixel size (cm); finite, > 0.
    free_prop_cm : 'inf', float or array-like [n_dists]
        Sample-detector distance(s) in cm; ``'inf'`` (or ``math.inf``) for far field.
    theta : array-like [n_theta], optional
        Rotation angles in radians.
    probe_pos_px_per_angle : sequence of n_theta arrays [n_tiles, 2], optional
        Per-angle positions, written as ``metadata/probe_pos_px_{i}``.
    extra_metadata : mapping name -> array, scalar or str, optional
        Further items under ``metadata/``.
    overwrite : bool
        Replace an existing ``path`` once the new dataset is complete.
    chunks : 4-tuple of int, optional
        Chunks of ``exchange/data``; default one tile per chunk ``(1, 1, det_y, det_x)``.

    Returns
    -------
    Path
        The written dataset.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    DatasetError, ValueError
        Invalid data shape or metadata (checked before anything is written).
    """
    path = Path(path)
    fmt = format_for_suffix(path)
    if not hasattr(data, "shape") or not hasattr(data, "__getitem__"):
        data = np.asarray(data)
    shape = check_data_shape(data.shape, f"{path}: exchange/data")
    meta = _metadata(
        shape, str(path), energy_ev=energy_ev, psize_cm=psize_cm, free_prop_cm=free_prop_cm, theta=theta,
        probe_pos_px=probe_pos_px, per_angle=probe_pos_px_per_angle, extra=extra_metadata,
    )
    chunks = tuple(int(c) for c in chunks) if chunks is not None else (1, 1, shape[2], shape[3])
    if len(chunks) != 4 or min(chunks) < 1:
        raise ValueError(f"chunks must be 4 positive ints for [n_theta, n_tiles, det_y, det_x], got {chunks}")
    writer = _write_hdf5 if fmt == "hdf5" else _write_zarr
    with atomic_target(path, overwrite=overwrite) as tmp:
        writer(tmp, data, shape, chunks, meta)
    return path
