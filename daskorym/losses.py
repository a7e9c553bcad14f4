"""Data-mismatch losses on predicted intensities and measured magnitudes.

Each loss returns the *sum* over tiles and pixels; the engine divides by
the number of pixels of the global minibatch, so the mean does not depend
on how tiles are split among workers.

Shapes: ``intensity [n, dy, dx]`` predicted ``sum_modes |psi|^2``;
``measured [n, dy, dx]`` measured magnitudes (square roots of intensities);
``mask [dy, dx]`` 1 for used pixels, 0 for ignored ones (beamstop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .backend import Backend

LOSSES: dict[str, type["Loss"]] = {}


def register_loss(cls):
    LOSSES[cls.name] = cls
    return cls


class Loss:
    """Base class: subclass, set ``name``, implement :meth:`pixelwise`, register."""

    name: ClassVar[str] = ""

    def pixelwise(self, be: Backend, intensity, measured):
        raise NotImplementedError

    def slope(self, be: Backend, intensity, measured):
        """``d pixelwise / d intensity`` (for the fused loss of waves; see
        :meth:`value_and_slope`)."""
        raise NotImplementedError

    def __call__(self, be: Backend, intensity, measured, mask=None):
        terms = self.pixelwise(be, intensity, measured)
        if mask is not None:
            terms = terms * mask
        return be.sum(terms)

    def value_and_slope(self, be: Backend, intensity, measured, mask=None):
        """``(loss sum, d loss / d intensity)`` on plain arrays (no gradient graph).

        Backends with a fused loss of complex waves (:meth:`Backend.wave_loss`) call this in
        their forward pass and need nothing else for the backward pass:
        ``d loss / d psi = 2 slope psi``.
        """
        terms = self.pixelwise(be, intensity, measured)
        slope = self.slope(be, intensity, measured)
        if mask is not None:
            terms, slope = terms * mask, slope * mask
        return be.sum(terms), slope

    def of_waves(self, be: Backend, psi, measured, mask=None):
        """Loss of complex detector waves ``psi [n, n_modes, dy, dx]``: this loss of their
        incoherent intensity ``sum_modes |psi|^2`` (fused where the backend can)."""
        return be.wave_loss(psi, measured, mask, self)


@register_loss
@dataclass(frozen=True)
class LSQLoss(Loss):
    """Amplitude least squares ``(sqrt(I_pred + eps) - |measured|)^2``.

    ``eps`` keeps the derivative of the square root finite where the
    predicted intensity vanishes.
    """

    name: ClassVar[str] = "lsq"
    eps: float = 1e-12

    def pixelwise(self, be, intensity, measured):
        return (be.sqrt(intensity + self.eps) - measured) ** 2

    def slope(self, be, intensity, measured):
        amp = be.sqrt(intensity + self.eps)
        return (amp - measured) / amp

    def value_and_slope(self, be, intensity, measured, mask=None):
        amp = be.sqrt(intensity + self.eps)
        diff = amp - measured
        weighted = diff if mask is None else diff * mask
        return be.dot(weighted, diff), weighted / amp


@register_loss
@dataclass(frozen=True)
class PoissonLoss(Loss):
    """Poisson negative log-likelihood ``m I_pred - m I_meas log(m I_pred + eps)``.

    ``multiplier`` (m) converts intensities to photon counts.
    """

    name: ClassVar[str] = "poisson"
    multiplier: float = 1.0
    eps: float = 1e-12

    def pixelwise(self, be, intensity, measured):
        m = self.multiplier
        return intensity * m - (measured ** 2) * m * be.log(intensity * m + self.eps)

    def slope(self, be, intensity, measured):
        m = self.multiplier
        return m - (measured ** 2) * (m * m) / (intensity * m + self.eps)


def get_loss(name: str, **options) -> Loss:
    try:
        return LOSSES[name](**options)
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None
