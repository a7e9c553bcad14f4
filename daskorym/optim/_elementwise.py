"""Elementwise optimizers: gradient descent, momentum, Adam.

Every element of ``x`` is updated from the same elements of ``g`` and of
the state arrays only, with scalars that depend on the update counter
``i`` alone.  Updating a whole array at once or any partition of it into
slabs (with the state sliced the same way) therefore gives bit-identical
results.  Arithmetic is done in ``x.dtype``, block by block over the first
axis, so scratch arrays stay small even when ``x`` is several GB.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ._base import (Closure, Optimizer, boolean, check_array, check_counter, positive_float,
                    positive_int, row_blocks, unit_interval)


class ElementwiseOptimizer(Optimizer):
    """Base of slab-safe optimizers: blocks the arrays and calls :meth:`_update`."""

    elementwise: ClassVar[bool] = True
    needs_closure: ClassVar[bool] = False
    STATE_KEYS: ClassVar[tuple[str, ...]] = ()

    def init_state(self, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
        """Zero arrays of ``shape`` and ``dtype``, one per name in ``STATE_KEYS``."""
        return {key: np.zeros(shape, dtype=dtype) for key in self.STATE_KEYS}

    def state_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``{key: shape}`` for each name in ``STATE_KEYS``."""
        return {key: tuple(shape) for key in self.STATE_KEYS}

    def step(self, x: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], i: int,
             closure: Closure | None = None) -> None:
        """Update ``x`` in place.

        Parameters
        ----------
        x : ndarray, float32 or float64
            Parameter (or one slab of it), updated in place.
        g : ndarray, shape of ``x``
            Gradient of the loss with respect to ``x``.
        state : dict of ndarray
            Optimizer state (sliced like ``x``), updated in place.
        i : int
            0-based update counter, the same for all slabs of one update.
        closure : ignored
            Accepted so that callers may treat all optimizers alike.
        """
        check_array("x", x)
        check_array("g", g, x.shape)
        i = check_counter(i)
        self.check_state(x, state)
        for sl in row_blocks(x.shape):
            self._update(x[sl], g[sl], {k: v[sl] for k, v in state.items()}, i)

    def _update(self, x: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray],
                i: int) -> None:
        raise NotImplementedError


def _halving(step_size: float, i: int, dynamic: bool, first: int) -> float:
    """``step_size / 2**k``: ``k = 0`` for ``i < first`` (or without ``dynamic``), else
    ``floor(log2(i / first)) + 1`` (halved at ``first``, ``2 first``, ``4 first``, ...);
    ``k`` computed exactly in integers."""
    i = check_counter(i)
    if not dynamic:
        return step_size
    # floor(log2(i/N)) + 1 == bit_length(i // N) for i >= N, and 0 for i < N.
    return step_size / 2.0 ** (i // first).bit_length()


class GDOptimizer(ElementwiseOptimizer):
    """Gradient descent ``x -= lr_i * g`` with an optional halving schedule.

    Options
    -------
    step_size : float, default 1e-3
        Initial step size.
    dynamic_rate : bool, default True
        Halve the step at update ``N = first_downrate_iteration`` and again
        at ``2N, 4N, 8N, ...``: ``lr_i = step_size / 2**k`` with ``k = 0``
        for ``i < N`` and ``k = floor(log2(i / N)) + 1`` otherwise.
    first_downrate_iteration : int, default 20
        ``N`` above.
    """

    name: ClassVar[str] = "gd"
    OPTIONS = {"step_size": (1e-3, positive_float),
               "dynamic_rate": (True, boolean),
               "first_downrate_iteration": (20, positive_int)}

    def step_size_at(self, i: int) -> float:
        """``step_size / 2**k`` (see class docstring)."""
        return _halving(self.step_size, i, self.dynamic_rate, self.first_downrate_iteration)

    def _update(self, x, g, state, i):
        lr = x.dtype.type(self.step_size_at(i))
        scratch = np.multiply(g, lr, out=np.empty_like(x))
        x -= scratch


class MomentumOptimizer(ElementwiseOptimizer):
    """Momentum: ``v = gamma v + step_size g; x -= v`` (state ``v``).

    Options
    -------
    step_size : float, default 1e-3
    gamma : float in [0, 1), default 0.9
    """

    name: ClassVar[str] = "momentum"
    STATE_KEYS = ("v",)
    OPTIONS = {"step_size": (1e-3, positive_float), "gamma": (0.9, unit_interval)}

    def _update(self, x, g, state, i):
        v = state["v"]
        v *= x.dtype.type(self.gamma)
        scratch = np.multiply(g, x.dtype.type(self.step_size), out=np.empty_like(x))
        v += scratch
        x -= v


class AdamOptimizer(ElementwiseOptimizer):
    """Adam with bias correction (Kingma & Ba 2014); state ``m``, ``v``.

    At update ``i`` (``t = i + 1``)::

        m = b1 m + (1 - b1) g
        v = b2 v + (1 - b2) g**2
        x -= step_size * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)

    Options
    -------
    step_size : float, default 1e-3
    b1 : float in [0, 1), default 0.9
    b2 : float in [0, 1), default 0.999
    eps : float > 0, default 1e-7
    dynamic_rate : bool, default False
        Halve ``step_size`` at update ``first_downrate_iteration`` and again at twice,
        four times, ... that count (the schedule of :class:`GDOptimizer`).  Adam's own
        step does not shrink when gradients stay noisy, so a run that has converged keeps
        moving every element by about ``step_size``; the schedule lets it settle.
    first_downrate_iteration : int, default 20
    """

    name: ClassVar[str] = "adam"
    STATE_KEYS = ("m", "v")
    OPTIONS = {"step_size": (1e-3, positive_float), "b1": (0.9, unit_interval),
               "b2": (0.999, unit_interval), "eps": (1e-7, positive_float),
               "dynamic_rate": (False, boolean),
               "first_downrate_iteration": (20, positive_int)}

    def step_size_at(self, i: int) -> float:
        """The step at update ``i`` (``step_size``, or halved, see ``dynamic_rate``)."""
        return _halving(self.step_size, i, self.dynamic_rate, self.first_downrate_iteration)

    def _update(self, x, g, state, i):
        arrays = (x, state["m"], state["v"])
        if all(a.flags.c_contiguous and a.flags.writeable and a.dtype == x.dtype
               and a.dtype in (np.float32, np.float64) for a in arrays):
            return self._update_fused(x, np.require(g, x.dtype, "C"), state, i)
        f = x.dtype.type
        t = i + 1
        m, v = state["m"], state["v"]
        scratch = np.multiply(g, f(1.0 - self.b1), out=np.empty_like(x))
        m *= f(self.b1)
        m += scratch
        np.multiply(g, g, out=scratch)
        scratch *= f(1.0 - self.b2)
        v *= f(self.b2)
        v += scratch
        # scratch <- step * mhat / (sqrt(vhat) + eps)
        np.divide(v, f(1.0 - self.b2 ** t), out=scratch)
        np.sqrt(scratch, out=scratch)
        scratch += f(self.eps)
        np.divide(m, scratch, out=scratch)
        scratch *= f(self.step_size_at(i) / (1.0 - self.b1 ** t))
        x -= scratch

    def _update_fused(self, x, g, state, i):
        """The same update in 7 passes over memory instead of 13 (torch's fused in-place
        kernels on the NumPy arrays' memory, no copies)."""
        import torch
        t = i + 1
        xt, gt = torch.from_numpy(x), torch.from_numpy(g)
        m, v = torch.from_numpy(state["m"]), torch.from_numpy(state["v"])
        m.mul_(self.b1).add_(gt, alpha=1.0 - self.b1)
        v.mul_(self.b2).addcmul_(gt, gt, value=1.0 - self.b2)
        denom = torch.sqrt(v).mul_(1.0 / np.sqrt(1.0 - self.b2 ** t)).add_(self.eps)
        xt.addcdiv_(m, denom, value=-self.step_size_at(i) / (1.0 - self.b1 ** t))
