"""Rotation of the object about the y axis (the tomographic axis).

A rotation about y maps every y-slab onto itself, so it is one sparse
linear map ``R`` on the (x, z) plane applied to every row y and channel.
For an output voxel at (x, z) the value is interpolated bilinearly at

    xs = cos(t) (x - cx) - sin(t) (z - cz) + cx
    zs = sin(t) (x - cx) + cos(t) (z - cz) + cz,      cx = (Lx-1)/2, cz = (Lz-1)/2

with neighbours outside the volume counted as 0 (vacuum).  ``R`` is held as
a SciPy CSR matrix; :meth:`RotationOperator.adjoint` applies ``R^T``, the
exact adjoint (used to rotate gradients back), and
:meth:`RotationOperator.inverse` is the rotation by ``-t``.

Because each row y is transformed independently, rotating a slab
``obj[y0:y1]`` gives bit-identical values to rotating the whole volume and
slicing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp


@lru_cache(maxsize=64)
def _rotation_matrix(lx: int, lz: int, theta_rad: float) -> sp.csr_matrix:
    x, z = np.meshgrid(np.arange(lx, dtype=np.float64), np.arange(lz, dtype=np.float64),
                       indexing="ij")
    cx, cz = (lx - 1) / 2.0, (lz - 1) / 2.0
    c, s = np.cos(theta_rad), np.sin(theta_rad)
    xs = c * (x - cx) - s * (z - cz) + cx
    zs = s * (x - cx) + c * (z - cz) + cz
    # snap values within 1e-9 px of an integer, so that theta = 0 is the identity
    xs = np.where(np.abs(xs - np.round(xs)) < 1e-9, np.round(xs), xs).ravel()
    zs = np.where(np.abs(zs - np.round(zs)) < 1e-9, np.round(zs), zs).ravel()
    x0, z0 = np.floor(xs), np.floor(zs)
    wx, wz = xs - x0, zs - z0
    rows, cols, vals = [], [], []
    out_idx = np.arange(lx * lz)
    for dx, fx in ((0, 1 - wx), (1, wx)):
        for dz, fz in ((0, 1 - wz), (1, wz)):
            xx, zz = x0 + dx, z0 + dz
            ok = (xx >= 0) & (xx < lx) & (zz >= 0) & (zz < lz) & (fx * fz != 0)
            rows.append(out_idx[ok])
            cols.append((xx[ok] * lz + zz[ok]).astype(np.int64))
            vals.append((fx * fz)[ok])
    mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(lx * lz, lx * lz))
    mat.sum_duplicates()
    return mat


class RotationOperator:
    """Rotation by ``theta_rad`` about y of arrays ``[Ly, Lx, Lz, ...]``.

    Parameters
    ----------
    shape_xz : (Lx, Lz)
    theta_rad : rotation angle
    """

    def __init__(self, shape_xz: tuple[int, int], theta_rad: float) -> None:
        self.shape_xz = (int(shape_xz[0]), int(shape_xz[1]))
        self.theta_rad = float(theta_rad)
        self._mat = _rotation_matrix(self.shape_xz[0], self.shape_xz[1], self.theta_rad)
        self._mat_t: sp.csr_matrix | None = None

    def __repr__(self) -> str:
        return f"RotationOperator(shape_xz={self.shape_xz}, theta_rad={self.theta_rad!r})"

    def _apply(self, mat: sp.csr_matrix, arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr)
        ly, lx, lz = arr.shape[:3]
        if (lx, lz) != self.shape_xz:
            raise ValueError(f"array of shape {arr.shape} does not match the rotation's (Lx, Lz) "
                             f"= {self.shape_xz}")
        trailing = arr.shape[3:]
        cols = arr.reshape(ly, lx * lz, -1).transpose(1, 0, 2).reshape(lx * lz, -1)
        out = mat @ cols
        out = out.astype(arr.dtype, copy=False).reshape(lx * lz, ly, -1).transpose(1, 0, 2)
        return np.ascontiguousarray(out.reshape((ly, lx, lz) + trailing))

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        """Rotated copy of ``arr`` ``[Ly, Lx, Lz, ...]`` (any Ly: a slab works alike)."""
        return self._apply(self._mat, arr)

    def adjoint(self, arr: np.ndarray) -> np.ndarray:
        """``R^T arr``: the exact adjoint, used to rotate gradients back to 0 degrees."""
        if self._mat_t is None:
            self._mat_t = self._mat.T.tocsr()
        return self._apply(self._mat_t, arr)

    @property
    def inverse(self) -> "RotationOperator":
        """The rotation by ``-theta`` (an interpolating inverse, not exact)."""
        return RotationOperator(self.shape_xz, -self.theta_rad)
