"""PyTorch backend (CPU or CUDA)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .base import Array, Backend, _patch_flat_index


class TorchBackend(Backend):
    """:class:`Backend` on torch tensors.

    Parameters
    ----------
    precision : {"float32", "float64"}
    device : torch device string, e.g. ``"cpu"`` or ``"cuda:0"``
    """

    name = "torch"

    def __init__(self, precision: str = "float32", device: str = "cpu") -> None:
        super().__init__(precision)
        self.device = torch.device(device)
        self.real_dtype = torch.float32 if precision == "float32" else torch.float64
        self.complex_dtype = torch.complex64 if precision == "float32" else torch.complex128

    def __repr__(self) -> str:
        return f"TorchBackend(precision={self.precision!r}, device={str(self.device)!r})"

    def set_threads(self, n: int) -> None:
        if torch.get_num_threads() != int(n):
            torch.set_num_threads(int(n))

    # creation
    def asarray(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            t = x
        else:
            t = torch.as_tensor(np.asarray(x))
        if t.is_complex():
            t = t.to(self.complex_dtype)
        elif t.is_floating_point():
            t = t.to(self.real_dtype)
        return t.to(self.device)

    def to_numpy(self, x: Array) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    # elementwise
    def as_complex(self, pairs):
        if pairs.dtype in (torch.float32, torch.float64) and pairs.stride(-1) == 1 and all(
                st % 2 == 0 for st in pairs.stride()[:-1]) and pairs.storage_offset() % 2 == 0:
            return torch.view_as_complex(pairs)  # no copy, and none in the backward pass
        return torch.complex(pairs[..., 0], pairs[..., 1])

    def complex(self, re, im):
        return torch.complex(re, im)

    def real(self, z):
        return torch.real(z) if z.is_complex() else z

    def imag(self, z):
        return torch.imag(z) if z.is_complex() else torch.zeros_like(z)

    def abs(self, z):
        return torch.abs(z)

    def abs2(self, z):
        if z.is_complex():
            r = torch.view_as_real(z)
            return r[..., 0] ** 2 + r[..., 1] ** 2
        return z * z

    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def sqrt(self, x):
        return torch.sqrt(x)

    def cos(self, x):
        return torch.cos(x)

    def sin(self, x):
        return torch.sin(x)

    def floor(self, x):
        return torch.floor(x)

    def arctan2(self, y, x):
        return torch.atan2(y, x)

    def expi(self, phase):
        return torch.polar(torch.ones_like(phase), phase)

    def conj(self, z):
        return torch.conj(z)

    # reductions and shape
    def sum(self, x, axis=None):
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis)

    def mean(self, x, axis=None):
        return torch.mean(x) if axis is None else torch.mean(x, dim=axis)

    def stack(self, xs, axis=0):
        return torch.stack(list(xs), dim=axis)

    def unbind(self, x, axis=0):
        return list(torch.unbind(x, dim=axis))

    def concatenate(self, xs, axis=0):
        return torch.cat(list(xs), dim=axis)

    def reshape(self, x, shape):
        return torch.reshape(x, tuple(shape))

    def moveaxis(self, x, source, destination):
        return torch.movedim(x, source, destination)

    def pad(self, x, widths, value=0.0):
        flat: list[int] = []
        for before, after in reversed(list(widths)):
            flat += [int(before), int(after)]
        if x.is_complex():
            pad_part = lambda p, v: torch.nn.functional.pad(p, flat, value=float(v))
            return torch.complex(pad_part(x.real, np.real(value)), pad_part(x.imag, np.imag(value)))
        return torch.nn.functional.pad(x, flat, value=float(value))

    def take(self, x, index, axis=0):
        return torch.index_select(x, axis, index.to(torch.int64).to(x.device))

    # FFT
    def fft2(self, x, norm=None):
        return torch.fft.fft2(x, norm=norm or "backward")

    def ifft2(self, x, norm=None):
        return torch.fft.ifft2(x, norm=norm or "backward")

    def fftshift(self, x):
        return torch.fft.fftshift(x, dim=(-2, -1))

    def ifftshift(self, x):
        return torch.fft.ifftshift(x, dim=(-2, -1))

    # patches
    def scatter_add_patches(self, patches, iy, ix, img_shape):
        img_shape = tuple(int(s) for s in img_shape)
        flat_idx = _patch_flat_index(img_shape, iy, ix, patches.shape[1:3])
        trailing = tuple(img_shape[2:])
        out = torch.zeros((img_shape[0] * img_shape[1],) + trailing,
                          dtype=patches.dtype, device=patches.device)
        src = torch.reshape(patches, (-1,) + trailing)
        index = torch.as_tensor(flat_idx.ravel(), device=patches.device)
        out = out.index_add(0, index, src)
        return torch.reshape(out, img_shape)

    # differentiation
    def value_and_grad(self, f: Callable[[dict], Array], params: Mapping[str, Any],
                       wrt: Sequence[str]) -> tuple[float, dict[str, np.ndarray]]:
        tparams = {k: self.asarray(v) for k, v in params.items()}
        leaves = []
        for k in wrt:
            t = tparams[k].detach().clone().requires_grad_(True)
            tparams[k] = t
            leaves.append(t)
        with torch.enable_grad():
            value = f(tparams)
            grads = torch.autograd.grad(value, leaves, allow_unused=True) if leaves else []
        out = {}
        for k, t, g in zip(wrt, leaves, grads):
            out[k] = self.to_numpy(g) if g is not None else np.zeros(t.shape, self.np_real)
        return float(value.detach()), out

    def evaluate(self, f, params):
        with torch.no_grad():
            return f({k: self.asarray(v) for k, v in params.items()})
