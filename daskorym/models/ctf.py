"""Linearised (CTF) multi-distance holography and minus-logged projection tomography."""

from __future__ import annotations

import numpy as np

from ..physics.propagation import fresnel_phase_coefficient
from .base import ForwardModel, register_model
from .multidistance import MultiDistanceHolography
from .ptychography import _TileModel


@register_model
class MultiDistanceCTF(MultiDistanceHolography):
    """Adorym's ``forward_algorithm='ctf'``: weak-object holograms of a plane wave,

    ``I_d = 1 - 2 k1 IFT[sin(chi_d) FT(D) + cos(chi_d) FT(B)]`` with ``D, B`` the
    projected delta and beta under each tile (``B = kappa D`` when kappa is set),
    ``chi_d = -sign z_d c(q)`` (see :mod:`daskorym.physics.ctf`).  Same data layout as
    ``multidistance_holography`` (tile-then-distance); the probe is ignored (flat-field
    corrected data).  delta_beta objects only.
    """

    name = "multidistance_ctf"
    inputs = ("obj", "free_prop_m", "lg_kappa")
    required = ("obj",)

    def check_geometry(self) -> None:
        super().check_geometry()
        if self.geometry.unknown_type != "delta_beta":
            raise ValueError(f"{self.name} needs unknown_type = 'delta_beta'")

    def _chi(self, be, params, batch):
        g = self.geometry
        dist_index = np.asarray(batch.tiles) // self.n_blocks
        c, mask = fresnel_phase_coefficient(g.probe_shape, g.psize_m, g.wavelength_m,
                                            g.fresnel_approx, g.sign_convention)
        cb = self.constant(be, ("ctf_c", g.fresnel_approx),
                           lambda: (-g.sign_convention * c).astype(be.np_real))
        mb = self.constant(be, ("ctf_mask", g.fresnel_approx), lambda: mask.astype(be.np_real))
        if "free_prop_m" in params:
            z = be.take(params["free_prop_m"], be.asarray(dist_index), axis=0)
        else:
            z = be.asarray(np.asarray(g.free_prop_m, be.np_real)[dist_index])
        return be.reshape(z, (-1, 1, 1)) * cb, mb

    def intensity(self, be, params, batch):
        g = self.geometry
        obj = self.object_patches(be, params, batch)  # [n, py, px, Lz, 2]
        d = be.sum(obj[..., 0], axis=-1)
        mod = self.modulation(be, params)
        b = d * mod.kappa if mod.kappa is not None else be.sum(obj[..., 1], axis=-1)
        chi, mask = self._chi(be, params, batch)
        zero = d * 0.0
        fd = be.fft2(be.complex(d, zero))
        fb = be.fft2(be.complex(b, zero))
        sin = be.complex(be.sin(chi) * mask, chi * 0.0)
        cos = be.complex(be.cos(chi) * mask, chi * 0.0)
        lin = be.real(be.ifft2(sin * fd + cos * fb))
        return self.crop_buffer(1.0 - (2.0 * mod.k1) * lin)

    def forward(self, be, params, batch):
        """Amplitudes ``sqrt(I)`` as a single mode (no phase: the CTF model is intensity-only)."""
        inten = self.intensity(be, params, batch)
        amp = be.sqrt(be.abs(inten))
        amp = be.reshape(amp, (amp.shape[0], 1) + tuple(amp.shape[1:]))
        return be.complex(amp, amp * 0.0)


@register_model
class MinusLogTomography(_TileModel):
    """Adorym's ``is_minus_logged``: data are ``-log(I / I0)``, the model the line integral

    ``2 k1 sum_z beta`` (= ``-log |T|^2`` of the projection approximation; ``beta =
    kappa delta`` with kappa; ``-sum_z log|real + i imag|^2`` for real_imag).  The loss
    is the plain least-squares misfit of line integrals whatever ``loss.type`` says
    (:meth:`tile_loss`), against the data unchanged (``dataset.is_minus_logged``).
    """

    name = "minuslog_tomography"
    inputs = ("obj", "lg_kappa")
    required = ("obj",)

    def check_geometry(self) -> None:
        pass

    def intensity(self, be, params, batch):
        """Predicted line integrals ``[n, det_y, det_x]`` (not intensities)."""
        g = self.geometry
        obj = self.object_patches(be, params, batch)  # [n, py, px, Lz, 2]
        if g.unknown_type == "real_imag":
            a = -be.log(obj[..., 0] ** 2 + obj[..., 1] ** 2)
            out = be.sum(a, axis=-1)
        else:
            mod = self.modulation(be, params)
            if mod.kappa is not None:
                out = be.sum(obj[..., 0], axis=-1) * (2.0 * mod.k1 * mod.kappa)
            else:
                out = be.sum(obj[..., 1], axis=-1) * (2.0 * mod.k1)
        return self.crop_buffer(out)

    def forward(self, be, params, batch):
        raise NotImplementedError(f"{self.name} predicts line integrals, not waves")

    def predict(self, be, params, batch):
        raise NotImplementedError(f"{self.name} predicts line integrals, not waves")

    def tile_loss(self, be, params, batch, measured, loss, mask=None,
                  measured_fft_order=False):
        """``(sum (pred - measured)^2 [* mask], n_pixels)``; ``loss`` is ignored (and the
        data are never in FFT order: ``loss_in_fft_order`` is false)."""
        r = self.intensity(be, params, batch) - be.asarray(measured)
        r2 = r * r
        if mask is not None:
            r2 = r2 * be.asarray(mask)
        per_tile = int(np.prod(self.geometry.det_shape)) if mask is None else int(np.sum(mask))
        return be.sum(r2), per_tile * len(batch)
