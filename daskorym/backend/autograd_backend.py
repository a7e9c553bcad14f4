"""Autograd backend (NumPy arrays, CPU)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

from .base import Array, Backend, _patch_flat_index


@primitive
def _scatter_add(patches, flat_idx, n_flat):
    trailing = patches.shape[3:]
    out = np.zeros((n_flat,) + trailing, dtype=patches.dtype)
    np.add.at(out, flat_idx.ravel(), patches.reshape((-1,) + trailing))
    return out


defvjp(_scatter_add, lambda ans, patches, flat_idx, n_flat:
       lambda g: g[flat_idx.ravel()].reshape(patches.shape))


class AutogradBackend(Backend):
    """:class:`Backend` on NumPy arrays differentiated by ``autograd``."""

    name = "autograd"

    def asarray(self, x: Any) -> Array:
        if type(x).__module__.startswith("autograd"):
            return x
        a = np.asarray(x)
        if np.iscomplexobj(a):
            return a.astype(self.np_complex, copy=False)
        if a.dtype.kind == "f":
            return a.astype(self.np_real, copy=False)
        return a

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(getval(x))

    def value(self, x):
        return np.asarray(getval(x))

    # elementwise
    def complex(self, re, im):
        return re + 1j * im

    def real(self, z):
        return anp.real(z)

    def imag(self, z):
        return anp.imag(z)

    def abs(self, z):
        return anp.abs(z)

    def exp(self, x):
        return anp.exp(x)

    def log(self, x):
        return anp.log(x)

    def sqrt(self, x):
        return anp.sqrt(x)

    def cos(self, x):
        return anp.cos(x)

    def sin(self, x):
        return anp.sin(x)

    def floor(self, x):
        return np.floor(getval(x))

    def arctan2(self, y, x):
        return anp.arctan2(y, x)

    def expi(self, phase):
        return anp.exp(1j * phase)

    def conj(self, z):
        return anp.conj(z)

    # reductions and shape
    def sum(self, x, axis=None):
        return anp.sum(x, axis=axis)

    def mean(self, x, axis=None):
        return anp.mean(x, axis=axis)

    def stack(self, xs, axis=0):
        return anp.stack(list(xs), axis=axis)

    def concatenate(self, xs, axis=0):
        return anp.concatenate(list(xs), axis=axis)

    def reshape(self, x, shape):
        return anp.reshape(x, tuple(shape))

    def moveaxis(self, x, source, destination):
        return anp.moveaxis(x, source, destination)

    def pad(self, x, widths, value=0.0):
        widths = [(int(b), int(a)) for b, a in widths]
        if value == 0:
            return anp.pad(x, widths, mode="constant")
        ones_inner = np.zeros(getval(x).shape, dtype=np.float64)
        mask = np.pad(ones_inner, widths, mode="constant", constant_values=1.0)
        return anp.pad(x, widths, mode="constant") + (mask * value).astype(getval(x).dtype)

    def take(self, x, index, axis=0):
        sl = (slice(None),) * (axis % len(getval(x).shape)) + (np.asarray(index, np.int64),)
        return x[sl]

    # FFT
    def fft2(self, x, norm=None):
        return anp.fft.fft2(x, axes=(-2, -1), norm=norm)

    def ifft2(self, x, norm=None):
        return anp.fft.ifft2(x, axes=(-2, -1), norm=norm)

    def fftshift(self, x):
        return anp.fft.fftshift(x, axes=(-2, -1))

    def ifftshift(self, x):
        return anp.fft.ifftshift(x, axes=(-2, -1))

    # patches
    def scatter_add_patches(self, patches, iy, ix, img_shape):
        img_shape = tuple(int(s) for s in img_shape)
        flat_idx = _patch_flat_index(img_shape, iy, ix, getval(patches).shape[1:3])
        out = _scatter_add(patches, flat_idx, img_shape[0] * img_shape[1])
        return anp.reshape(out, img_shape)

    # differentiation
    def value_and_grad(self, f: Callable[[dict], Array], params: Mapping[str, Any],
                       wrt: Sequence[str]) -> tuple[float, dict[str, np.ndarray]]:
        fixed = {k: self.asarray(v) for k, v in params.items() if k not in wrt}
        free = {k: self.asarray(params[k]) for k in wrt}

        def g(d):
            return f({**fixed, **d})

        value, grads = autograd.value_and_grad(g)(free)
        out = {k: np.asarray(grads[k], dtype=self.np_real) for k in wrt}
        return float(value), out
