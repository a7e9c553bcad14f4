"""Multi-distance near-field holography.

Per angle the data hold ``n_dists * n_blocks`` tiles in tile-then-distance
order: tile index ``k`` is block ``k % n_blocks`` recorded at distance
``k // n_blocks`` (all blocks of distance 0 first).  Each tile's exit wave is
Fresnel-propagated by its own distance.
"""

from __future__ import annotations

import numpy as np

from ..physics import propagate_fresnel
from ..physics.warp import affine_warp
from .base import register_model
from .ptychography import _NearField


@register_model
class MultiDistanceHolography(_NearField):
    """Near-field holograms of the same view at several distances (tiles and buffers allowed)."""

    name = "multidistance_holography"
    inputs = _NearField.inputs + ("prj_affine",)

    def check_geometry(self) -> None:
        g = self.geometry
        if g.is_far_field or g.n_dists < 1:
            raise ValueError(f"{self.name} needs finite distances, got {g.free_prop_m}")
        if g.n_tiles % g.n_dists:
            raise ValueError(f"{self.name}: {g.n_tiles} tiles per angle do not divide into "
                             f"{g.n_dists} distances")

    @property
    def n_blocks(self) -> int:
        return self.geometry.n_tiles // self.geometry.n_dists

    def to_detector(self, be, params, batch, psi):
        kernels = self.distance_kernels(be, params)
        dist_index = batch.tiles // self.n_blocks
        k = be.take(kernels, be.asarray(dist_index), axis=0)
        return propagate_fresnel(be, psi, be.reshape(k, (k.shape[0], 1) + tuple(k.shape[1:])))

    def intensity(self, be, params, batch):
        """Incoherent intensities; with ``prj_affine`` each distance's images are warped by
        its affine map (before the buffer zone is dropped, so edges sample real signal)."""
        if "prj_affine" not in params:
            return super().intensity(be, params, batch)
        psi = self.to_detector(be, params, batch, self.shifted_exit_wave(be, params, batch))
        inten = be.sum(be.abs2(psi), axis=1)  # [n, py, px] with the buffer
        dist_index = np.asarray(batch.tiles) // self.n_blocks
        order, warped = [], []
        for d in np.unique(dist_index):
            rows = np.flatnonzero(dist_index == d)
            imgs = be.moveaxis(be.take(inten, be.asarray(rows), axis=0), 0, -1)  # [py, px, k]
            warped.append(be.moveaxis(affine_warp(be, imgs, params["prj_affine"][int(d)]), -1, 0))
            order.extend(rows.tolist())
        out = be.concatenate(warped, axis=0) if len(warped) > 1 else warped[0]
        if order != sorted(order):
            out = be.take(out, be.asarray(np.argsort(order)), axis=0)
        return self.crop_buffer(out)
