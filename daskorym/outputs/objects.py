"""The reconstructed object on disk: ``object.zarr`` plus Adorym-style TIFF stacks.

``object.zarr`` is a Zarr v3 array, float32 [Ly, Lx, Lz, 2], chunked in slabs of
``min(Ly, 16)`` rows along y. The TIFF stacks are float32 [Ly, Lx, Lz], one page per y row:

==============  =====================  =====================
unknown_type    channel 0              channel 1
==============  =====================  =====================
``delta_beta``  ``delta_ds_1.tiff``    ``beta_ds_1.tiff``
``real_imag``   ``obj_mag_ds_1.tiff``  ``obj_phase_ds_1.tiff``
==============  =====================  =====================

For ``real_imag`` the TIFFs hold ``|re + i im|`` and ``angle(re + i im)`` (radians).
Objects are written slab by slab, so an object larger than memory can be streamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import tifffile
import zarr

from .atomic import atomic_dir, atomic_file

__all__ = [
    "OBJECT_ZARR",
    "TIFF_NAMES",
    "UNKNOWN_TYPES",
    "iter_slabs",
    "object_channels",
    "slab_height",
    "write_object",
    "write_object_slabs",
]

OBJECT_ZARR = "object.zarr"
UNKNOWN_TYPES = ("delta_beta", "real_imag")
TIFF_NAMES = {
    "delta_beta": ("delta_ds_1.tiff", "beta_ds_1.tiff"),
    "real_imag": ("obj_mag_ds_1.tiff", "obj_phase_ds_1.tiff"),
}
MAX_SLAB_HEIGHT = 16
_BIGTIFF_BYTES = 2**32 - 2**25  # classic TIFF offsets are 32-bit; keep a margin for tags


def slab_height(ly: int) -> int:
    """Rows per ``object.zarr`` chunk along y: ``min(ly, 16)``."""
    return max(1, min(int(ly), MAX_SLAB_HEIGHT))


def check_unknown_type(unknown_type: str) -> None:
    """Raise ``ValueError`` unless ``unknown_type`` is ``'delta_beta'`` or ``'real_imag'``."""
    if unknown_type not in UNKNOWN_TYPES:
        raise ValueError(f"unknown_type must be one of {UNKNOWN_TYPES}, got {unknown_type!r}")


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4 or shape[3] != 2 or min(shape) < 1:
        raise ValueError(f"object shape must be [Ly, Lx, Lz, 2] with Ly, Lx, Lz >= 1, got {shape}")
    return shape[0], shape[1], shape[2], shape[3]


def object_channels(slab: np.ndarray, unknown_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Split an object slab into the two TIFF channels.

    Parameters
    ----------
    slab : ndarray, float [..., 2]
        Object values; last axis is (delta, beta) or (real, imag).
    unknown_type : {'delta_beta', 'real_imag'}
        How to read the last axis.

    Returns
    -------
    first, second : ndarray, float32 [...]
        (delta, beta), or (magnitude, phase in radians) for ``real_imag``.
    """
    check_unknown_type(unknown_type)
    first = np.asarray(slab[..., 0], dtype=np.float32)
    second = np.asarray(slab[..., 1], dtype=np.float32)
    if unknown_type == "delta_beta":
        return first, second
    return np.hypot(first, second), np.arctan2(second, first)


def iter_slabs(obj: np.ndarray, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(y0, obj[y0:y0 + height])`` over the first axis of ``obj``."""
    for y0 in range(0, obj.shape[0], height):
        yield y0, obj[y0 : y0 + height]


def write_object(folder: Path, obj: np.ndarray, unknown_type: str) -> list[Path]:
    """Write an in-memory object to ``object.zarr`` and the two TIFF stacks in ``folder``.

    Parameters
    ----------
    folder : Path
        Output folder (must exist).
    obj : ndarray, float32 [Ly, Lx, Lz, 2]
        The object (or any array-like with this shape that supports slicing, e.g. zarr).
    unknown_type : {'delta_beta', 'real_imag'}
        Meaning of the last axis.

    Returns
    -------
    paths : list of Path
        ``object.zarr`` and the two TIFF files.
    """
    shape = _check_shape(obj.shape)
    return write_object_slabs(folder, shape, iter_slabs(obj, slab_height(shape[0])), unknown_type)


def write_object_slabs(
    folder: Path,
    shape: tuple[int, int, int, int],
    slabs: Iterable[tuple[int, np.ndarray]],
    unknown_type: str,
) -> list[Path]:
    """Write an object given as consecutive y slabs; only one slab is held in memory.

    Parameters
    ----------
    folder : Path
        Output folder (must exist).
    shape : tuple (Ly, Lx, Lz, 2)
        Shape of the whole object.
    slabs : iterable of (y0, slab)
        ``slab``: float [h, Lx, Lz, 2] holding rows ``y0:y0 + h``. Slabs must come in order
        and cover ``0:Ly`` exactly once (the TIFF pages are written as they arrive).
    unknown_type : {'delta_beta', 'real_imag'}
        Meaning of the last axis.

    Returns
    -------
    paths : list of Path
        ``object.zarr`` and the two TIFF files. Each is replaced atomically; on an error
        none of the three is changed.
    """
    shape = _check_shape(shape)
    check_unknown_type(unknown_type)
    folder = Path(folder)
    targets = [folder / OBJECT_ZARR] + [folder / name for name in TIFF_NAMES[unknown_type]]
    with ExitStack() as stack:
        zarr_tmp = stack.enter_context(atomic_dir(targets[0]))
        tiff_tmps = [stack.enter_context(atomic_file(t)) for t in targets[1:]]
        array = _create_zarr(zarr_tmp, shape, unknown_type)
        bigtiff = int(np.prod(shape[:3])) * 4 > _BIGTIFF_BYTES
        writers = [stack.enter_context(tifffile.TiffWriter(t, bigtiff=bigtiff)) for t in tiff_tmps]
        _write_slabs(array, writers, shape, slabs, unknown_type)
    return targets


def _create_zarr(path: Path, shape: tuple[int, int, int, int], unknown_type: str) -> zarr.Array:
    ly, lx, lz, _ = shape
    return zarr.create_array(
        store=str(path),
        shape=shape,
        chunks=(slab_height(ly), lx, lz, 2),
        dtype="float32",
        zarr_format=3,
        fill_value=0.0,
        attributes={"unknown_type": unknown_type, "axes": ["y", "x", "z", "channel"]},
    )


def _write_slabs(
    array: zarr.Array,
    writers: list[tifffile.TiffWriter],
    shape: tuple[int, int, int, int],
    slabs: Iterable[tuple[int, np.ndarray]],
    unknown_type: str,
) -> None:
    """Copy each slab into the zarr array and append its rows as TIFF pages."""
    ly, lx, lz, _ = shape
    next_y = 0
    for y0, slab in slabs:
        slab = np.asarray(slab, dtype=np.float32)
        if y0 != next_y or slab.ndim != 4 or slab.shape[1:] != (lx, lz, 2) or slab.shape[0] < 1:
            raise ValueError(
                f"object slab must start at y={next_y} with shape [h, {lx}, {lz}, 2], "
                f"got y0={y0}, shape {slab.shape}"
            )
        if y0 + slab.shape[0] > ly:
            raise ValueError(f"object slab y={y0}:{y0 + slab.shape[0]} goes past Ly={ly}")
        array[y0 : y0 + slab.shape[0]] = slab
        for writer, channel in zip(writers, object_channels(slab, unknown_type)):
            for page in channel:
                writer.write(page, contiguous=True, photometric="minisblack",
                             metadata={"shape": [ly, lx, lz]})
        next_y = y0 + slab.shape[0]
    if next_y != ly:
        raise ValueError(f"object slabs covered rows 0:{next_y} of Ly={ly}")
