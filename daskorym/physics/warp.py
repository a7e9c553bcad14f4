"""Differentiable resampling: object tilts and affine warps of detector images.

Both use :meth:`Backend.bilinear_sample`, so they are differentiable in the
values and in the angles / matrix; samples falling outside the array read
zero (callers subtract the vacuum value first where it is not zero).
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend


def _rotate_plane(be: Backend, vol, axes: tuple[int, int], angle, centre: tuple[float, float]):
    """Rotate ``vol`` in the plane of two of its axes by ``angle`` (backend scalar, rad).

    ``out[p, q] = vol[c + R(angle) ([p, q] - c)]`` over those two axes, the others carried
    along; ``centre`` in array coordinates of the two axes.
    """
    a0, a1 = axes
    nd = len(vol.shape)
    order = [a0, a1] + [k for k in range(nd) if k not in axes]
    img = vol if order == list(range(nd)) else _permute(be, vol, order)
    n0, n1 = int(img.shape[0]), int(img.shape[1])
    p, q = np.meshgrid(np.arange(n0, dtype=np.float64) - centre[0],
                       np.arange(n1, dtype=np.float64) - centre[1], indexing="ij")
    p, q = be.asarray(p.astype(be.np_real)), be.asarray(q.astype(be.np_real))
    c, s = be.cos(angle), be.sin(angle)
    src0 = c * p - s * q + centre[0]
    src1 = s * p + c * q + centre[1]
    out = be.bilinear_sample(img, src0, src1)
    if order == list(range(nd)):
        return out
    inverse = [order.index(k) for k in range(nd)]
    return _permute(be, out, inverse)


def _permute(be: Backend, x, order: list[int]):
    """``x`` with its axes in ``order`` (a sequence of moveaxis calls)."""
    current = list(range(len(order)))
    for dest, src_axis in enumerate(order):
        src = current.index(src_axis)
        if src != dest:
            x = be.moveaxis(x, src, dest)
            current.insert(dest, current.pop(src))
    return x


def tilt_chunk(be: Backend, chunk, tilt_rad, origin_yx: tuple[int, int],
               obj_shape: tuple[int, int, int], fill=(0.0, 0.0)):
    """Tilt an object chunk ``[ny, nx, Lz, 2]`` about the object's centre.

    ``tilt_rad`` (backend ``[3]``): rotations about the y axis (the x-z plane), the x axis
    (the y-z plane) and the z axis (the y-x plane), applied in that order.  The chunk's
    pixel ``(0, 0)`` is object pixel ``origin_yx``; voxels brought in from outside the
    chunk are ``fill`` (vacuum).  Zero angles give the chunk back (up to rounding).  For a
    single-slice object only the turn about z applies.
    """
    ly, lx, lz = obj_shape
    cy = (ly - 1) / 2.0 - origin_yx[0]
    cx = (lx - 1) / 2.0 - origin_yx[1]
    cz = (lz - 1) / 2.0
    fill_arr = None
    if any(f != 0.0 for f in fill):
        fill_arr = be.asarray(np.asarray(fill, be.np_real))
        chunk = chunk - fill_arr
    vol = chunk
    if lz > 1:  # a single slice has no depth to turn (a thin object's projection changes
        # only by the second-order foreshortening cos(angle), which is left out)
        vol = _rotate_plane(be, vol, (1, 2), tilt_rad[0], (cx, cz))
        vol = _rotate_plane(be, vol, (0, 2), tilt_rad[1], (cy, cz))
    vol = _rotate_plane(be, vol, (0, 1), tilt_rad[2], (cy, cx))
    return vol if fill_arr is None else vol + fill_arr


def affine_warp(be: Backend, images, matrix):
    """Resample images ``[ny, nx, ...]`` through one affine map about the image centre.

    ``matrix`` (backend ``[2, 3]``): ``out(r) = img(A (r - c) + c + t)`` with
    ``A = matrix[:, :2]``, ``t = matrix[:, 2]`` (pixels).  The identity gives the images back.
    """
    ny, nx = int(images.shape[0]), int(images.shape[1])
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    y, x = np.meshgrid(np.arange(ny, dtype=np.float64) - cy, np.arange(nx, dtype=np.float64) - cx,
                       indexing="ij")
    y, x = be.asarray(y.astype(be.np_real)), be.asarray(x.astype(be.np_real))
    src_y = matrix[0, 0] * y + matrix[0, 1] * x + matrix[0, 2] + cy
    src_x = matrix[1, 0] * y + matrix[1, 1] * x + matrix[1, 2] + cx
    return be.bilinear_sample(images, src_y, src_x)
