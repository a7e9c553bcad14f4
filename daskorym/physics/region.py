"""Object regions under a batch of tiles (NumPy; outside any gradient graph).

Positions are the top-left corner (y, x) of each wave tile in object
pixels.  The integer part ``round(pos)`` crops the object; the remainder,
in [-0.5, 0.5), becomes a Fourier sub-pixel shift of the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def vacuum_value(unknown_type: str) -> tuple[float, float]:
    """Object values of empty space: (0, 0) for delta_beta, (1, 0) for real_imag."""
    return (1.0, 0.0) if unknown_type == "real_imag" else (0.0, 0.0)


def split_positions(pos_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pos = int + frac`` with ``int = floor(pos + 0.5)`` and ``frac`` in [-0.5, 0.5)."""
    pos = np.asarray(pos_px, np.float64)
    whole = np.floor(pos + 0.5).astype(np.int64)
    return whole, pos - whole


@dataclass(frozen=True)
class Region:
    """A box ``[y0, y0+ny) x [x0, x0+nx)`` in object pixels (may leave the object)."""

    y0: int
    x0: int
    ny: int
    nx: int

    @classmethod
    def around(cls, crop_px: np.ndarray, tile_shape: tuple[int, int]) -> "Region":
        """Smallest box holding tiles of ``tile_shape`` at integer corners ``crop_px [n, 2]``."""
        crop = np.asarray(crop_px, np.int64).reshape(-1, 2)
        y0, x0 = crop.min(axis=0)
        y1, x1 = crop.max(axis=0) + np.asarray(tile_shape)
        return cls(int(y0), int(x0), int(y1 - y0), int(x1 - x0))

    def overlap(self, ly: int, lx: int) -> tuple[slice, slice, slice, slice] | None:
        """(object y, object x, region y, region x) slices of the part inside the object."""
        ya, yb = max(self.y0, 0), min(self.y0 + self.ny, ly)
        xa, xb = max(self.x0, 0), min(self.x0 + self.nx, lx)
        if ya >= yb or xa >= xb:
            return None
        return (slice(ya, yb), slice(xa, xb),
                slice(ya - self.y0, yb - self.y0), slice(xa - self.x0, xb - self.x0))


def extract_region(obj: np.ndarray, region: Region, vacuum: tuple[float, float] = (0.0, 0.0),
                   out: np.ndarray | None = None) -> np.ndarray:
    """Copy of ``obj[y0:y0+ny, x0:x0+nx]`` ``[ny, nx, Lz, 2]``, vacuum where it leaves ``obj``
    (written into ``out`` when given, e.g. a view of a larger array).

    One pass over the output: the part inside ``obj`` is copied, and only the strips
    outside it are set to vacuum."""
    if out is None:
        out = np.empty((region.ny, region.nx) + obj.shape[2:], obj.dtype)
    fill = np.asarray(vacuum, out.dtype)
    ov = region.overlap(obj.shape[0], obj.shape[1])
    if ov is None:
        out[...] = fill
        return out
    oy, ox, ry, rx = ov
    out[ry, rx] = obj[oy, ox]
    out[:ry.start] = fill
    out[ry.stop:] = fill
    out[ry, :rx.start] = fill
    out[ry, rx.stop:] = fill
    return out


def add_region(target: np.ndarray, region: Region, values: np.ndarray) -> None:
    """``target[region] += values`` in place, dropping what falls outside (adjoint of extract)."""
    ov = region.overlap(target.shape[0], target.shape[1])
    if ov is not None:
        oy, ox, ry, rx = ov
        target[oy, ox] += values[ry, rx]
