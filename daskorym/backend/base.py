"""The array interface that every numerical layer of daskorym is written against.

A :class:`Backend` is a small object passed down to the physics and the
forward models; it is never a module-level global.  Two implementations
exist: :class:`~daskorym.backend.torch_backend.TorchBackend` (CPU or CUDA)
and :class:`~daskorym.backend.autograd_backend.AutogradBackend` (NumPy).

Only the modules of this package import torch or autograd by name.
Plain arithmetic (``+ - * /``, ``**``, slicing) is written with Python
operators, which both kinds of arrays support; everything else goes
through the methods below.

Conventions
-----------
* FFT helpers act on the last two axes.
* ``real_dtype`` is float32 by default (complex64 for complex arrays);
  ``precision="float64"`` gives float64/complex128.
* Differentiable inputs are always real arrays; complex quantities such
  as the probe are stored with a trailing axis of length 2 (real, imag).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Array = Any
PRECISIONS = ("float32", "float64")


class Backend(ABC):
    """Array creation, complex arithmetic, FFTs, gathers and differentiation.

    Parameters
    ----------
    precision : {"float32", "float64"}
        Working precision of real arrays; complex arrays use the matching
        complex type.
    """

    name: str = "abstract"

    def __init__(self, precision: str = "float32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.np_real = np.dtype(precision)
        self.np_complex = np.dtype("complex64" if precision == "float32" else "complex128")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(precision={self.precision!r})"

    def set_threads(self, n: int) -> None:
        """Threads this backend's kernels may use in this process (no-op by default)."""

    # ------------------------------------------------------------------ creation
    @abstractmethod
    def asarray(self, x: Any) -> Array:
        """Array of this backend; floats in the working precision, ints kept."""

    @abstractmethod
    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy copy of ``x`` (detached from any graph, on the host)."""

    def zeros(self, shape: Sequence[int]) -> Array:
        return self.asarray(np.zeros(shape, self.np_real))

    def ones(self, shape: Sequence[int]) -> Array:
        return self.asarray(np.ones(shape, self.np_real))

    def value(self, x: Array) -> np.ndarray:
        """The current numeric value of ``x`` as NumPy, even inside a traced function."""
        return self.to_numpy(x)

    # ------------------------------------------------------------------ elementwise
    def as_complex(self, pairs: Array) -> Array:
        """Complex array from ``[..., 2]`` (real, imaginary) pairs (torch: a view)."""
        return self.complex(pairs[..., 0], pairs[..., 1])

    @abstractmethod
    def complex(self, re: Array, im: Array) -> Array:
        """``re + i im``."""

    @abstractmethod
    def real(self, z: Array) -> Array: ...

    @abstractmethod
    def imag(self, z: Array) -> Array: ...

    @abstractmethod
    def abs(self, z: Array) -> Array: ...

    def abs2(self, z: Array) -> Array:
        """``|z|^2`` as a real array (no square root, so smooth at 0)."""
        return self.real(z) ** 2 + self.imag(z) ** 2

    @abstractmethod
    def exp(self, x: Array) -> Array: ...

    @abstractmethod
    def log(self, x: Array) -> Array: ...

    @abstractmethod
    def sqrt(self, x: Array) -> Array: ...

    @abstractmethod
    def cos(self, x: Array) -> Array: ...

    @abstractmethod
    def sin(self, x: Array) -> Array: ...

    @abstractmethod
    def floor(self, x: Array) -> Array: ...

    @abstractmethod
    def arctan2(self, y: Array, x: Array) -> Array: ...

    def expi(self, phase: Array) -> Array:
        """``exp(i phase)`` for a real ``phase``."""
        return self.complex(self.cos(phase), self.sin(phase))

    def polar(self, magnitude: Array, phase: Array) -> Array:
        """``magnitude exp(i phase)`` for real arrays (backends may do it in one pass)."""
        return magnitude * self.expi(phase)

    def conj(self, z: Array) -> Array:
        return self.complex(self.real(z), -self.imag(z))

    # ------------------------------------------------------------------ reductions and shape
    @abstractmethod
    def sum(self, x: Array, axis: int | tuple[int, ...] | None = None) -> Array: ...

    def mean(self, x: Array, axis: int | tuple[int, ...] | None = None) -> Array:
        n = int(np.prod(x.shape)) if axis is None else int(
            np.prod([x.shape[a] for a in np.atleast_1d(axis)]))
        return self.sum(x, axis) / n

    def dot(self, a: Array, b: Array) -> Array:
        """``sum(a * b)`` over all elements of two real arrays of one shape."""
        return self.sum(a * b)

    def wave_loss(self, psi: Array, measured: Array, mask: Array | None, loss) -> Array:
        """``loss`` (a :class:`daskorym.losses.Loss`) of the incoherent intensity
        ``sum_modes |psi|^2`` of complex waves ``psi [n, n_modes, dy, dx]``.

        Backends may fuse this into one operation with a hand-written adjoint
        (``d loss / d psi = 2 slope psi``, see :meth:`Loss.value_and_slope`); this
        default composes differentiable pieces."""
        return loss(self, self.sum(self.abs2(psi), axis=1), measured, mask)

    def fused_multislice(self, psi: Array, obj: Array, mod, kernel: Array | None,
                         patches: tuple | None = None):
        """Dense multislice (one slice per step) as one operation with a hand-written
        adjoint, or ``NotImplemented`` (the default): the caller then composes it.

        ``psi`` complex ``[n, m, ny, nx]``, ``obj`` real slice-major ``[Lz, n, ny, nx, 2]``
        (:meth:`gather_slices`); slice ``j`` transmits ``mod.transmission(obj[j])`` (``mod``
        a :class:`daskorym.physics.Modulation`; a kappa being refined is an array, which a
        backend may decline); ``ifft2(fft2(.) * kernel)`` between slices.  With ``patches
        = (iy, ix, shape)`` ``obj`` is instead the chunk ``[H, W, Lz, 2]`` the tiles are
        patches of (:meth:`gather_slices`'s arguments), so that a backend can compute each
        voxel's transmission once rather than once per tile over it.
        """
        return NotImplemented

    @abstractmethod
    def stack(self, xs: Sequence[Array], axis: int = 0) -> Array: ...

    def unbind(self, x: Array, axis: int = 0) -> list[Array]:
        """The slices of ``x`` along ``axis``, that axis removed.

        Backends override this where taking the slices one by one would cost a full-size
        gradient buffer per slice in the backward pass (torch: one ``stack`` for all)."""
        axis = axis % len(x.shape)
        index = (slice(None),) * axis
        return [x[index + (i,)] for i in range(x.shape[axis])]

    @abstractmethod
    def concatenate(self, xs: Sequence[Array], axis: int = 0) -> Array: ...

    @abstractmethod
    def reshape(self, x: Array, shape: Sequence[int]) -> Array: ...

    @abstractmethod
    def moveaxis(self, x: Array, source: int, destination: int) -> Array: ...

    @abstractmethod
    def pad(self, x: Array, widths: Sequence[tuple[int, int]], value: float = 0.0) -> Array:
        """Constant padding; ``widths`` has one (before, after) pair per axis."""

    @abstractmethod
    def take(self, x: Array, index: Array, axis: int = 0) -> Array:
        """``x`` indexed by an integer array along one axis (differentiable in ``x``)."""

    # ------------------------------------------------------------------ FFT
    @abstractmethod
    def fft2(self, x: Array, norm: str | None = None) -> Array:
        """Forward 2D DFT over the last two axes, ``sum x exp(-2 pi i k n / N)``."""

    @abstractmethod
    def ifft2(self, x: Array, norm: str | None = None) -> Array:
        """Inverse 2D DFT over the last two axes (``1/N`` unless ``norm='ortho'``)."""

    @abstractmethod
    def fftshift(self, x: Array) -> Array:
        """Move the zero frequency to the centre of the last two axes."""

    @abstractmethod
    def ifftshift(self, x: Array) -> Array:
        """Inverse of :meth:`fftshift`."""

    # ------------------------------------------------------------------ patches
    def gather_patches(self, img: Array, iy: np.ndarray, ix: np.ndarray,
                       shape: tuple[int, int]) -> Array:
        """Patches ``img[iy[n]:iy[n]+py, ix[n]:ix[n]+px, ...]``.

        Parameters
        ----------
        img : [H, W, ...] array
        iy, ix : [n] integer NumPy arrays, top-left corners (inside ``img``)
        shape : (py, px)

        Returns
        -------
        [n, py, px, ...] array.  Differentiable in ``img``; its adjoint is
        :meth:`scatter_add_patches`.
        """
        flat_idx = _patch_flat_index(img.shape, iy, ix, shape)
        flat = self.reshape(img, (img.shape[0] * img.shape[1],) + tuple(img.shape[2:]))
        out = self.take(flat, self.asarray(flat_idx.ravel()), axis=0)
        return self.reshape(out, flat_idx.shape + tuple(img.shape[2:]))

    def gather_slices(self, img: Array, iy: np.ndarray, ix: np.ndarray,
                      shape: tuple[int, int]) -> Array:
        """:meth:`gather_patches` of an ``[H, W, Lz, C]`` image, slice-major:
        ``[Lz, n, py, px, C]`` (each slice's patches contiguous, for slice-by-slice
        propagation).  Differentiable in ``img``."""
        return self.moveaxis(self.gather_patches(img, iy, ix, shape), 3, 0)

    @abstractmethod
    def scatter_add_patches(self, patches: Array, iy: np.ndarray, ix: np.ndarray,
                            img_shape: Sequence[int]) -> Array:
        """Adjoint of :meth:`gather_patches`: sum ``patches`` into a zero image.

        Parameters
        ----------
        patches : [n, py, px, ...]
        iy, ix : [n] integer NumPy arrays
        img_shape : (H, W, ...)
        """

    # ------------------------------------------------------------------ sampling
    def bilinear_sample(self, img: Array, y: Array, x: Array) -> Array:
        """Bilinear interpolation of ``img`` at fractional pixel coordinates.

        Points whose neighbours fall outside the image take the value 0 for
        those neighbours (vacuum), so the operation is linear in ``img``.
        Differentiable in ``img`` and in the coordinates.

        Parameters
        ----------
        img : [H, W, ...] array
        y, x : arrays of one shape S (pixel units, 0 = centre of the first pixel)

        Returns
        -------
        [S..., ...] array
        """
        h, w = img.shape[0], img.shape[1]
        trailing = tuple(img.shape[2:])
        flat = self.reshape(img, (h * w,) + trailing)
        y0 = self.floor(y)
        x0 = self.floor(x)
        wy = y - y0
        wx = x - x0
        y0n = self.to_numpy(y0).astype(np.int64)
        x0n = self.to_numpy(x0).astype(np.int64)
        out = 0.0
        for dy, fy in ((0, 1.0 - wy), (1, wy)):
            for dx, fx in ((0, 1.0 - wx), (1, wx)):
                yy, xx = y0n + dy, x0n + dx
                inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                idx = np.where(inside, yy * w + xx, 0).ravel()
                vals = self.take(flat, self.asarray(idx), axis=0)
                vals = self.reshape(vals, tuple(y.shape) + trailing)
                weight = fy * fx * self.asarray(inside.astype(self.np_real))
                weight = self.reshape(weight, tuple(y.shape) + (1,) * len(trailing))
                out = out + vals * weight
        return out

    # ------------------------------------------------------------------ differentiation
    @abstractmethod
    def value_and_grad(self, f: Callable[[dict], Array], params: Mapping[str, Any],
                       wrt: Sequence[str]) -> tuple[float, dict[str, np.ndarray]]:
        """Evaluate a scalar function of a dict of arrays and its gradient.

        Parameters
        ----------
        f : callable taking a dict name -> backend array, returning a scalar
        params : dict name -> array-like (converted with :meth:`asarray`)
        wrt : names of the (real) inputs to differentiate with respect to

        Returns
        -------
        (value, grads) with ``grads[name]`` a NumPy array shaped like the input
        (zeros when ``f`` does not depend on it).
        """

    def evaluate(self, f: Callable[[dict], Array], params: Mapping[str, Any]) -> Array:
        """``f`` on the converted ``params``, without building a gradient graph."""
        return f({k: self.asarray(v) for k, v in params.items()})


def _check_patches(img_shape: Sequence[int], iy, ix, shape: tuple[int, int]) -> None:
    """IndexError if a patch at ``(iy, ix)`` leaves the image."""
    h, w = int(img_shape[0]), int(img_shape[1])
    py, px = int(shape[0]), int(shape[1])
    iy = np.asarray(iy, np.int64).reshape(-1)
    ix = np.asarray(ix, np.int64).reshape(-1)
    if iy.size and (iy.min() < 0 or ix.min() < 0 or iy.max() + py > h or ix.max() + px > w):
        raise IndexError(
            f"patch of shape {tuple(shape)} at (y, x) in [{iy.min()}..{iy.max()}] x "
            f"[{ix.min()}..{ix.max()}] leaves the array of shape {(h, w)}")


def _patch_flat_index(img_shape: Sequence[int], iy: np.ndarray, ix: np.ndarray,
                      shape: tuple[int, int]) -> np.ndarray:
    """Flat indices ``[n, py, px]`` into the first two axes of an image."""
    _check_patches(img_shape, iy, ix, shape)
    w = int(img_shape[1])
    py, px = shape
    iy = np.asarray(iy, np.int64).reshape(-1)
    ix = np.asarray(ix, np.int64).reshape(-1)
    rows = iy[:, None] + np.arange(py)[None, :]
    cols = ix[:, None] + np.arange(px)[None, :]
    return rows[:, :, None] * w + cols[:, None, :]
