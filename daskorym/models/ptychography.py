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
                       propagate_far, propagate_fresnel, pure_projection, vacuum_value)
from ..physics.warp import tilt_chunk
from .base import INF, ForwardModel, TileBatch, register_model


# inputs every tile model reads besides object and probe (refinable experiment parameters);
# near-field models add the exit-wave shift "prj_offset_px" (a far-field intensity does not
# change when the exit wave shifts) and the distances "free_prop_m"
EXPERIMENT_INPUTS = ("pos_px", "pos_offset_px", "probe_defocus_m", "tilt_rad", "lg_kappa")


class _TileModel(ForwardModel):
    """Shared chain; subclasses choose the detector propagation."""

    inputs = ("obj", "probe") + EXPERIMENT_INPUTS

    def incident(self, be: Backend, params: dict, batch: TileBatch):
        """Probe modes, defocused and sub-pixel shifted per tile: ``[n or 1, m, py, px]``."""
        g = self.geometry
        pr = params["probe"]
        probe = be.as_complex(pr)
        probe = be.reshape(probe, (1,) + tuple(probe.shape))
        if "probe_defocus_m" in params:
            kern = fresnel_kernel_diff(be, g.probe_shape, g.psize_m, g.wavelength_m,
                                       params["probe_defocus_m"], g.fresnel_approx,
                                       g.sign_convention)
            probe = propagate_fresnel(be, probe, kern)
        frac = self.shift_fractions(be, params, batch)
        return probe if frac is None else fourier_shift(be, probe, frac)

    def object_chunk(self, be: Backend, params: dict, batch: TileBatch):
        """The object chunk under the tiles (tilted when ``tilt_rad`` given)."""
        g = self.geometry
        chunk = params["obj"]
        if "tilt_rad" in params:
            if batch.tile_regions is not None:
                raise ValueError("a tilted object needs the box layout of tiles (model.layout)")
            chunk = tilt_chunk(be, chunk, params["tilt_rad"], (batch.region.y0, batch.region.x0),
                               g.obj_shape, vacuum_value(g.unknown_type))
        return chunk

    def object_patches(self, be: Backend, params: dict, batch: TileBatch,
                       slice_major: bool = False, chunk=None):
        """The object under each tile ``[n, py, px, Lz, 2]`` (tilted when ``tilt_rad`` given);
        ``[Lz, n, py, px, 2]`` with ``slice_major``; taken from ``chunk`` if given (what
        :meth:`object_chunk` returned)."""
        gather = be.gather_slices if slice_major else be.gather_patches
        if chunk is None:
            chunk = self.object_chunk(be, params, batch)
        return gather(chunk, batch.crop_px[:, 0], batch.crop_px[:, 1], self.geometry.probe_shape)

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
        mod = self.modulation(be, params)
        lz = int(params["obj"].shape[-2])
        n_steps = -(-lz // g.binning)
        kern = self.slice_kernel(be) if n_steps > 1 and not g.pure_projection else None
        chunk = self.object_chunk(be, params, batch)
        if lz > 1 and g.binning == 1 and not g.pure_projection:
            # the backend's multislice over the chunk itself, if it has one
            fused = be.fused_multislice(psi, chunk, mod, kern, (
                batch.crop_px[:, 0], batch.crop_px[:, 1], g.probe_shape))
            if fused is not NotImplemented:
                return fused
        # several slices: taken slice-major (each slice's patches contiguous)
        obj = self.object_patches(be, params, batch, lz > 1 and not g.pure_projection, chunk)
        if g.pure_projection:
            return pure_projection(be, psi, obj, mod)
        return multislice(be, psi, obj, mod, kern, g.binning, slice_major=lz > 1)

    def shifted_exit_wave(self, be: Backend, params: dict, batch: TileBatch):
        """Exit waves, shifted by the angle's projection offset ``prj_offset_px`` if given."""
        psi = self.exit_wave(be, params, batch)
        if "prj_offset_px" in params:
            psi = fourier_shift(be, psi, be.reshape(params["prj_offset_px"], (1, 2)))
        return psi

    def to_detector(self, be: Backend, params: dict, batch: TileBatch, psi):
        raise NotImplementedError

    def crop_buffer(self, psi):
        s = self.geometry.safe_zone_px
        return psi if s == 0 else psi[..., s:-s, s:-s]

    def forward(self, be: Backend, params: dict, batch: TileBatch):
        psi = self.shifted_exit_wave(be, params, batch)
        return self.crop_buffer(self.to_detector(be, params, batch, psi))


class _FarField(_TileModel):
    def check_geometry(self) -> None:
        if not self.geometry.is_far_field:
            raise ValueError(f"{self.name} needs free_prop_m = inf (far field), got "
                             f"{self.geometry.free_prop_m}")

    def to_detector(self, be, params, batch, psi, centred: bool = True):
        g = self.geometry
        return propagate_far(be, psi, g.sign_convention, g.normalize_fft, centred)

    @property
    def loss_in_fft_order(self) -> bool:
        # the detector's fftshift only reorders pixels, which a pixelwise loss summed over
        # the detector does not see: the measured data and mask are put in FFT order
        # instead (a pass over real NumPy data rather than a complex shift each way)
        # (only with this forward: a subclass's own forward knows nothing of ``centred``)
        return self.geometry.safe_zone_px == 0 and type(self).forward is _FarField.forward

    def forward(self, be, params, batch, centred: bool = True):
        psi = self.shifted_exit_wave(be, params, batch)
        return self.crop_buffer(self.to_detector(be, params, batch, psi, centred))


class _NearField(_TileModel):
    inputs = _TileModel.inputs + ("prj_offset_px", "free_prop_m")

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
    # one tile at (0, 0): no positions; a shift of the exit wave leaves far-field
    # intensities unchanged, so no projection offset either
    inputs = ("obj", "probe", "probe_defocus_m", "tilt_rad", "lg_kappa")

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
