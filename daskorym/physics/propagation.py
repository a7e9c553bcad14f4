"""Free-space propagation: Fraunhofer (far field) and Fresnel (near field).

Sign convention ``sign = +1`` (Adorym's default) means waves evolve as
``exp(+i k z)`` and the refractive index is ``n = 1 - delta + i beta``; the
far field is then ``fftshift(fft2(psi))``.  ``sign = -1`` is the opposite
convention, with ``N * ifft2`` in the far field (same magnitudes' scale).

Shapes: waves are complex ``[..., ny, nx]``; kernels ``[ny, nx]`` in FFT
(unshifted) order, or ``[n, ny, nx]`` for one distance per leading index.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import Backend

INF = float("inf")


def frequency_sq(shape: tuple[int, int], psize_m: float) -> np.ndarray:
    """``|q|^2 = fy^2 + fx^2`` in cycles^2/m^2 on the FFT grid, float64 ``[ny, nx]``."""
    fy = np.fft.fftfreq(shape[0], d=psize_m)
    fx = np.fft.fftfreq(shape[1], d=psize_m)
    return fy[:, None] ** 2 + fx[None, :] ** 2


def fresnel_phase_coefficient(shape: tuple[int, int], psize_m: float, wavelength_m: float,
                              fresnel_approx: bool = True, sign: int = 1
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Phase per metre of propagation, and the propagating-wave mask.

    The transfer function is ``H(q, z) = mask(q) * exp(i z c(q))`` with

    * paraxial (``fresnel_approx=True``): ``c = -sign pi lambda |q|^2``;
    * exact angular spectrum: ``c = sign (2 pi / lambda)(sqrt(1 - lambda^2 |q|^2) - 1)``
      evaluated as ``-sign 2 pi lambda |q|^2 / (1 + sqrt(1 - lambda^2 |q|^2))``
      (no cancellation), and ``mask = 0`` where ``lambda^2 |q|^2 >= 1``
      (evanescent waves).  The constant phase ``exp(i k z)`` is left out: it
      does not change any intensity and would cost float32 precision.

    Returns
    -------
    (c, mask) : float64 ``[ny, nx]`` arrays, FFT order.
    """
    q2 = frequency_sq(shape, psize_m)
    if fresnel_approx:
        return -sign * math.pi * wavelength_m * q2, np.ones_like(q2)
    s = 1.0 - wavelength_m ** 2 * q2
    mask = (s > 0).astype(np.float64)
    root = np.sqrt(np.clip(s, 0.0, None))
    return -sign * 2.0 * math.pi * wavelength_m * q2 / (1.0 + root), mask


def fresnel_kernel(shape: tuple[int, int], psize_m: float, wavelength_m: float, dist_m: float,
                   fresnel_approx: bool = True, sign: int = 1) -> np.ndarray:
    """Fresnel transfer function for a fixed distance, complex128 ``[ny, nx]``.

    Computed in float64 (phases reach ~1e6 rad for metre distances) and cast
    by the caller's backend.
    """
    c, mask = fresnel_phase_coefficient(shape, psize_m, wavelength_m, fresnel_approx, sign)
    return mask * np.exp(1j * c * dist_m)


def fresnel_kernel_diff(be: Backend, shape: tuple[int, int], psize_m: float, wavelength_m: float,
                        dist_m, fresnel_approx: bool = True, sign: int = 1):
    """Fresnel transfer functions differentiable in the distance.

    Parameters
    ----------
    dist_m : backend array ``[n]`` of distances (metres)

    Returns
    -------
    complex ``[n, ny, nx]`` backend array.
    """
    c, mask = fresnel_phase_coefficient(shape, psize_m, wavelength_m, fresnel_approx, sign)
    c_b = be.asarray(c.astype(be.np_real))
    phase = be.reshape(dist_m, (-1, 1, 1)) * c_b
    kern = be.expi(phase)
    if not fresnel_approx:
        kern = kern * be.asarray(mask.astype(be.np_real))
    return kern


def propagate_fresnel(be: Backend, psi, kernel):
    """Fresnel propagation ``ifft2(fft2(psi) * H)``.

    Parameters
    ----------
    psi : complex ``[..., ny, nx]``
    kernel : complex ``[ny, nx]`` or broadcastable to ``psi``
    """
    return be.ifft2(be.fft2(psi) * kernel)


def propagate_far(be: Backend, psi, sign: int = 1, normalize: bool = False,
                  centred: bool = True):
    """Fraunhofer propagation to the detector, zero frequency centred.

    ``sign=+1``: ``fftshift(fft2(psi))`` (unnormalised; ``/sqrt(N)`` with
    ``normalize``).  ``sign=-1``: ``fftshift(N ifft2(psi))`` (same scale).
    ``centred=False``: without the ``fftshift`` (zero frequency at pixel 0).
    """
    norm = "ortho" if normalize else None
    if sign == 1:
        out = be.fft2(psi, norm=norm)
    else:
        n = psi.shape[-1] * psi.shape[-2]
        out = be.ifft2(psi, norm=norm) * (1.0 if normalize else float(n))
    return be.fftshift(out) if centred else out


def propagate_far_adjoint(be: Backend, det, sign: int = 1, normalize: bool = False):
    """Adjoint of :func:`propagate_far` (used by tests and by direct methods)."""
    x = be.ifftshift(det)
    n = det.shape[-1] * det.shape[-2]
    if sign == 1:
        return be.ifft2(x, norm="ortho") if normalize else be.ifft2(x) * float(n)
    return be.fft2(x, norm="ortho") if normalize else be.fft2(x)
