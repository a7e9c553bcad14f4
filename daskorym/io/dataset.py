"""Lazy, read-only access to a dataset in Adorym's layout (HDF5 file or Zarr v3 store).

Layout (see ``spec/adorym-reference.md`` section 2.1)::

    exchange/data            [n_theta, n_tiles, det_y, det_x] float (or complex: abs is taken)
    metadata/probe_pos_px    [n_tiles, 2] float64, top-left (y, x) in object pixels
    metadata/probe_pos_px_{i} per-angle positions (optional)
    metadata/energy_ev       scalar, photon energy in eV
    metadata/psize_cm        scalar, isotropic pixel / voxel size in cm
    metadata/free_prop_cm    'inf' (far field), a distance in cm, or [n_dists] distances
    metadata/theta           [n_theta] rotation angles in radians (optional)

``exchange/data`` is never read whole: :meth:`Dataset.read` reads chosen tiles of one angle,
:meth:`Dataset.iter_angles` streams one angle at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ._sources import Source, magnitude_f32, open_source, read_only, tile_selection
from .errors import dataset_error
from .validate import (
    check_data_shape,
    check_n_dists,
    check_positions,
    check_positive_scalar,
    check_theta,
    parse_free_prop_cm,
    validate_dataset,
)

__all__ = ["Dataset", "open_dataset", "DATA_ITEM", "HC_EV_M"]

DATA_ITEM = "exchange/data"
HC_EV_M = 1239.84193e-9
"""h*c in eV*m: wavelength_m = HC_EV_M / energy_ev (lambda[nm] = 1239.84 / E[eV])."""


class Dataset:
    """An open dataset. Create it with :func:`open_dataset`; use it as a context manager.

    Metadata are read on first access and cached; each accessor raises
    :class:`~daskorym.io.errors.DatasetError` naming the item when a value is missing or wrong.
    """

    def __init__(self, source: Source) -> None:
        self._src = source

    # -- identity and shape -------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Location of the file (HDF5) or directory (Zarr)."""
        return self._src.path

    @property
    def format(self) -> str:
        """``'hdf5'`` or ``'zarr'``."""
        return self._src.format

    @cached_property
    def _data(self) -> Any:
        if not self._src.has(DATA_ITEM):
            expected = "missing (expected [n_theta, n_tiles, det_y, det_x] data)"
            raise dataset_error(self.path, DATA_ITEM, expected)
        return self._src.array(DATA_ITEM)

    @cached_property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n_theta, n_tiles, det_y, det_x)`` of ``exchange/data``."""
        return check_data_shape(self._data.shape, f"{self.path}: {DATA_ITEM}")

    @property
    def n_theta(self) -> int:
        """Number of rotation angles (axis 0)."""
        return self.shape[0]

    @property
    def n_tiles(self) -> int:
        """Number of tiles (probe positions, or n_dists * n_blocks) per angle (axis 1)."""
        return self.shape[1]

    @property
    def det_shape(self) -> tuple[int, int]:
        """``(det_y, det_x)`` in detector pixels."""
        return self.shape[2], self.shape[3]

    @property
    def dtype(self) -> np.dtype:
        """Stored dtype of ``exchange/data`` (reads always return float32)."""
        return np.dtype(self._data.dtype)

    # -- metadata ---------------------------------------------------------------------------
    def metadata_names(self) -> list[str]:
        """Names of the items under ``metadata/`` (including extra, non-Adorym ones)."""
        return self._src.names("metadata")

    def read_metadata(self, name: str) -> np.ndarray | str:
        """The whole value of ``metadata/<name>``: an ndarray, or a str for strings."""
        return self._required(name, "an item of that name")

    def _required(self, name: str, hint: str) -> np.ndarray | str:
        item = f"metadata/{name}"
        if not self._src.has(item):
            raise dataset_error(self.path, item, f"missing (expected {hint})")
        return self._src.read_meta(item)

    @cached_property
    def energy_ev(self) -> float:
        """Photon energy in eV."""
        raw = self._required("energy_ev", "the photon energy in eV")
        return check_positive_scalar(raw, self._where("energy_ev"))

    @cached_property
    def psize_cm(self) -> float:
        """Object pixel (voxel) size in cm."""
        raw = self._required("psize_cm", "the pixel size in cm")
        return check_positive_scalar(raw, self._where("psize_cm"))

    @property
    def wavelength_m(self) -> float:
        """Wavelength in metres, ``1239.84193e-9 / energy_ev``."""
        return HC_EV_M / self.energy_ev

    @property
    def psize_m(self) -> float:
        """Object pixel size in metres."""
        return self.psize_cm * 1e-2

    @cached_property
    def _free_prop_cm(self) -> float | np.ndarray:
        where = self._where("free_prop_cm")
        raw = self._src.read_meta("metadata/free_prop_cm") if self._src.has("metadata/free_prop_cm") else None
        value = parse_free_prop_cm(raw, where)
        if isinstance(value, np.ndarray):
            check_n_dists(value.size, self.n_tiles, where)
        return value

    @property
    def free_prop_cm(self) -> float | np.ndarray:
        """Sample-detector distance in cm: ``math.inf`` (far field), a float, or ``[n_dists]``."""
        value = self._free_prop_cm
        return value.copy() if isinstance(value, np.ndarray) else value

    @property
    def free_prop_m(self) -> float | np.ndarray:
        """:attr:`free_prop_cm` in metres."""
        return self.free_prop_cm * 1e-2

    @property
    def is_far_field(self) -> bool:
        """True when ``free_prop_cm`` is infinite (Fraunhofer propagation)."""
        value = self._free_prop_cm
        return not isinstance(value, np.ndarray) and math.isinf(value)

    @property
    def n_dists(self) -> int:
        """Number of propagation distances (1 unless multi-distance)."""
        value = self._free_prop_cm
        return value.size if isinstance(value, np.ndarray) else 1

    @cached_property
    def theta(self) -> np.ndarray | None:
        """Rotation angles ``[n_theta]`` in radians from ``metadata/theta``, or None if absent."""
        if not self._src.has("metadata/theta"):
            return None
        raw = self._src.read_meta("metadata/theta")
        return read_only(check_theta(raw, self.n_theta, self._where("theta")))

    def _where(self, name: str) -> str:
        return f"{self.path}: metadata/{name}"

    # -- positions --------------------------------------------------------------------------
    @cached_property
    def probe_pos_px(self) -> np.ndarray | None:
        """Common positions ``[n_tiles, 2]`` float64 (top-left y, x in object pixels).

        ``[[0, 0]]`` when absent and there is one tile; None when absent otherwise.
        """
        if self._src.has("metadata/probe_pos_px"):
            raw = self._src.read_meta("metadata/probe_pos_px")
            return read_only(check_positions(raw, self.n_tiles, self._where("probe_pos_px")))
        return read_only(np.zeros((1, 2))) if self.n_tiles == 1 else None

    def positions_item(self, i_theta: int) -> str:
        """The item that :meth:`positions` reads for angle ``i_theta``."""
        per_angle = f"metadata/probe_pos_px_{i_theta}"
        return per_angle if self._src.has(per_angle) else "metadata/probe_pos_px"

    def positions(self, i_theta: int) -> np.ndarray:
        """Positions ``[n_tiles, 2]`` float64 for angle ``i_theta``.

        ``metadata/probe_pos_px_{i_theta}`` if present, else the common :attr:`probe_pos_px`.
        """
        self._check_theta_index(i_theta)
        item = self.positions_item(i_theta)
        if item != "metadata/probe_pos_px":
            return check_positions(self._src.read_meta(item), self.n_tiles, f"{self.path}: {item}")
        common = self.probe_pos_px
        if common is None:
            raise dataset_error(
                self.path, "metadata/probe_pos_px",
                f"missing: {self.n_tiles} tiles per angle need positions [n_tiles, 2] "
                f"(or metadata/probe_pos_px_{i_theta} for angle {i_theta})",
            )
        return common.copy()

    # -- data -------------------------------------------------------------------------------
    def _check_theta_index(self, i_theta: int) -> None:
        if not 0 <= i_theta < self.n_theta:
            raise IndexError(f"angle index {i_theta} out of range [0, {self.n_theta}) for {self.path}")

    def read(self, i_theta: int, tile_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read chosen tiles of one angle: float32 ``[len(tile_indices), det_y, det_x]``.

        Only those tiles are read. Indices may be unsorted or repeated: they are read in sorted
        order and returned in the requested order. Complex data are returned as magnitude.
        """
        self._check_theta_index(i_theta)
        idx = np.asarray(tile_indices, dtype=np.intp).reshape(-1)
        if idx.size == 0:
            return np.empty((0, *self.det_shape), dtype=np.float32)
        if idx.min() < 0 or idx.max() >= self.n_tiles:
            raise IndexError(
                f"tile indices must be in [0, {self.n_tiles}), got min {idx.min()}, max {idx.max()}"
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        block = self._src.read_block(DATA_ITEM, i_theta, tile_selection(unique))
        return magnitude_f32(block)[inverse.reshape(-1)]

    def read_angle(self, i_theta: int) -> np.ndarray:
        """All tiles of one angle: float32 ``[n_tiles, det_y, det_x]``."""
        self._check_theta_index(i_theta)
        return magnitude_f32(self._src.read_block(DATA_ITEM, i_theta, slice(None)))

    def missing_chunks(self) -> tuple[int, int, str | None]:
        """``(missing, total, first missing)`` chunks of ``exchange/data`` in the store.

        A chunk never written (or lost in a copy) reads as the fill value, not as an error.
        """
        self._data  # noqa: B018 - present and an array
        return self._src.missing_chunks(DATA_ITEM)

    def iter_angles(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i_theta, float32 [n_tiles, det_y, det_x])``, one angle at a time."""
        for i in range(self.n_theta):
            yield i, self.read_angle(i)

    def mean_pattern(self) -> np.ndarray:
        """Mean over all angles and tiles, float64 ``[det_y, det_x]``, streamed per angle."""
        total = np.zeros(self.det_shape, dtype=np.float64)
        for _, block in self.iter_angles():
            total += block.sum(axis=0, dtype=np.float64)
        return total / (self.n_theta * self.n_tiles)

    def fresnel_number(self, probe_size_px: float) -> float | np.ndarray:
        """Fresnel number ``(a * psize_m)**2 / (wavelength_m * z_m)`` for a size of ``a`` pixels.

        0.0 in the far field; an array ``[n_dists]`` for multi-distance data.
        """
        if self.is_far_field:
            return 0.0
        return (probe_size_px * self.psize_m) ** 2 / (self.wavelength_m * self.free_prop_m)

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the file handle (a no-op for Zarr)."""
        self._src.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, format={self.format!r})"


def open_dataset(
    path: str | os.PathLike[str], *, validate: bool = True, check_values: bool = True,
    raw_data_type: str = "magnitude",
) -> Dataset:
    """Open an Adorym-layout dataset lazily, HDF5 or Zarr chosen by what ``path`` is.

    Parameters
    ----------
    path : path-like
        An HDF5 file (detected by its signature) or a Zarr v3 directory (with ``zarr.json``).
    validate : bool
        Run :func:`~daskorym.io.validate.validate_dataset` before returning.
    check_values : bool
        With ``validate``, also reject missing chunks and stream the data to reject NaN, inf
        and negative values.
    raw_data_type : {'magnitude', 'intensity'}
        What ``exchange/data`` holds; used in messages.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DatasetError
        ``path`` is not an HDF5 file or Zarr store, or fails validation.
    """
    ds = Dataset(open_source(path))
    if validate:
        try:
            validate_dataset(ds, check_values=check_values, raw_data_type=raw_data_type)
        except BaseException:
            ds.close()
            raise
    return ds
