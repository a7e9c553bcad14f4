"""Fourier sub-pixel shifts, differentiable in the shift."""

from __future__ import annotations

import math

import numpy as np

from ..backend import Backend


def shift_ramp(be: Backend, shape: tuple[int, int], shifts_px):
    """Phase ramps ``exp(-2 pi i (fy dy + fx dx))`` for a stack of shifts.

    Parameters
    ----------
    shape : (ny, nx)
    shifts_px : backend array ``[n, 2]`` of (dy, dx) in pixels

    Returns
    -------
    complex ``[n, ny, nx]``
    """
    fy = be.asarray(np.fft.fftfreq(shape[0]).astype(be.np_real))
    fx = be.asarray(np.fft.fftfreq(shape[1]).astype(be.np_real))
    dy = be.reshape(shifts_px[:, 0], (-1, 1, 1))
    dx = be.reshape(shifts_px[:, 1], (-1, 1, 1))
    phase = (dy * be.reshape(fy, (1, -1, 1)) + dx * be.reshape(fx, (1, 1, -1))) * (-2.0 * math.pi)
    return be.expi(phase)


def fourier_shift(be: Backend, x, shifts_px):
    """Shift images by (dy, dx) pixels: ``out(r) = x(r - d)`` (periodic).

    Parameters
    ----------
    x : complex ``[n, ..., ny, nx]`` (the shift of row ``i`` applies to ``x[i]``)
    shifts_px : backend array ``[n, 2]``

    Returns
    -------
    complex array shaped like ``x``.  Linear in ``x``; its adjoint is the shift by ``-d``.
    """
    ramp = shift_ramp(be, tuple(x.shape[-2:]), shifts_px)
    ramp = be.reshape(ramp, (ramp.shape[0],) + (1,) * (len(x.shape) - 3) + tuple(ramp.shape[1:]))
    return be.ifft2(be.fft2(x) * ramp)
