"""Checks of an Adorym-layout dataset: pure value checks plus :func:`validate_dataset`.

The pure checks take a value and ``where`` (``"<file>: <item>"``) and either return the value
normalised or raise :class:`DatasetError`. :class:`~daskorym.io.dataset.Dataset` parses its
metadata with them, and :func:`~daskorym.io.write.write_dataset` checks its inputs with them,
so reading and writing accept exactly the same things.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DatasetError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = [
    "validate_dataset",
    "check_data_shape",
    "check_positive_scalar",
    "parse_free_prop_cm",
    "check_n_dists",
    "check_positions",
    "check_theta",
    "check_values_block",
    "check_chunks_present",
    "check_tiles_in_object",
]

RAW_DATA_TYPES = ("magnitude", "intensity")


def _fail(where: str, problem: str) -> DatasetError:
    return DatasetError(f"{where}: {problem}")


def _as_float_array(value: Any, where: str) -> np.ndarray:
    """``value`` as a float64 array, or a DatasetError saying what was found instead."""
    if isinstance(value, str):
        raise _fail(where, f"expected a number, found the string {value!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"expected numbers, found {type(value).__name__} ({exc})") from exc


def check_data_shape(shape: Sequence[int], where: str) -> tuple[int, int, int, int]:
    """Check ``exchange/data`` is 4D ``[n_theta, n_tiles, det_y, det_x]`` with no empty axis."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4:
        expected = "expected a 4D array [n_theta, n_tiles, det_y, det_x]"
        raise _fail(where, f"{expected}, found {len(shape)}D shape {shape}")
    if min(shape) == 0:
        raise _fail(where, f"data is empty: shape {shape} has a zero-length axis")
    return shape  # type: ignore[return-value]


def check_positive_scalar(value: Any, where: str) -> float:
    """A single finite number > 0 (e.g. ``energy_ev``, ``psize_cm``)."""
    arr = _as_float_array(value, where)
    if arr.size != 1:
        raise _fail(where, f"expected a scalar, found an array of shape {arr.shape}")
    x = float(arr.reshape(()))
    if not math.isfinite(x) or x <= 0:
        raise _fail(where, f"expected a finite number > 0, found {x}")
    return x


def _parse_distance_string(value: str, where: str) -> float:
    text = value.strip().lower()
    if text in ("inf", "infinity"):
        return math.inf
    try:
        number = float(text)
    except ValueError:
        raise _fail(where, f"expected 'inf' (far field) or a distance in cm, found {value!r}") from None
    return parse_free_prop_cm(number, where)  # type: ignore[return-value]


def parse_free_prop_cm(value: Any, where: str) -> float | np.ndarray:
    """Parse a sample-to-detector distance.

    Returns ``math.inf`` (far field, stored as the string ``'inf'`` or as float inf), a float
    > 0, or a float64 array ``[n_dists]`` of finite distances > 0 (multi-distance). A
    one-element array is returned as a float.
    """
    if value is None:
        raise _fail(where, "missing; pass free_prop_cm='inf' for far field, or the distance in cm")
    if isinstance(value, str):
        return _parse_distance_string(value, where)
    arr = _as_float_array(value, where)
    if arr.ndim > 1 or arr.size == 0:
        raise _fail(where, f"expected a scalar or a 1D array [n_dists], found shape {arr.shape}")
    if np.isnan(arr).any():
        raise _fail(where, f"expected distances > 0 or 'inf', found NaN ({arr.tolist()})")
    if (arr <= 0).any():
        raise _fail(where, f"expected distances > 0 (use 'inf' for far field), found {arr.tolist()}")
    if arr.size == 1:
        return float(arr.reshape(-1)[0])
    if np.isinf(arr).any():
        raise _fail(where, f"multi-distance values must be finite, found {arr.tolist()}")
    return arr.reshape(-1)


def check_n_dists(n_dists: int, n_tiles: int, where: str) -> None:
    """Multi-distance data stack n_dists x n_blocks images on axis 1 (distance-major)."""
    if n_tiles % n_dists:
        raise _fail(
            where,
            f"wrong length: {n_dists} distances do not divide the {n_tiles} images on axis 1 "
            "of exchange/data (expected n_tiles = n_dists * n_blocks)",
        )


def check_positions(value: Any, n_tiles: int, where: str) -> np.ndarray:
    """Probe positions: float64 ``[n_tiles, 2]`` (top-left y, x in object pixels), finite."""
    arr = _as_float_array(value, where)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise _fail(where, f"wrong shape: expected [n_tiles, 2] = [{n_tiles}, 2], found {arr.shape}")
    if arr.shape[0] != n_tiles:
        expected = f"expected {n_tiles} positions (one per tile in exchange/data)"
        raise _fail(where, f"{expected}, found {arr.shape[0]}")
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise _fail(where, f"expected finite positions, found {n_bad} NaN/inf values")
    return arr


def check_theta(value: Any, n_theta: int, where: str) -> np.ndarray:
    """Rotation angles: float64 ``[n_theta]`` radians, finite."""
    arr = _as_float_array(value, where)
    if arr.ndim == 0 and n_theta == 1:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != n_theta:
        raise _fail(where, f"expected {n_theta} angles (axis 0 of exchange/data), found shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise _fail(where, "expected finite angles, found NaN or inf")
    return arr


def check_values_block(block: np.ndarray, where: str, raw_data_type: str = "magnitude") -> None:
    """Reject NaN, inf and negative values in one block of measured data."""
    if np.isnan(block).any():
        raise _fail(where, f"found {int(np.isnan(block).sum())} NaN values")
    if np.isinf(block).any():
        raise _fail(where, f"found {int(np.isinf(block).sum())} inf values")
    if (block < 0).any():
        raise _fail(
            where,
            f"found {int((block < 0).sum())} negative values (min {float(block.min())}); "
            f"{raw_data_type} data must be >= 0",
        )


def check_chunks_present(missing: int, total: int, first: str | None, where: str) -> None:
    """Reject a store in which chunks of the data are missing (they would read as zeros)."""
    if missing:
        first_note = f" (first: {first})" if first else ""
        raise _fail(
            where,
            f"{missing} of {total} chunks are missing from the store{first_note}; a missing "
            "chunk would read as the fill value, so the data look incomplete (an interrupted write "
            "or copy?). Expected every chunk present: write or copy the dataset again, or set "
            "dataset.check_values = false if those tiles really are all zero",
        )


def check_tiles_in_object(
    positions: np.ndarray, det_shape: tuple[int, int], obj_shape: Sequence[int], where: str
) -> None:
    """Every tile ``[y, y+det_y) x [x, x+det_x)`` must overlap the object ``[0, Ly) x [0, Lx)``."""
    ly, lx = int(obj_shape[0]), int(obj_shape[1])
    y, x = positions[:, 0], positions[:, 1]
    outside = (y + det_shape[0] <= 0) | (y >= ly) | (x + det_shape[1] <= 0) | (x >= lx)
    if outside.any():
        bad = np.flatnonzero(outside)
        raise _fail(
            where,
            f"{bad.size} tiles lie wholly outside the object [{ly}, {lx}] "
            f"(first: tile {bad[0]} at y, x = {positions[bad[0]].tolist()})",
        )


def _check_geometry(ds: Dataset, obj_shape: Sequence[int] | None, probe_shape: Sequence[int] | None) -> None:
    det = ds.det_shape
    if probe_shape is not None and tuple(int(n) for n in probe_shape[-2:]) != det:
        problem = f"probe shape {tuple(probe_shape)} differs from the detector shape {det}"
        raise _fail(f"{ds.path}: exchange/data", problem)
    if obj_shape is None:
        return
    if len(obj_shape) < 2:
        raise ValueError(f"obj_shape must be (Ly, Lx[, Lz]), got {obj_shape}")
    if det[0] > obj_shape[0] or det[1] > obj_shape[1]:
        raise _fail(
            f"{ds.path}: exchange/data",
            f"probe larger than the object: detector/probe {det} vs object (Ly, Lx) = {tuple(obj_shape[:2])}",
        )
    for i in range(ds.n_theta):
        check_tiles_in_object(ds.positions(i), det, obj_shape, f"{ds.path}: {ds.positions_item(i)}")


def validate_dataset(
    ds: Dataset,
    *,
    obj_shape: Sequence[int] | None = None,
    probe_shape: Sequence[int] | None = None,
    raw_data_type: str = "magnitude",
    check_values: bool = True,
) -> None:
    """Check a dataset before any heavy work; raise :class:`DatasetError` on the first problem.

    Checks, cheapest first: ``exchange/data`` (present, 4D, non-empty); ``energy_ev`` and
    ``psize_cm`` (finite, > 0); ``free_prop_cm`` ('inf', > 0, length dividing n_tiles);
    ``theta`` (length n_theta, finite); positions for every angle ([n_tiles, 2], finite);
    geometry against ``probe_shape`` and ``obj_shape``; then that no chunk of the data is
    missing from the store, and the data values, streamed one angle at a time (no NaN, no inf,
    no negative values).

    Parameters
    ----------
    ds : Dataset
        An open dataset.
    obj_shape : (Ly, Lx[, Lz]) ints, optional
        Object grid in pixels; tiles must fit in it and overlap it.
    probe_shape : (py, px) ints, optional
        Probe grid; must equal the detector shape ``(det_y, det_x)``.
    raw_data_type : {'magnitude', 'intensity'}
        What ``exchange/data`` holds; used in messages.
    check_values : bool
        Look for missing chunks and stream the data to look for NaN, inf and negative values.
    """
    if raw_data_type not in RAW_DATA_TYPES:
        raise ValueError(f"raw_data_type must be one of {RAW_DATA_TYPES}, got {raw_data_type!r}")
    _ = ds.shape, ds.energy_ev, ds.psize_cm, ds.free_prop_cm, ds.theta
    for i in range(ds.n_theta):
        ds.positions(i)
    _check_geometry(ds, obj_shape, probe_shape)
    if check_values:
        check_chunks_present(*ds.missing_chunks(), f"{ds.path}: exchange/data")
        for i, block in ds.iter_angles():
            check_values_block(block, f"{ds.path}: exchange/data (theta index {i})", raw_data_type)
