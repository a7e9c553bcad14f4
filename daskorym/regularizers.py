"""Regularizers on the object, and the finite-support constraint.

Regularizers are callables ``r(be, obj) -> scalar`` on an object (or chunk)
``[Ly, Lx, Lz, 2]``; the engine adds them to the data loss.  Users add
their own by subclassing :class:`Regularizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter

from .backend import Backend


class Regularizer:
    name: ClassVar[str] = ""

    def __call__(self, be: Backend, obj, unknown_type: str = "delta_beta"):
        raise NotImplementedError


def _channels(be: Backend, obj, unknown_type: str):
    """The two regularised maps: (delta, beta), or (|o| - mean |o|, phase) for real_imag."""
    if unknown_type == "real_imag":
        z = be.complex(obj[..., 0], obj[..., 1])
        mag = be.abs(z)
        phase = be.arctan2(obj[..., 1], obj[..., 0])
        return mag - be.mean(mag), phase
    return obj[..., 0], obj[..., 1]


@dataclass
class L1Regularizer(Regularizer):
    """``alpha_d mean|c0| + alpha_b mean|c1|`` (c = delta, beta or centred magnitude, phase)."""

    name: ClassVar[str] = "l1"
    alpha_d: float = 0.0
    alpha_b: float = 0.0
    weight: np.ndarray | None = field(default=None, repr=False)

    def __call__(self, be, obj, unknown_type="delta_beta"):
        c0, c1 = _channels(be, obj, unknown_type)
        w = 1.0 if self.weight is None else be.asarray(self.weight)
        return self.alpha_d * be.mean(be.abs(c0) * w) + self.alpha_b * be.mean(be.abs(c1) * w)


@dataclass
class ReweightedL1Regularizer(L1Regularizer):
    """L1 with weights ``max|o| / (|o| + 1e-4 mean|o|)``, refreshed by :meth:`update_weight`."""

    name: ClassVar[str] = "reweighted_l1"

    def update_weight(self, obj: np.ndarray) -> None:
        a = np.abs(np.asarray(obj[..., 0], np.float64))
        self.weight = (a.max() / (a + 1e-4 * a.mean() + 1e-30)).astype(np.float32)


@dataclass
class TVRegularizer(Regularizer):
    """Anisotropic total variation ``gamma * sum_axes sum |a[i+1] - a[i]| / N`` of both channels.

    Forward differences without wrap-around (Adorym's ``roll`` also linked
    opposite faces of the volume).
    """

    name: ClassVar[str] = "tv"
    gamma: float = 0.0

    def __call__(self, be, obj, unknown_type="delta_beta"):
        c0, c1 = _channels(be, obj, unknown_type)
        total = 0.0
        for c in (c0, c1):
            n = int(np.prod(c.shape))
            for ax in range(len(c.shape)):
                if c.shape[ax] < 2:
                    continue
                hi = [slice(None)] * len(c.shape)
                lo = [slice(None)] * len(c.shape)
                hi[ax], lo[ax] = slice(1, None), slice(None, -1)
                total = total + be.sum(be.abs(c[tuple(hi)] - c[tuple(lo)])) / n
        return self.gamma * total


@dataclass
class SupportMask:
    """Finite support ``[Ly, Lx, Lz]`` (True inside), with optional shrink-wrap.

    Outside the support the object is set to vacuum.  ``shrink_wrap``
    recomputes the support as ``gaussian(|o - vacuum|, sigma) > threshold``, the distance of
    each voxel's two channels from the vacuum value (``(0, 0)`` for delta/beta, ``(1, 0)``
    for real/imaginary parts).
    """

    mask: np.ndarray
    threshold: float = 1e-9
    sigma_px: float = 1.0

    def apply(self, obj: np.ndarray, vacuum: tuple[float, float] = (0.0, 0.0)) -> None:
        """Set the voxels outside the support to ``vacuum`` in place."""
        obj[~self.mask] = np.asarray(vacuum, obj.dtype)

    def shrink_wrap(self, obj: np.ndarray, vacuum: tuple[float, float] = (0.0, 0.0)) -> None:
        """Recompute the support from the current object's contrast against ``vacuum``."""
        o = np.asarray(obj, np.float64)
        contrast = np.hypot(o[..., 0] - vacuum[0], o[..., 1] - vacuum[1])
        blurred = gaussian_filter(contrast, self.sigma_px)
        self.mask = blurred > self.threshold
