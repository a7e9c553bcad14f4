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


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float | None = None,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity of two images as the Adorym paper defines it (its eqs. S21-S27).

    One global index (not a sliding window): ``l * c * s`` with

    * ``l = (2 mu_a mu_r + c1) / (mu_a^2 + mu_r^2 + c1)`` (means),
    * ``c = (2 s_a s_r + c2) / (s_a^2 + s_r^2 + c2)`` (standard deviations),
    * ``s = (s_ar + c3) / (s_a s_r + c3)`` with ``s_ar`` the covariance of the two images
      (so that an image compared with itself scores 1),

    ``c1 = (k1 L)^2``, ``c2 = (k2 L)^2``, ``c3 = c2 / 2``; ``L`` is the dynamic range,
    by default that of the reference (``max - min``).
    """
    a = np.asarray(image, np.float64).ravel()
    r = np.asarray(reference, np.float64).ravel()
    if a.shape != r.shape or a.size == 0:
        raise ValueError(f"ssim: images must have the same, non-zero size; got "
                         f"{np.shape(image)} and {np.shape(reference)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        raise ValueError("ssim: images hold NaN or inf")
    big_l = float(r.max() - r.min()) if data_range is None else float(data_range)
    if big_l <= 0:
        raise ValueError("ssim: the dynamic range must be positive (is the reference flat?)")
    c1, c2 = (k1 * big_l) ** 2, (k2 * big_l) ** 2
    c3 = c2 / 2
    mu_a, mu_r = a.mean(), r.mean()
    s_a, s_r = a.std(), r.std()
    s_ar = float(np.mean((a - mu_a) * (r - mu_r)))
    lum = (2 * mu_a * mu_r + c1) / (mu_a ** 2 + mu_r ** 2 + c1)
    con = (2 * s_a * s_r + c2) / (s_a ** 2 + s_r ** 2 + c2)
    struct = (s_ar + c3) / (s_a * s_r + c3)
    return float(lum * con * struct)
