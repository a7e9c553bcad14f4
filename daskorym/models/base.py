"""The kernel contract shared by every forward model, and the model registry.

A forward model maps an object *chunk* (the rotated object under a batch
of tiles), refinable parameters and a fixed :class:`Geometry` to complex
detector waves ``[n_tiles, n_modes, det_y, det_x]``.  Its
:meth:`ForwardModel.tile_loss` is *the* differentiated function: the
local, Dask and MPI engines all call it, so they give the same numbers.

Parameters passed to a model (``params``), all real arrays:

``obj``          ``[Ry, Rx, Lz, 2]`` object chunk (region of the rotated object)
``probe``        ``[n_modes, py, px, 2]`` probe (real, imag)
``pos_px``       ``[n_tiles, 2]`` tile positions (y, x), object pixels; if absent
                 the probe is not shifted (integer positions)
``free_prop_m``  ``[n_dists]`` sample-detector distances (near-field models)
``slice_pos_m``  ``[n_slices]`` slice positions (sparse multislice)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..backend import Backend
from ..physics import Modulation, Region, split_positions
from ..physics.multislice import UNKNOWN_TYPES

INF = math.inf


@dataclass(frozen=True)
class Geometry:
    """Immutable description of the experiment and of the object grid.

    Parameters
    ----------
    wavelength_m : float
    psize_m : float
        Object pixel (= voxel, = slice thickness) size.
    obj_shape : (Ly, Lx, Lz)
    probe_shape : (py, px)
        Shape of the wave tile propagated through the object: the detector
        shape plus ``2 * safe_zone_px`` on each axis.
    free_prop_m : tuple of floats
        Sample-detector distance(s); ``(inf,)`` for far field.
    unknown_type : "delta_beta" or "real_imag"
    sign_convention : +1 or -1
    fresnel_approx : paraxial (True) or exact angular-spectrum (False) kernels
    normalize_fft : orthonormal far-field FFT
    binning : slices merged per multislice step
    pure_projection : projection approximation instead of multislice
    scale_ri_by_k : delta and beta multiplied by ``k dz``
    safe_zone_px : buffer zone around each tile (tiled full-field models)
    slice_pos_m : slice positions of the sparse multislice model
    n_tiles : tiles per angle in the dataset (multi-distance: n_dists * n_blocks)
    kappa : beta/delta ratio of a homogeneous object (beta = kappa delta), or None
    """

    wavelength_m: float
    psize_m: float
    obj_shape: tuple[int, int, int]
    probe_shape: tuple[int, int]
    free_prop_m: tuple[float, ...] = (INF,)
    unknown_type: str = "delta_beta"
    sign_convention: int = 1
    fresnel_approx: bool = True
    normalize_fft: bool = False
    binning: int = 1
    pure_projection: bool = False
    scale_ri_by_k: bool = True
    safe_zone_px: int = 0
    slice_pos_m: tuple[float, ...] | None = None
    n_tiles: int = 1
    kappa: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (self.wavelength_m > 0 and math.isfinite(self.wavelength_m)):
            problems.append(f"wavelength_m must be positive and finite, got {self.wavelength_m}")
        if not (self.psize_m > 0 and math.isfinite(self.psize_m)):
            problems.append(f"psize_m must be positive and finite, got {self.psize_m}")
        if len(self.obj_shape) != 3 or min(self.obj_shape) < 1:
            problems.append(f"obj_shape must be (Ly, Lx, Lz) >= 1, got {self.obj_shape}")
        if len(self.probe_shape) != 2 or min(self.probe_shape) < 1:
            problems.append(f"probe_shape must be (py, px) >= 1, got {self.probe_shape}")
        if self.unknown_type not in UNKNOWN_TYPES:
            problems.append(f"unknown_type must be one of {UNKNOWN_TYPES}, got {self.unknown_type!r}")
        if self.sign_convention not in (1, -1):
            problems.append(f"sign_convention must be 1 or -1, got {self.sign_convention}")
        if self.binning < 1:
            problems.append(f"binning must be >= 1, got {self.binning}")
        if self.safe_zone_px < 0 or 2 * self.safe_zone_px >= min(self.probe_shape):
            problems.append(f"safe_zone_px={self.safe_zone_px} does not fit the tile "
                            f"{self.probe_shape}")
        for d in self.free_prop_m:
            if not (d > 0 or d == INF) or math.isnan(d):
                problems.append(f"free_prop_m must be positive or inf, got {self.free_prop_m}")
                break
        if problems:
            raise ValueError("invalid geometry: " + "; ".join(problems))

    @property
    def det_shape(self) -> tuple[int, int]:
        s = self.safe_zone_px
        return (self.probe_shape[0] - 2 * s, self.probe_shape[1] - 2 * s)

    @property
    def is_far_field(self) -> bool:
        return all(d == INF for d in self.free_prop_m)

    @property
    def n_dists(self) -> int:
        return len(self.free_prop_m)

    @property
    def modulation(self) -> Modulation:
        return Modulation(self.unknown_type, self.wavelength_m, self.psize_m,
                          self.sign_convention, self.scale_ri_by_k, self.kappa)


@dataclass(frozen=True)
class TileBatch:
    """Which tiles a kernel call covers, and where they sit in the chunk.

    Two layouts of the object chunk (the ``obj`` param):

    * box: the smallest box of the object holding all the tiles (tiles that
      overlap share voxels); ``region`` is that box in object pixels;
    * mosaic: each tile's own ``py x px`` region of the object, placed side by
      side along x (used when the box would be much larger than the tiles,
      e.g. for scattered tiles); ``tile_regions`` lists them.

    Attributes
    ----------
    i_theta : angle index
    tiles : ``[n]`` tile indices within the angle (data axis 1)
    crop_px : ``[n, 2]`` integer top-left corners of the wave tiles in chunk pixels
    region : the chunk's box (object pixels for the box layout)
    tile_origin_px : ``[n, 2]`` object pixel of each crop's top-left corner
    tile_regions : per-tile object regions (mosaic layout), else None
    """

    i_theta: int
    tiles: np.ndarray
    crop_px: np.ndarray
    region: Region
    tile_origin_px: np.ndarray
    tile_regions: tuple[Region, ...] | None = None

    def __len__(self) -> int:
        return int(len(self.tiles))

    def parts(self) -> list[tuple[Region, int, int]]:
        """``(object region, chunk row, chunk column)`` of each piece of the chunk."""
        if self.tile_regions is None:
            return [(self.region, 0, 0)]
        return [(r, int(c[0]), int(c[1])) for r, c in zip(self.tile_regions, self.crop_px)]

    def chunk_from(self, read_region, trailing, dtype, fill) -> np.ndarray:
        """The chunk ``[region.ny, region.nx, *trailing]``; ``read_region(Region) -> array``."""
        out = np.empty((self.region.ny, self.region.nx) + tuple(trailing), dtype)
        out[...] = np.asarray(fill, dtype)
        for reg, r0, c0 in self.parts():
            out[r0:r0 + reg.ny, c0:c0 + reg.nx] = read_region(reg)
        return out

    def add_chunk_to(self, add_region, chunk: np.ndarray) -> None:
        """Send a chunk-shaped array (a gradient) back: ``add_region(Region, array)`` per piece."""
        for reg, r0, c0 in self.parts():
            add_region(reg, chunk[r0:r0 + reg.ny, c0:c0 + reg.nx])


MODELS: dict[str, type["ForwardModel"]] = {}


def register_model(cls: type["ForwardModel"]) -> type["ForwardModel"]:
    """Class decorator adding a model to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    MODELS[cls.name] = cls
    return cls


def get_model(name: str) -> type["ForwardModel"]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown forward model {name!r}; known: {sorted(MODELS)}") from None


class ForwardModel:
    """Base class: subclass, set ``name`` and ``inputs``, write :meth:`forward`, register.

    ``inputs`` lists the ``params`` names the model reads; every one is
    differentiable.  ``required`` are those it cannot run without.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("obj", "probe", "pos_px")
    required: ClassVar[tuple[str, ...]] = ("obj", "probe")

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self._cache: dict[Any, Any] = {}
        self.layout = "auto"  # engines set "box" (with a halo) when the object is tilted
        self.halo_px = 0
        self.check_geometry()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.geometry!r})"

    def check_geometry(self) -> None:
        """Raise ValueError if the geometry does not suit this model."""

    # ------------------------------------------------------------------ batches
    def wave_positions(self, pos_px: np.ndarray) -> np.ndarray:
        """Top-left corners of the wave tiles for data-tile positions (buffer zone removed)."""
        return np.asarray(pos_px, np.float64) - self.geometry.safe_zone_px

    def plan_batch(self, i_theta: int, tiles: np.ndarray, pos_px: np.ndarray,
                   layout: str | None = None) -> TileBatch:
        """Batch description for tiles at positions ``pos_px [n, 2]``.

        ``layout``: "box", "mosaic", or "auto" (mosaic when the box would hold
        more than twice the voxels of the tiles themselves); default ``self.layout``.
        A box is widened by ``self.halo_px`` on each side (tilts pull in neighbours).
        """
        layout = layout or self.layout
        whole, _ = split_positions(self.wave_positions(pos_px))
        py, px = self.geometry.probe_shape
        region = Region.around(whole, (py, px))
        if self.halo_px and layout == "box":
            h = int(self.halo_px)
            region = Region(region.y0 - h, region.x0 - h, region.ny + 2 * h, region.nx + 2 * h)
        tiles = np.asarray(tiles, np.int64)
        if layout == "auto":
            layout = "mosaic" if region.ny * region.nx > 2 * len(whole) * py * px else "box"
        if layout == "box":
            crop = whole - np.array([region.y0, region.x0])
            return TileBatch(int(i_theta), tiles, crop, region, whole)
        if layout != "mosaic":
            raise ValueError(f"layout must be 'auto', 'box' or 'mosaic', got {layout!r}")
        crop = np.stack([np.zeros(len(whole), np.int64), np.arange(len(whole)) * px], axis=1)
        regions = tuple(Region(int(y), int(x), py, px) for y, x in whole)
        return TileBatch(int(i_theta), tiles, crop, Region(0, 0, py, len(whole) * px), whole,
                         regions)

    # ------------------------------------------------------------------ helpers
    def constant(self, be: Backend, key: Any, make: Callable[[], np.ndarray]):
        """A backend array built once per backend and key (kernels, frequency grids)."""
        full_key = (be.name, be.precision, str(getattr(be, "device", "cpu")), key)
        if full_key not in self._cache:
            self._cache[full_key] = be.asarray(make())
        return self._cache[full_key]

    def shift_fractions(self, be: Backend, params: dict, batch: TileBatch):
        """Sub-pixel part of the positions ``[n, 2]`` (differentiable), or None.

        The planned crops hold the integer part of ``pos_px`` plus the angle's probe
        offset ``pos_offset_px`` (when given); the rest is the Fourier shift.
        """
        if "pos_px" not in params:
            return None
        offset = batch.tile_origin_px + self.geometry.safe_zone_px
        frac = params["pos_px"] - be.asarray(offset.astype(be.np_real))
        if "pos_offset_px" in params:
            frac = frac + be.reshape(params["pos_offset_px"], (1, 2))
        return frac

    def modulation(self, be: Backend, params: dict):
        """The :class:`~daskorym.physics.Modulation`; kappa from ``lg_kappa`` when given."""
        mod = self.geometry.modulation
        if "lg_kappa" in params:
            kappa = be.exp(params["lg_kappa"] * float(np.log(10.0)))
            mod = dataclasses.replace(mod, kappa=kappa)
        return mod

    # ------------------------------------------------------------------ the kernel
    def forward(self, be: Backend, params: dict, batch: TileBatch):
        """Complex detector waves ``[n, n_modes, det_y, det_x]``."""
        raise NotImplementedError

    #: whether :meth:`tile_loss` compares ``forward(..., centred=False)`` (detector pixels in
    #: FFT order) with the measured data and mask shifted to that order
    loss_in_fft_order = False

    def predict(self, be: Backend, params: dict, batch: TileBatch):
        """Detected magnitudes per probe mode ``[n, n_modes, det_y, det_x]``."""
        return be.abs(self.forward(be, params, batch))

    def intensity(self, be: Backend, params: dict, batch: TileBatch):
        """Incoherent sum over modes ``sum_m |psi_m|^2``, ``[n, det_y, det_x]``."""
        return be.sum(be.abs2(self.forward(be, params, batch)), axis=1)

    def tile_loss(self, be: Backend, params: dict, batch: TileBatch, measured, loss,
                  mask=None, measured_fft_order: bool = False):
        """``(loss_sum, n_pixels)`` for measured magnitudes ``[n, det_y, det_x]``.

        ``loss`` is a :class:`daskorym.losses.Loss`; ``mask`` an optional
        ``[det_y, det_x]`` array of valid pixels (1) and ignored ones (0).
        ``measured_fft_order``: ``measured`` is already ``ifftshift``-ed (engines shift a
        whole angle once when :attr:`loss_in_fft_order` holds; see ``Problem.measured``).
        """
        mask = None if mask is None else be.asarray(mask)
        if self.loss_in_fft_order:
            if not measured_fft_order:
                measured = np.fft.ifftshift(np.asarray(measured), axes=(-2, -1))
            if mask is not None:
                mask = be.ifftshift(mask)
            waves = self.forward(be, params, batch, centred=False)
            total = loss.of_waves(be, waves, be.asarray(measured), mask)
        elif type(self).intensity is ForwardModel.intensity:
            total = loss.of_waves(be, self.forward(be, params, batch), be.asarray(measured), mask)
        else:
            total = loss(be, self.intensity(be, params, batch), be.asarray(measured), mask)
        per_tile = int(np.prod(self.geometry.det_shape)) if mask is None else int(np.sum(mask))
        return total, per_tile * len(batch)
