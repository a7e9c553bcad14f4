"""Image-quality metrics against a known truth."""

from __future__ import annotations

import numpy as np


def to_complex(obj: np.ndarray, unknown_type: str = "real_imag", k1: float = 1.0) -> np.ndarray:
    """Complex transmission of an object ``[..., 2]`` (delta_beta: ``exp(-k1 (beta + i delta))``)."""
    obj = np.asarray(obj, np.float64)
    if unknown_type == "real_imag":
        return obj[..., 0] + 1j * obj[..., 1]
    return np.exp(-k1 * obj[..., 1]) * np.exp(-1j * k1 * obj[..., 0])


def scaled_complex_error(estimate: np.ndarray, truth: np.ndarray, region=None) -> float:
    """``min_c ||c x - t|| / ||t||`` over a complex scalar ``c`` (global phase and scale).

    ``region`` is a boolean mask or a tuple of slices selecting the pixels compared.
    """
    x = np.asarray(estimate, np.complex128)
    t = np.asarray(truth, np.complex128)
    if region is not None:
        x, t = x[region], t[region]
    x, t = x.ravel(), t.ravel()
    c = np.vdot(x, t) / np.vdot(x, x) if np.vdot(x, x) != 0 else 0.0
    return float(np.linalg.norm(c * x - t) / np.linalg.norm(t))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient of two arrays (flattened)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def illuminated_region(positions_px: np.ndarray, probe_shape, obj_shape_yx, margin_px: int = 0):
    """Slices of the object fully covered by the scan (tile corners' extent, minus a margin)."""
    pos = np.asarray(positions_px, np.float64).reshape(-1, 2)
    lo = np.maximum(np.ceil(pos.min(axis=0)).astype(int) + np.asarray(probe_shape) // 2 + margin_px, 0)
    hi = np.minimum(np.floor(pos.max(axis=0)).astype(int) + np.asarray(probe_shape) // 2 - margin_px,
                    np.asarray(obj_shape_yx))
    return (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])))
