"""PyTorch backend (CPU or CUDA)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .base import Array, Backend, _check_patches


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
        self._offsets: dict = {}
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

    def polar(self, magnitude, phase):
        return torch.polar(magnitude, phase)

    def conj(self, z):
        return torch.conj(z)

    # reductions and shape
    def dot(self, a, b):
        return torch.dot(torch.reshape(a, (-1,)), torch.reshape(b, (-1,)))

    def wave_loss(self, psi, measured, mask, loss):
        from ..losses import Loss
        if type(loss).value_and_slope is Loss.value_and_slope and \
                type(loss).slope is Loss.slope:
            return super().wave_loss(psi, measured, mask, loss)  # no adjoint to fuse
        return _WaveLoss.apply(psi, measured, mask, loss, self)

    def fused_multislice(self, psi, obj, mod, kernel, patches=None):
        if (kernel is not None and kernel.requires_grad) or \
                isinstance(mod.kappa, torch.Tensor):
            return NotImplemented  # refined (lg_kappa) or differentiable: composed instead
        if patches is None:
            return _Multislice.apply(psi, obj, None, None, mod, self, kernel)
        iy, ix, shape = patches
        obj = self.asarray(obj)
        index = self._patch_index(obj.shape, iy, ix, shape)
        # the chunk slice-major once (a copy of the chunk, not of the larger patches)
        major = obj.permute(2, 0, 1, 3)
        return _Multislice.apply(psi, major, index, (len(np.reshape(iy, -1)),) + tuple(shape),
                                 mod, self, kernel)

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
    def _patch_index(self, img_shape, iy, ix, shape) -> torch.Tensor:
        """Flat indices ``[n * py * px]`` of the patches (built on the device; the
        ``[py, px]`` offsets are cached per image width)."""
        _check_patches(img_shape, iy, ix, shape)
        w = int(img_shape[1])
        key = (w, int(shape[0]), int(shape[1]), str(self.device))
        base = self._offsets.get(key)
        if base is None:
            base = (torch.arange(shape[0], device=self.device)[:, None] * w
                    + torch.arange(shape[1], device=self.device)[None, :])
            self._offsets[key] = base
        corner = torch.as_tensor(np.asarray(iy, np.int64).reshape(-1) * w
                                 + np.asarray(ix, np.int64).reshape(-1), device=self.device)
        return torch.reshape(corner[:, None, None] + base, (-1,))

    def gather_patches(self, img, iy, ix, shape):
        img = self.asarray(img)
        trailing = tuple(img.shape[2:])
        index = self._patch_index(img.shape, iy, ix, shape)
        pairs = _pairs_as_complex(img)
        # (re, im) or (delta, beta) pairs move as one 8-byte value; one row per pixel
        # (index_select over rows of a single element takes a slow path: flattened)
        src = img if pairs is None else pairs
        rows = _rows(src)
        out = torch.index_select(rows, 0, index)
        if pairs is not None:
            out = torch.view_as_real(out)
        return torch.reshape(out, (len(np.reshape(iy, -1)),) + tuple(shape) + trailing)

    def gather_slices(self, img, iy, ix, shape):
        img = self.asarray(img)
        if img.dim() != 4:
            return super().gather_slices(img, iy, ix, shape)
        lz, c = int(img.shape[2]), int(img.shape[3])
        index = self._patch_index(img.shape, iy, ix, shape)
        # the chunk slice-major once (a copy of the chunk, not of the larger patches), then
        # each slice's patches gathered along its contiguous row of pixels
        major = img.permute(2, 0, 1, 3).contiguous()
        pairs = _pairs_as_complex(major)
        src = torch.reshape(major if pairs is None else pairs,
                            (lz, -1) + (() if pairs is not None else (c,)))
        if pairs is not None:  # (torch.gather along rows: 3x faster than index_select here)
            out = torch.view_as_real(torch.gather(src, 1, index[None].expand(lz, -1)))
        else:
            out = torch.index_select(src, 1, index)
        return torch.reshape(out, (lz, len(np.reshape(iy, -1))) + tuple(shape) + (c,))

    def scatter_add_patches(self, patches, iy, ix, img_shape):
        img_shape = tuple(int(s) for s in img_shape)
        index = self._patch_index(img_shape, iy, ix, patches.shape[1:3])
        out = torch.zeros(img_shape, dtype=patches.dtype, device=patches.device)
        pairs, src = _pairs_as_complex(out), patches
        if pairs is not None:
            src = _pairs_as_complex(patches.contiguous())
            target = _rows(pairs)
        else:
            target = _rows(out)
        target.index_add_(0, index, torch.reshape(src, (-1,) + tuple(target.shape[1:])))
        return out

    # differentiation
    def value_and_grad(self, f: Callable[[dict], Array], params: Mapping[str, Any],
                       wrt: Sequence[str]) -> tuple[float, dict[str, np.ndarray]]:
        tparams = {k: self.asarray(v) for k, v in params.items()}
        leaves = []
        for k in wrt:
            # (no copy: nothing in a kernel writes into its inputs)
            t = tparams[k].detach().requires_grad_(True)
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


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x [H, W, ...]`` as ``[H * W, ...]``, or ``[H * W]`` when a pixel holds one value."""
    n = int(x.shape[0]) * int(x.shape[1])
    return torch.reshape(x, (n,) if x[0, 0].numel() == 1 else (n,) + tuple(x.shape[2:]))


def _pairs_as_complex(x: torch.Tensor) -> torch.Tensor | None:
    """``x [..., 2]`` (real) viewed as complex ``[...]`` without a copy, or None."""
    if x.dtype not in (torch.float32, torch.float64) or x.dim() < 3 or x.shape[-1] != 2 \
            or x.stride(-1) != 1 or x.storage_offset() % 2 \
            or any(st % 2 for st in x.stride()[:-1]):
        return None
    return torch.view_as_complex(x)


class _WaveLoss(torch.autograd.Function):
    """``loss(sum_modes |psi|^2)`` of waves ``psi [n, m, dy, dx]`` with its adjoint written
    out: ``d loss / d psi = 2 slope psi`` (``slope = d loss / d intensity``), so the backward
    pass is one multiplication instead of the chain of |.|^2, sum, sqrt and their adjoints."""

    @staticmethod
    def forward(ctx, psi, measured, mask, loss, be):
        psi = psi.resolve_conj()
        sq = torch.view_as_real(psi).square()
        inten = sq[..., 0] + sq[..., 1]
        inten = inten[:, 0] if inten.shape[1] == 1 else inten.sum(1)
        total, slope = loss.value_and_slope(be, inten, measured, mask)
        ctx.save_for_backward(psi, slope)
        return total

    @staticmethod
    def backward(ctx, grad):
        psi, slope = ctx.saved_tensors
        scale = (slope * (2.0 * grad)).to(psi.dtype)
        return psi * scale[:, None], None, None, None, None


_CHUNK_BYTES = 2 << 20  # slices whose transmissions (and gradients) are computed in one call:
# as many as fit in about this (a cache's worth), 1 to 16


class _Multislice(torch.autograd.Function):
    """Dense multislice with its adjoint written out (see ``Backend.fused_multislice``).

    ``obj`` is slice-major: the tiles' own voxels ``[Lz, n, ny, nx, 2]`` (``index`` None), or
    the chunk under them ``[Lz, H, W, 2]`` with ``index`` the flat chunk pixel of each tile
    pixel (``[n * ny * nx]``, :meth:`TorchBackend._patch_index`) and ``tiles`` ``(n, ny,
    nx)``. With a chunk, each transmission is computed once per chunk voxel and gathered
    under the tiles (the tiles overlap: the 3D bench case's 25 tiles hold each voxel of
    their chunk about 7 times), and the backward sums the tiles' gradients per chunk voxel
    before turning them into (a, b) gradients.

    The forward keeps, per slice, the wave arriving at it and its transmission (taken a
    few slices at a time: fewer calls, see ``_CHUNK_BYTES``); the backward runs the slices
    in reverse: the adjoint of the propagation
    ``ifft2(fft2(g) conj(kernel))``, the transmission's gradient ``sum_modes g conj(psi_j)``
    turned into (a, b) gradients written into one slice-major buffer, and ``g conj(t_j)``.
    Composed by autograd the same chain stores about four tensors per slice and gathers
    the slices' gradients with a ``stack``."""

    @staticmethod
    def forward(ctx, psi, obj, index, tiles, mod, be, kernel):
        lz = obj.shape[0]
        obj = obj.contiguous()
        rows = obj[0, ..., 0].numel()
        if index is not None:  # the chunk's transmissions, once per voxel
            source = mod.transmission(be, obj).reshape(lz, rows)
            rows = int(index.numel())
        waves, chunks = [], []
        step = int(min(16, max(1, _CHUNK_BYTES // (rows * 8))))
        for c0 in range(0, lz, step):
            # the transmissions of a few slices at once (fewer, larger calls; the chunk
            # stays in cache until the loop below has used it)
            if index is None:
                tc = mod.transmission(be, obj[c0:c0 + step])[:, :, None]
            else:
                part = source[c0:c0 + step]
                tc = torch.gather(part, 1, index[None].expand(part.shape[0], -1))
                tc = tc.reshape((part.shape[0], tiles[0], 1) + tuple(tiles[1:]))
            chunks.append(tc)
            for jj, t in enumerate(tc):
                waves.append(psi)
                psi = psi * t
                if c0 + jj < lz - 1:
                    psi = torch.fft.ifft2(torch.fft.fft2(psi) * kernel)
        ctx.save_for_backward(kernel, index, source if index is not None else None,
                              *waves, *chunks)
        ctx.lz, ctx.obj_shape, ctx.psi_shape = lz, obj.shape, waves[0].shape
        ctx.mod = mod
        return psi

    @staticmethod
    def backward(ctx, g):
        kernel, index, source, *saved = ctx.saved_tensors
        lz = ctx.lz
        waves, chunks = saved[:lz], saved[lz:]
        mod = ctx.mod
        k, sign, kappa = mod.k1, mod.sign, mod.kappa
        # The adjoint runs on h = conj(g): then no product takes a conjugate (a product with
        # a conjugate view copies it first: three copies of the wave per slice).  In h the
        # steps read: propagation ifft2(fft2(g) K*) -> fft2(ifft2(h) K); transmission
        # g t* -> h t; and conj(sum_modes g psi_j*) = sum_modes h psi_j, kept per
        # chunk of slices (summed per chunk voxel when the tiles come from a chunk) and
        # turned into (a, b) gradients with one set of calls per chunk of slices.
        h = g.conj().resolve_conj()
        grad_obj = None
        if ctx.needs_input_grad[1]:
            grad_obj = torch.empty(ctx.obj_shape, dtype=g.real.dtype, device=g.device)
            flat_grad = grad_obj.reshape(lz, -1, 2)
        single, step = h.shape[1] == 1, chunks[0].shape[0]
        for ci in range(len(chunks) - 1, -1, -1):
            tc, c0 = chunks[ci], ci * step
            ct = torch.empty_like(tc[:, :, 0]) if grad_obj is not None else None
            for jj in range(tc.shape[0] - 1, -1, -1):
                j = c0 + jj
                if j < lz - 1:
                    h = torch.fft.fft2(torch.fft.ifft2(h) * kernel)
                if ct is not None:  # conj of the transmission's gradient gt
                    if single:
                        torch.mul(h[:, 0], waves[j][:, 0], out=ct[jj])
                    else:
                        torch.sum(h * waves[j], dim=1, out=ct[jj])
                if j > 0 or ctx.needs_input_grad[0]:
                    h = h * tc[jj]
            if ct is None:
                continue
            n_sl = tc.shape[0]
            if index is None:
                ct, t = ct.reshape(n_sl, -1), tc.reshape(n_sl, -1)
            else:  # the tiles' gradients summed per chunk voxel
                t = source[c0:c0 + n_sl]
                ct = torch.zeros_like(t).scatter_add_(
                    1, index[None].expand(n_sl, -1), ct.reshape(n_sl, -1))
            out = flat_grad[c0:c0 + n_sl]
            if mod.unknown_type == "real_imag":  # t = a + ib: (dL/da, dL/db) = (Re, Im) of gt
                r = torch.view_as_real(ct)
                out[..., 0].copy_(r[..., 0])
                torch.neg(r[..., 1], out=out[..., 1])
            else:
                # c = conj(gt) t; dL/da = sign k Im c, dL/db = -k Re c (b = kappa a:
                # dL/da = sign k Im c - kappa k Re c, dL/db = 0)
                c = torch.view_as_real(ct * t)
                if kappa is None:
                    torch.mul(c[..., 1], sign * k, out=out[..., 0])
                    torch.mul(c[..., 0], -k, out=out[..., 1])
                else:
                    torch.add(c[..., 1] * (sign * k), c[..., 0], alpha=-kappa * k,
                              out=out[..., 0])
                    out[..., 1].zero_()
        if not ctx.needs_input_grad[0]:
            g = None
        else:
            g = h.conj().resolve_conj()
            if g.shape != ctx.psi_shape:  # an incident wave broadcast over the tiles
                g = g.sum_to_size(ctx.psi_shape)
        return g, grad_obj, None, None, None, None, None
