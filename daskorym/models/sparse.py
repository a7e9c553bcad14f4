"""Sparse multislice ptychography: a few slices at arbitrary, refinable z positions."""

from __future__ import annotations

import numpy as np

from ..physics import fresnel_kernel_diff, sparse_multislice
from .base import register_model
from .ptychography import _FarField


@register_model
class SparseMultislicePtychography(_FarField):
    """Far-field ptychography of an object made of ``Lz`` thin slices at ``slice_pos_m``.

    The object's z axis holds one slice per position; slice ``j`` modulates
    the wave, which is then Fresnel-propagated by ``z[j+1] - z[j]``.
    Positions are differentiable (param ``slice_pos_m``).
    """

    name = "sparse_multislice"
    inputs = _FarField.inputs + ("slice_pos_m",)

    def check_geometry(self) -> None:
        super().check_geometry()
        g = self.geometry
        if g.slice_pos_m is None or len(g.slice_pos_m) != g.obj_shape[2]:
            raise ValueError(f"{self.name}: slice_pos_m must give one position per object slice "
                             f"(Lz = {g.obj_shape[2]}), got {g.slice_pos_m}")

    def exit_wave(self, be, params, batch):
        g = self.geometry
        psi = self.incident(be, params, batch)
        obj = self.object_patches(be, params, batch)
        pos = params.get("slice_pos_m")
        if pos is None:
            pos = be.asarray(np.asarray(g.slice_pos_m, be.np_real))
        gaps = pos[1:] - pos[:-1]
        kernels = fresnel_kernel_diff(be, g.probe_shape, g.psize_m, g.wavelength_m, gaps,
                                      g.fresnel_approx, g.sign_convention)
        return sparse_multislice(be, psi, obj, self.modulation(be, params), kernels)
