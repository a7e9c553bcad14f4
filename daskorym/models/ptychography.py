"""Ptychography-type models: a probe tile through the object, then free space.

Chain per tile (Adorym's convention)::

    probe [m, py, px] --Fourier shift by the sub-pixel position--> [n, m, py, px]
      x object chunk under the tile (multislice / projection)   -> exit wave
      -> detector: far field fftshift(fft2) or Fresnel to distance z
      -> drop the buffer zone (tiled full-field)                -> [n, m, dy, dx]
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..physics import (fourier_shift, fresnel_kernel, fresnel_kernel_diff, multislice,
                       propagate_far, propagate_fresnel, pure_projection)
from .base import INF, ForwardModel, TileBatch, register_model


class _TileModel(ForwardModel):
    """Shared chain; subclasses choose the detector propagation."""

    def incident(self, be: Backend, params: dict, batch: TileBatch):
        """Probe modes, sub-pixel shifted per tile: ``[n or 1, m, py, px]``."""
        pr = params["probe"]
        probe = be.complex(pr[..., 0], pr[..., 1])
        probe = be.reshape(probe, (1,) + tuple(probe.shape))
        frac = self.shift_fractions(be, params, batch)
        return probe if frac is None else fourier_shift(be, probe, frac)

    def slice_kernel(self, be: Backend):
        g = self.geometry
        dz = g.psize_m * g.binning
        return self.constant(be, ("slice", dz), lambda: fresnel_kernel(
            g.probe_shape, g.psize_m, g.wavelength_m, dz, g.fresnel_approx,
            g.sign_convention).astype(be.np_complex))

    def exit_wave(self, be: Backend, params: dict, batch: TileBatch):
        """Exit waves ``[n, m, py, px]``."""
        g = self.geometry
        psi = self.incident(be, params, batch)
        obj = be.gather_patches(params["obj"], batch.crop_px[:, 0], batch.crop_px[:, 1],
                                g.probe_shape)
        if g.pure_projection:
            return pure_projection(be, psi, obj, g.modulation)
        n_steps = -(-obj.shape[-2] // g.binning)
        kern = self.slice_kernel(be) if n_steps > 1 else None
        return multislice(be, psi, obj, g.modulation, kern, g.binning)

    def to_detector(self, be: Backend, params: dict, batch: TileBatch, psi):
        raise NotImplementedError

    def crop_buffer(self, psi):
        s = self.geometry.safe_zone_px
        return psi if s == 0 else psi[..., s:-s, s:-s]

    def forward(self, be: Backend, params: dict, batch: TileBatch):
        psi = self.exit_wave(be, params, batch)
        return self.crop_buffer(self.to_detector(be, params, batch, psi))


class _FarField(_TileModel):
    def check_geometry(self) -> None:
        if not self.geometry.is_far_field:
            raise ValueError(f"{self.name} needs free_prop_m = inf (far field), got "
                             f"{self.geometry.free_prop_m}")

    def to_detector(self, be, params, batch, psi):
        g = self.geometry
        return propagate_far(be, psi, g.sign_convention, g.normalize_fft)


class _NearField(_TileModel):
    inputs = ("obj", "probe", "pos_px", "free_prop_m")

    def check_geometry(self) -> None:
        g = self.geometry
        if g.is_far_field or g.n_dists != 1:
            raise ValueError(f"{self.name} needs one finite free_prop_m, got {g.free_prop_m}")

    def distance_kernels(self, be: Backend, params: dict):
        """Fresnel kernels ``[n_dists, py, px]``, differentiable if distances are params."""
        g = self.geometry
        if "free_prop_m" in params:
            return fresnel_kernel_diff(be, g.probe_shape, g.psize_m, g.wavelength_m,
                                       params["free_prop_m"], g.fresnel_approx, g.sign_convention)
        return self.constant(be, ("free", g.free_prop_m), lambda: np.stack([
            fresnel_kernel(g.probe_shape, g.psize_m, g.wavelength_m, d, g.fresnel_approx,
                           g.sign_convention) for d in g.free_prop_m]).astype(be.np_complex))

    def to_detector(self, be, params, batch, psi):
        return propagate_fresnel(be, psi, self.distance_kernels(be, params)[0])


@register_model
class FarFieldPtychography(_FarField):
    """Far-field (Fraunhofer) ptychography: 2D, multislice 3D, ptycho-tomography."""

    name = "farfield_ptychography"


@register_model
class NearFieldPtychography(_NearField):
    """Near-field (Fresnel) ptychography: a structured probe scanned, holograms recorded."""

    name = "nearfield_ptychography"


@register_model
class FullFieldCDI(_FarField):
    """Full-field coherent diffraction imaging: one tile per angle covering the object.

    The probe has the object's lateral shape ``(Ly, Lx)``, the single
    position is (0, 0) and the detector records its far field.
    """

    name = "fullfield_cdi"
    inputs = ("obj", "probe")

    def check_geometry(self) -> None:
        super().check_geometry()
        g = self.geometry
        if tuple(g.probe_shape) != tuple(g.obj_shape[:2]) or g.n_tiles != 1:
            raise ValueError(f"{self.name}: probe/detector shape {g.probe_shape} must equal the "
                             f"object's (Ly, Lx) = {g.obj_shape[:2]} with one tile per angle "
                             f"(got n_tiles={g.n_tiles})")


@register_model
class TiledHolography(_NearField):
    """Full-field holography of a large image divided into tiles with buffer zones.

    Each detector tile of shape ``det_shape`` sits at its position; the
    object chunk and the wave are taken ``safe_zone_px`` larger on every
    side, propagated, and the buffer discarded, so fringes that would wrap
    around the tile's edge land in the discarded border instead.
    """

    name = "tiled_holography"
    inputs = ("obj", "probe", "pos_px", "free_prop_m")
