"""Contrast-transfer-function (CTF) phase retrieval for multi-distance holography.

Linearisation in this project's conventions (:mod:`daskorym.physics.multislice`,
:mod:`daskorym.physics.propagation`).  A slab with projected ``D = sum_z delta``,
``B = sum_z beta`` transmits ``T = exp(-k1 B) exp(-i sign k1 D)`` (``k1 = 2 pi dz /
lambda`` with ``scale_ri_by_k``, else 1); free space multiplies the spectrum by
``H = exp(i z c(q)) = exp(-i sign chi)`` with ``chi = pi lambda z |q|^2``
(paraxial; ``chi = -sign z c`` in general).  To first order in ``k1 D, k1 B``,
for a plane wave of unit intensity the hologram at distance ``z`` is

    FT(I - 1) = -2 k1 [sin(chi) FT(D) + cos(chi) FT(B)],

independent of ``sign``.  With ``B = kappa D`` (homogeneous object):
``FT(I - 1) = -k1 CTF(q) FT(D)``, ``CTF = 2 (sin chi + kappa cos chi)``, and the
regularised least-squares solution over distances is

    k1 FT(D) = -sum_d CTF_d FT(I_d - 1) / (sum_d CTF_d^2 + alpha).
"""

from __future__ import annotations

import math

import numpy as np

from .propagation import fresnel_phase_coefficient


def ctf_chi(shape, psize_m: float, wavelength_m: float, dists_m, fresnel_approx: bool = True,
            sign: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(chi [n_d, ny, nx], mask [ny, nx])`` float64 in FFT order (``H = exp(-i sign chi)``)."""
    c, mask = fresnel_phase_coefficient(tuple(shape), psize_m, wavelength_m, fresnel_approx,
                                        sign)
    d = np.atleast_1d(np.asarray(dists_m, np.float64))
    return -sign * c[None] * d[:, None, None], mask


def ctf_transfer(shape, psize_m, wavelength_m, dists_m, kappa: float,
                 fresnel_approx: bool = True, sign: int = 1) -> np.ndarray:
    """``CTF_d(q) = 2 (sin chi_d + kappa cos chi_d)`` (times the propagating mask)."""
    chi, mask = ctf_chi(shape, psize_m, wavelength_m, dists_m, fresnel_approx, sign)
    return 2.0 * (np.sin(chi) + kappa * np.cos(chi)) * mask


def ctf_retrieve(intensities, dists_m, psize_m: float, wavelength_m: float, kappa: float,
                 alpha: float = 1e-2, k1: float | None = None, fresnel_approx: bool = True,
                 sign: int = 1) -> np.ndarray:
    """Projected delta ``D = sum_z delta`` (in voxel units) from flat-field holograms.

    Parameters
    ----------
    intensities : ``[n_d, ny, nx]`` intensities normalised to a unit incident beam
        (data magnitudes squared), one per distance
    dists_m : ``[n_d]`` distances
    kappa : beta/delta ratio
    alpha : Tikhonov regularisation added to ``sum_d CTF_d^2`` (whose maximum is about
        ``4 n_d``)
    k1 : the modulation's ``k1`` (``2 pi dz / lambda`` with ``scale_ri_by_k``); default
        ``2 pi psize / lambda``.  The projected phase is ``-sign k1 D``.

    Returns
    -------
    float64 ``[ny, nx]``: ``D``.  The object's delta per slice is ``D / Lz``, beta ``kappa D / Lz``.
    """
    inten = np.asarray(intensities, np.float64)
    if inten.ndim == 2:
        inten = inten[None]
    if k1 is None:
        k1 = 2 * math.pi * psize_m / wavelength_m
    ctf = ctf_transfer(inten.shape[-2:], psize_m, wavelength_m, dists_m, kappa,
                       fresnel_approx, sign)
    if len(ctf) != len(inten):
        raise ValueError(f"{len(inten)} images but {len(ctf)} distances")
    spec = np.fft.fft2(inten - 1.0)
    num = np.sum(ctf * spec, axis=0)
    den = np.sum(ctf ** 2, axis=0) + alpha
    return -np.real(np.fft.ifft2(num / den)) / k1


def ctf_initial_object(intensities, dists_m, psize_m, wavelength_m, kappa, obj_shape,
                       alpha: float = 1e-2, k1: float | None = None, fresnel_approx: bool = True,
                       sign: int = 1, non_negative: bool = False) -> np.ndarray:
    """``[Ly, Lx, Lz, 2]`` float32 starting object (delta, beta = kappa delta) from
    :func:`ctf_retrieve`, spread evenly over the ``Lz`` slices (usable as
    ``InMemoryInputs(initial_object=...)``).  Images must have the object's ``(Ly, Lx)``."""
    d = ctf_retrieve(intensities, dists_m, psize_m, wavelength_m, kappa, alpha, k1,
                     fresnel_approx, sign)
    ly, lx, lz = obj_shape
    if d.shape != (ly, lx):
        raise ValueError(f"images {d.shape} do not match the object's {(ly, lx)}")
    if non_negative:
        d = np.clip(d, 0.0, None)
    per = np.repeat((d / lz)[:, :, None], lz, axis=2)
    return np.stack([per, kappa * per], -1).astype(np.float32)
