"""Object modulation and propagation through the object.

The object is real ``[..., Lz, 2]``; the last axis holds (delta, beta) for
``unknown_type="delta_beta"`` or (real, imag) for ``"real_imag"``.

Transmission of a slab of thickness ``dz``:

* delta_beta: ``T = exp(-k1 beta) exp(-i sign k1 delta)``, ``k1 = 2 pi dz / lambda``
  (``k1 = 1`` when ``scale_ri_by_k`` is false);
* real_imag: ``T = real + i imag``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..backend import Backend
from .propagation import propagate_fresnel

UNKNOWN_TYPES = ("delta_beta", "real_imag")


@dataclass(frozen=True)
class Modulation:
    """How object values turn into a complex transmission.

    Parameters
    ----------
    unknown_type : "delta_beta" or "real_imag"
    wavelength_m, dz_m : wavelength and the thickness of one voxel (metres)
    sign : +1 or -1 (see :mod:`daskorym.physics.propagation`)
    scale_ri_by_k : multiply delta and beta by ``k dz``
    kappa : if set, beta = kappa * delta (homogeneous object); beta values are ignored
    """

    unknown_type: str = "delta_beta"
    wavelength_m: float = 1e-10
    dz_m: float = 1e-8
    sign: int = 1
    scale_ri_by_k: bool = True
    kappa: float | None = None

    @property
    def k1(self) -> float:
        return 2 * math.pi * self.dz_m / self.wavelength_m if self.scale_ri_by_k else 1.0

    def transmission(self, be: Backend, values, thickness: float = 1.0):
        """Complex transmission of values ``[..., 2]``.

        ``thickness`` multiplies ``k1`` (``binning`` slabs summed into one).
        """
        if self.unknown_type == "real_imag":
            return be.as_complex(values)
        k = self.k1 * thickness
        a, b = values[..., 0], values[..., 1]
        if self.kappa is not None:
            b = a * self.kappa
        return be.polar(be.exp(b * (-k)), a * (-self.sign * k))


def _combine(be: Backend, mod: Modulation, slabs: list):
    """Transmission ``[n, ny, nx]`` of the slices ``slabs`` (each ``[n, ny, nx, 2]``)
    taken as one step."""
    if mod.unknown_type == "real_imag":
        t = mod.transmission(be, slabs[0])
        for slab in slabs[1:]:
            t = t * mod.transmission(be, slab)
        return t
    summed = slabs[0]
    for slab in slabs[1:]:
        summed = summed + slab
    return mod.transmission(be, summed)


def _slices(be: Backend, obj) -> list:
    # one unbind rather than obj[..., j, :] per slice: the backward pass then writes the
    # object's gradient once, not a zero-filled full-size buffer per slice; a single slice
    # is a reshape (a view both ways, no copy at all)
    if obj.shape[-2] == 1:
        return [be.reshape(obj, tuple(obj.shape[:-2]) + (obj.shape[-1],))]
    return be.unbind(obj, axis=-2)


def multislice(be: Backend, psi, obj, mod: Modulation, slice_kernel=None, binning: int = 1,
               slice_major: bool = False):
    """Dense multislice through slices of equal spacing.

    Parameters
    ----------
    psi : complex ``[n, m, ny, nx]`` incident waves (``m`` probe modes)
    obj : real ``[n, ny, nx, Lz, 2]`` object under each wave, or ``[Lz, n, ny, nx, 2]``
        with ``slice_major`` (:meth:`Backend.gather_slices`)
    slice_kernel : complex ``[ny, nx]`` Fresnel kernel over ``binning * dz``
        (needed when there is more than one step)
    binning : slices merged into one modulation step (their delta, beta
        summed; transmissions multiplied for real_imag)

    Returns
    -------
    complex ``[n, m, ny, nx]`` exit waves.  No propagation follows the last step.
    """
    if slice_major and binning == 1 and obj.shape[0] > 1:
        fused = be.fused_multislice(psi, obj, mod, slice_kernel)
        if fused is not NotImplemented:
            return fused
    slabs = be.unbind(obj, axis=0) if slice_major else _slices(be, obj)
    lz = len(slabs)
    starts = list(range(0, lz, binning))
    for i, start in enumerate(starts):
        t = _combine(be, mod, slabs[start:start + binning])
        psi = psi * be.reshape(t, (t.shape[0], 1) + tuple(t.shape[1:]))
        if i < len(starts) - 1:
            psi = propagate_fresnel(be, psi, slice_kernel)
    return psi


def pure_projection(be: Backend, psi, obj, mod: Modulation):
    """Projection approximation: modulate once by the line integral along z.

    delta_beta: ``T = exp(-k1 sum beta) exp(-i sign k1 sum delta)``;
    real_imag: ``T = prod_z (real + i imag)``.  Shapes as :func:`multislice`.
    """
    if mod.unknown_type == "real_imag":
        t = _combine(be, mod, _slices(be, obj))
    else:
        t = mod.transmission(be, be.sum(obj, axis=-2))
    return psi * be.reshape(t, (t.shape[0], 1) + tuple(t.shape[1:]))


def sparse_multislice(be: Backend, psi, obj, mod: Modulation, gap_kernels):
    """Multislice through a few slices at arbitrary z positions.

    Parameters
    ----------
    psi : complex ``[n, m, ny, nx]``
    obj : real ``[n, ny, nx, n_slices, 2]``, one thin slab per slice
    gap_kernels : complex ``[n_slices - 1, ny, nx]``, kernel ``j`` propagates from
        slice ``j`` to slice ``j + 1`` (built from differentiable positions by
        :func:`daskorym.physics.propagation.fresnel_kernel_diff`)
    """
    slabs = _slices(be, obj)
    n_slices = len(slabs)
    for j in range(n_slices):
        t = mod.transmission(be, slabs[j])
        psi = psi * be.reshape(t, (t.shape[0], 1) + tuple(t.shape[1:]))
        if j < n_slices - 1:
            psi = propagate_fresnel(be, psi, gap_kernels[j])
    return psi
