"""Probe (illumination) initialisation and probe modes.

Every function returns complex128 NumPy ``[n_modes, py, px]``; the caller
casts and stores it as real ``[n_modes, py, px, 2]`` (see :func:`to_real`).
"""

from __future__ import annotations

import numpy as np

from .propagation import fresnel_kernel

PROBE_TYPES = ("gaussian", "aperture_defocus", "ifft", "supplied", "plane")


def _radius_sq(shape: tuple[int, int]) -> np.ndarray:
    y = np.arange(shape[0]) - (shape[0] - 1) / 2.0
    x = np.arange(shape[1]) - (shape[1] - 1) / 2.0
    return y[:, None] ** 2 + x[None, :] ** 2


def gaussian_probe(shape: tuple[int, int], mag_sigma_px: float, phase_sigma_px: float = 1.0,
                   phase_max_rad: float = 0.0) -> np.ndarray:
    """``exp(-r^2 / 2 s_m^2) exp(i phi_max exp(-r^2 / 2 s_p^2))``, one mode ``[1, py, px]``."""
    r2 = _radius_sq(shape)
    mag = np.exp(-r2 / (2.0 * mag_sigma_px ** 2))
    phase = phase_max_rad * np.exp(-r2 / (2.0 * phase_sigma_px ** 2))
    return (mag * np.exp(1j * phase))[None]


def plane_probe(shape: tuple[int, int]) -> np.ndarray:
    """Unit plane wave ``[1, py, px]``."""
    return np.ones((1,) + tuple(shape), np.complex128)


def aperture_defocus_probe(shape: tuple[int, int], aperture_radius_px: float,
                           beamstop_radius_px: float, defocus_m: float, psize_m: float,
                           wavelength_m: float) -> np.ndarray:
    """A disk aperture (optionally with a central beamstop), Fresnel-propagated by ``defocus_m``."""
    if beamstop_radius_px >= aperture_radius_px:
        raise ValueError(f"beamstop radius ({beamstop_radius_px} px) must be smaller than the "
                         f"aperture radius ({aperture_radius_px} px)")
    r2 = _radius_sq(shape)
    disk = ((r2 <= aperture_radius_px ** 2) & (r2 >= beamstop_radius_px ** 2)).astype(np.complex128)
    if defocus_m != 0:
        kern = fresnel_kernel(shape, psize_m, wavelength_m, defocus_m)
        disk = np.fft.ifft2(np.fft.fft2(disk) * kern)
    return disk[None]


def ifft_probe(mean_magnitude: np.ndarray) -> np.ndarray:
    """Probe whose far field has the given mean detector magnitude (zero phase).

    The inverse of the forward model's ``fftshift(fft2(.))``, centred in the
    probe array: ``fftshift(ifft2(ifftshift(m)))``.
    """
    m = np.asarray(mean_magnitude, np.float64)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(m)))[None]


def supplied_probe(mag: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Probe from magnitude and phase arrays ``[py, px]`` or ``[n_modes, py, px]``."""
    mag, phase = np.asarray(mag, np.float64), np.asarray(phase, np.float64)
    if mag.shape != phase.shape:
        raise ValueError(f"probe magnitude {mag.shape} and phase {phase.shape} differ in shape")
    p = mag * np.exp(1j * phase)
    return p if p.ndim == 3 else p[None]


def orthogonalize_modes(modes: np.ndarray) -> np.ndarray:
    """Orthogonal modes spanning the same space, strongest first.

    Via the SVD of the ``[n_modes, py*px]`` matrix: the result is
    ``S V^H`` (rows mutually orthogonal), which keeps the total power
    ``sum |p|^2`` unchanged.
    """
    n = modes.shape[0]
    flat = modes.reshape(n, -1)
    _, s, vh = np.linalg.svd(flat, full_matrices=False)
    return (s[:, None] * vh).reshape(modes.shape)


def make_modes(probe: np.ndarray, n_modes: int, seed: int = 0,
               power_ratio: float = 0.25) -> np.ndarray:
    """Grow a single-mode guess into ``n_modes`` orthogonal modes.

    Mode ``k >= 1`` starts as the first mode times a smooth low-order function of
    the pixel coordinates (``y``, ``x``, ``xy``, ``x^2 - y^2``, ... about the probe's
    centre of intensity: Hermite-Gauss-like shapes, as a partially coherent beam has)
    with a random complex weight; the set is orthogonalised and the powers set to
    ``1, r, r^2, ...`` (normalised so the total power equals that of ``probe[0]``).
    Smooth extra modes keep the first guess close to a real beam: white-noise modes
    would scatter their power over the whole detector.
    """
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    if probe.shape[0] >= n_modes:
        return orthogonalize_modes(probe[:n_modes]) if n_modes > 1 else probe[:1]
    rng = np.random.default_rng(seed)
    base = probe[0]
    ny, nx = base.shape
    w = np.abs(base) ** 2
    y, x = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64),
                       indexing="ij")
    cy, cx = (w * y).sum() / w.sum(), (w * x).sum() / w.sum()
    sy = np.sqrt((w * (y - cy) ** 2).sum() / w.sum()) or 1.0
    sx = np.sqrt((w * (x - cx) ** 2).sum() / w.sum()) or 1.0
    u, v = (y - cy) / sy, (x - cx) / sx
    shapes = [u, v, u * v, u ** 2 - v ** 2, u ** 2 + v ** 2 - 2, u ** 3 - 3 * u, v ** 3 - 3 * v]
    extra = []
    for k in range(n_modes - probe.shape[0]):
        shape = shapes[k] if k < len(shapes) else \
            sum(rng.standard_normal() * f for f in shapes)
        weight = rng.standard_normal() + 1j * rng.standard_normal()
        extra.append(base * shape * weight)
    modes = orthogonalize_modes(np.concatenate([probe, np.stack(extra)]))
    total = np.sum(np.abs(base) ** 2)
    weights = power_ratio ** np.arange(n_modes)
    weights = weights / weights.sum() * total
    power = np.sum(np.abs(modes) ** 2, axis=(1, 2))
    return modes * np.sqrt(weights / np.maximum(power, 1e-300))[:, None, None]


def data_power_scale(probe: np.ndarray, mean_pattern_sum: float, n_pixels: int,
                     normalize_fft: bool = False) -> float:
    """The factor that makes the predicted detector power of ``probe`` match the data.

    With the unnormalised FFT (Parseval) ``sum |F p|^2 = N sum |p|^2``; the
    measured power per tile is ``mean_pattern_sum`` (sum of intensities).
    Transmission losses of the object are ignored (a first guess).
    """
    power = np.sum(np.abs(probe) ** 2) * (1.0 if normalize_fft else n_pixels)
    if power <= 0:
        raise ValueError("cannot rescale a probe of zero power")
    return float(np.sqrt(mean_pattern_sum / power))


def rescale_to_data(probe: np.ndarray, mean_pattern_sum: float, n_pixels: int,
                    normalize_fft: bool = False) -> np.ndarray:
    """``probe`` scaled by :func:`data_power_scale`."""
    return probe * data_power_scale(probe, mean_pattern_sum, n_pixels, normalize_fft)


def to_real(probe: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Complex ``[m, py, px]`` -> real ``[m, py, px, 2]`` (real, imag)."""
    return np.stack([probe.real, probe.imag], axis=-1).astype(dtype)


def to_complex(probe: np.ndarray) -> np.ndarray:
    """Real ``[m, py, px, 2]`` -> complex ``[m, py, px]``."""
    return probe[..., 0] + 1j * probe[..., 1]
