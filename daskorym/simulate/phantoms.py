"""Test objects (natural-image 2D phantoms, slice stacks, analytic 3D volumes) and probes.

Every object is real ``[Ly, Lx, Lz, 2]`` float32 in one of the two
parametrisations of :mod:`daskorym.physics.multislice`:

* ``delta_beta``: ``obj[..., 0] = delta_max * v_d``, ``obj[..., 1] = beta_max * v_b``;
* ``real_imag``: the transmission ``(1 - beta_max v_b) exp(i delta_max v_d)``, stored
  as (real, imag); here ``delta_max`` is a phase in radians and ``beta_max`` the
  fraction of amplitude absorbed, in [0, 1].

``v_d`` and ``v_b`` are value maps in [0, 1].  The 2D images come from the
pictures shipped inside scikit-image (no download).
"""

from __future__ import annotations

import numpy as np
import skimage.color
import skimage.data
import skimage.transform

from ..physics import vacuum_value
from ..physics.multislice import UNKNOWN_TYPES
from ..physics.probes import (aperture_defocus_probe, gaussian_probe, make_modes, plane_probe,
                              to_real)

NATURAL_IMAGES = ("camera", "astronaut", "coins", "moon", "chelsea", "coffee", "brick", "grass")
"""Pictures of ``skimage.data`` that ship with scikit-image (no download needed)."""


def _check_shape(shape: tuple[int, ...], ndim: int, what: str) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"{what}: expected {ndim} positive sizes, found {shape}")
    return shape


def natural_image(name: str, shape_yx: tuple[int, int], turn: int = 0) -> np.ndarray:
    """A scikit-image picture in gray, resized to ``shape_yx`` and scaled to [0, 1].

    Parameters
    ----------
    name : one of :data:`NATURAL_IMAGES`
    shape_yx : (Ly, Lx)
    turn : 0..7; ``rot90`` by ``turn % 4`` quarter turns, then a left-right flip if ``turn >= 4``

    Returns
    -------
    float64 ``[Ly, Lx]``; all zeros if the resized picture is constant.
    """
    if name not in NATURAL_IMAGES:
        raise ValueError(f"unknown image {name!r}; expected one of {NATURAL_IMAGES}")
    img = np.asarray(getattr(skimage.data, name)(), np.float64)
    if img.ndim == 3:
        img = skimage.color.rgb2gray(img[..., :3] / 255.0)
    img = np.rot90(img, turn % 4)
    img = img[:, ::-1] if turn % 8 >= 4 else img
    img = skimage.transform.resize(img, _check_shape(shape_yx, 2, "image shape"),
                                   anti_aliasing=True)
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def phantom_2d(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two different natural images ``(v_d, v_b)``, float64 ``[Ly, Lx]`` in [0, 1].

    ``seed`` picks the pair: pictures ``k`` and ``k + 1`` of :data:`NATURAL_IMAGES`
    with ``k = seed mod 8``, turned / flipped by ``turn = (seed // 8) mod 8`` (see
    :func:`natural_image`).  Seed 0: camera and astronaut, upright.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n = len(NATURAL_IMAGES)
    k, turn = seed % n, (seed // n) % 8
    return (natural_image(NATURAL_IMAGES[k], shape, turn),
            natural_image(NATURAL_IMAGES[(k + 1) % n], shape, turn))


def values_to_object(v_delta: np.ndarray, v_beta: np.ndarray, unknown_type: str,
                     delta_max: float, beta_max: float) -> np.ndarray:
    """Object ``[..., 2]`` float32 from value maps in [0, 1] (see the module docstring)."""
    if unknown_type not in UNKNOWN_TYPES:
        raise ValueError(f"unknown_type must be one of {UNKNOWN_TYPES}, got {unknown_type!r}")
    if unknown_type == "delta_beta":
        return np.stack([delta_max * v_delta, beta_max * v_beta], axis=-1).astype(np.float32)
    if not 0.0 <= beta_max <= 1.0:
        raise ValueError(f"real_imag: beta_max is the absorbed amplitude fraction and must be in "
                         f"[0, 1], got {beta_max}")
    t = (1.0 - beta_max * v_beta) * np.exp(1j * delta_max * v_delta)
    return np.stack([t.real, t.imag], axis=-1).astype(np.float32)


def object_2d(shape_yx: tuple[int, int], unknown_type: str, delta_max: float, beta_max: float,
              seed: int = 0) -> np.ndarray:
    """A thin object ``[Ly, Lx, 1, 2]`` float32 from :func:`phantom_2d`.

    delta_beta: ``delta = delta_max img1``, ``beta = beta_max img2``;
    real_imag: magnitude ``1 - beta_max img2`` and phase ``delta_max img1`` (rad).
    """
    v_d, v_b = phantom_2d(shape_yx, seed)
    return values_to_object(v_d, v_b, unknown_type, delta_max, beta_max)[:, :, None, :]


def sparse_object(shape_yx: tuple[int, int], n_slices: int, unknown_type: str,
                  delta_max: float, beta_max: float, seed: int = 0) -> np.ndarray:
    """``n_slices`` thin slices ``[Ly, Lx, n_slices, 2]``, each from different images.

    Slice ``j`` is :func:`object_2d` with seed ``seed + 2 j`` (a new pair of pictures,
    or a turned / flipped one once the eight pictures are used up).
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    slices = [object_2d(shape_yx, unknown_type, delta_max, beta_max, seed + 2 * j)
              for j in range(n_slices)]
    return np.concatenate(slices, axis=2)


def _grids(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates ``y, x, z`` relative to the volume centre, broadcastable to ``shape``."""
    ly, lx, lz = shape
    y = np.arange(ly)[:, None, None] - (ly - 1) / 2.0
    x = np.arange(lx)[None, :, None] - (lx - 1) / 2.0
    z = np.arange(lz)[None, None, :] - (lz - 1) / 2.0
    return y, x, z


def _inside_centre(rng: np.random.Generator, radius: float, margin: float, ly: int
                   ) -> tuple[float, float, float]:
    """A random centre (y, x, z) whose xz-distance from the axis is <= radius - margin."""
    r = rng.uniform(0.0, max(radius - margin, 0.0))
    phi = rng.uniform(0.0, 2 * np.pi)
    cy = rng.uniform(-0.3, 0.3) * ly
    return cy, r * np.cos(phi), r * np.sin(phi)


def value_volume(shape: tuple[int, int, int], seed: int = 0, radius_frac: float = 0.4,
                 n_ellipsoids: int = 4) -> np.ndarray:
    """Analytic volume ``v`` in [0, 1], float64 ``[Ly, Lx, Lz]``.

    A cylinder along y of radius ``R = radius_frac min(Lx, Lz)`` holding a weak
    matrix (0.2), ``n_ellipsoids`` random ellipsoids (spheres included) and one
    cube, all inside the cylinder, so any rotation about y keeps the object in
    the volume.  Overlaps add up, clipped at 1.
    """
    ly, lx, lz = _check_shape(shape, 3, "object shape (Ly, Lx, Lz)")
    rng = np.random.default_rng(seed)
    y, x, z = _grids((ly, lx, lz))
    radius = radius_frac * min(lx, lz)
    cylinder = (x ** 2 + z ** 2 <= radius ** 2)
    v = 0.2 * np.broadcast_to(cylinder, (ly, lx, lz)).astype(np.float64)
    for _ in range(n_ellipsoids):
        axes = rng.uniform(0.15, 0.35, 3) * np.array([max(ly / 2.0, 1.0), radius, radius])
        cy, cx, cz = _inside_centre(rng, radius, max(axes[1], axes[2]), ly)
        inside = ((y - cy) / axes[0]) ** 2 + ((x - cx) / axes[1]) ** 2 + ((z - cz) / axes[2]) ** 2
        v = v + rng.uniform(0.3, 0.8) * (inside <= 1.0)
    half = 0.2 * radius
    cy, cx, cz = _inside_centre(rng, radius, half * np.sqrt(2.0), ly)
    cube = ((np.abs(y - cy) <= min(half, ly / 2.0)) & (np.abs(x - cx) <= half)
            & (np.abs(z - cz) <= half))
    v = v + 0.6 * cube
    return np.clip(v * cylinder, 0.0, 1.0)


def object_3d(shape: tuple[int, int, int], seed: int, delta_max: float, beta_max: float,
              unknown_type: str = "delta_beta") -> np.ndarray:
    """A 3D object ``[Ly, Lx, Lz, 2]`` float32 from :func:`value_volume` (same map for both)."""
    v = value_volume(shape, seed)
    return values_to_object(v, v, unknown_type, delta_max, beta_max)


def object_scales(unknown_type: str, phase_max_rad: float, absorption: float, k1: float,
                  path_voxels: float = 1.0) -> tuple[float, float]:
    """``(delta_max, beta_max)`` so that a path of ``path_voxels`` full-value voxels gives
    a phase of ``phase_max_rad`` and absorbs the fraction ``absorption`` of the amplitude.

    delta_beta (``T = exp(-k1 beta) exp(-i k1 delta)`` per voxel, ``k1 = 2 pi dz / lambda``):
    ``delta_max = phi / (k1 n)``, ``beta_max = -ln(1 - a) / (k1 n)``.
    real_imag (per voxel): ``delta_max = phi / n`` rad, ``beta_max = 1 - (1 - a)^(1/n)``.
    """
    if not 0.0 <= absorption < 1.0:
        raise ValueError(f"absorption is the absorbed amplitude fraction; expected [0, 1), "
                         f"got {absorption}")
    n = max(float(path_voxels), 1e-12)
    if unknown_type == "real_imag":
        return phase_max_rad / n, 1.0 - (1.0 - absorption) ** (1.0 / n)
    return phase_max_rad / (k1 * n), -np.log1p(-absorption) / (k1 * n)


def sample_object(obj_shape: tuple[int, int, int], unknown_type: str, phase_max_rad: float,
                  absorption: float, k1: float, seed: int = 0, kind: str = "plain"
                  ) -> np.ndarray:
    """The object of a simulation, ``[Ly, Lx, Lz, 2]`` float32.

    Parameters
    ----------
    obj_shape : (Ly, Lx, Lz)
    unknown_type : "delta_beta" or "real_imag"
    phase_max_rad, absorption : peak phase and absorbed amplitude fraction of a
        projection (per slice for thin and sparse objects), see :func:`object_scales`
    k1 : ``2 pi dz / lambda`` of one voxel
    seed : picks the pictures / the random shapes
    kind : "plain" (``Lz = 1``: :func:`object_2d`; else :func:`value_volume` scaled by its
        peak projection along z), "sparse" (:func:`sparse_object`, one pair of pictures
        per slice) or "compact" (a plain object of half the lateral size centred in
        vacuum, for full-field CDI)
    """
    ly, lx, lz = _check_shape(obj_shape, 3, "object shape (Ly, Lx, Lz)")
    if kind == "compact":
        inner = sample_object((max(ly // 2, 1), max(lx // 2, 1), lz), unknown_type,
                              phase_max_rad, absorption, k1, seed)
        return _pad_vacuum(inner, (ly, lx), unknown_type)
    if kind == "sparse":
        scales = object_scales(unknown_type, phase_max_rad, absorption, k1)
        return sparse_object((ly, lx), lz, unknown_type, *scales, seed)
    if kind != "plain":
        raise ValueError(f"kind must be 'plain', 'sparse' or 'compact', got {kind!r}")
    if lz == 1:
        return object_2d((ly, lx), unknown_type,
                         *object_scales(unknown_type, phase_max_rad, absorption, k1), seed)
    v = value_volume((ly, lx, lz), seed)
    path = max(float(v.sum(axis=2).max()), 1.0)
    scales = object_scales(unknown_type, phase_max_rad, absorption, k1, path)
    return values_to_object(v, v, unknown_type, *scales)


def _pad_vacuum(obj: np.ndarray, shape_yx: tuple[int, int], unknown_type: str) -> np.ndarray:
    """``obj`` centred in a ``shape_yx`` field of vacuum."""
    out = np.empty(tuple(shape_yx) + obj.shape[2:], obj.dtype)
    out[...] = vacuum_value(unknown_type)
    y0 = (shape_yx[0] - obj.shape[0]) // 2
    x0 = (shape_yx[1] - obj.shape[1]) // 2
    out[y0:y0 + obj.shape[0], x0:x0 + obj.shape[1]] = obj
    return out


def model_probe(kind: str, shape: tuple[int, int], psize_m: float, wavelength_m: float,
                n_modes: int = 1, seed: int = 0) -> np.ndarray:
    """A probe ``[n_modes, py, px, 2]`` float32 for a simulation.

    kind : "gaussian" (``sigma = min(py, px) / 6``, phase bump 0.5 rad), "aperture"
        (a disk of radius ``0.35 min(py, px)`` defocused to Fresnel number
        ``a^2 / (lambda z) = 5``: a structured near-field probe) or "plane"
    n_modes, seed : orthogonal incoherent modes (:func:`daskorym.physics.probes.make_modes`)
    """
    size = min(shape)
    if kind == "gaussian":
        probe = gaussian_probe(shape, size / 6.0, size / 6.0, 0.5)
    elif kind == "aperture":
        radius_px = 0.35 * size
        defocus_m = (radius_px * psize_m) ** 2 / (5.0 * wavelength_m)
        probe = aperture_defocus_probe(shape, radius_px, 0.0, defocus_m, psize_m, wavelength_m)
    elif kind == "plane":
        probe = plane_probe(shape)
    else:
        raise ValueError(f"probe kind must be 'gaussian', 'aperture' or 'plane', got {kind!r}")
    return to_real(make_modes(probe, n_modes, seed))
