"""Nonlinear conjugate gradient (Polak-Ribiere+) with a backtracking line search."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ._base import (Closure, Optimizer, check_array, check_counter, dot, open_unit_interval,
                    positive_float, positive_int)


def _at_least_one(name: str, value: Any) -> float:
    """Accept a finite real number >= 1."""
    value = positive_float(name, value)
    if value < 1.0:
        raise ValueError(f"option {name!r} must be >= 1, got {value!r}")
    return value


class CGOptimizer(Optimizer):
    """Nonlinear conjugate gradient, Polak-Ribiere+, Armijo backtracking.

    At each update, with ``g`` the gradient at ``x``::

        beta = max(0, g.(g - g_prev) / (g_prev.g_prev))     # 0 after a restart
        d = -g + beta d
        d = -g  if g.d >= 0                                 # not a descent direction

    then a line search along ``d``: ``alpha`` starts at the trial step kept
    in the state and is multiplied by ``shrink`` until
    ``f(x + alpha d) <= f(x) + c1 alpha g.d`` (at most ``max_line_search``
    trials).  The accepted step, times ``grow`` if it was accepted at the
    first trial, is the next initial trial.  If no trial is accepted, ``x``
    is left unchanged, the next trial step is the last one times ``shrink``
    and the next update restarts from steepest descent.

    ``closure(x_trial) -> (loss, grad)`` is called once at ``x`` (for the
    reference loss) and once per trial.  Dot products are accumulated in
    float64; the state is ``g_prev``, ``d`` (shaped like ``x``) and the 0-d
    arrays ``alpha`` (float64) and ``restart`` (bool), so that it can be
    checkpointed and restored exactly.  Not elementwise: apply to the
    whole parameter.

    Options
    -------
    step_size : float, default 1e-3
        Initial trial step.
    max_line_search : int, default 10
    shrink : float in (0, 1), default 0.5
    grow : float >= 1, default 2.0
    c1 : float in (0, 1), default 1e-4
        Armijo sufficient-decrease constant.
    """

    name: ClassVar[str] = "cg"
    elementwise: ClassVar[bool] = False
    needs_closure: ClassVar[bool] = True
    OPTIONS = {"step_size": (1e-3, positive_float), "max_line_search": (10, positive_int),
               "shrink": (0.5, open_unit_interval), "grow": (2.0, _at_least_one),
               "c1": (1e-4, open_unit_interval)}

    def init_state(self, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
        """``g_prev``, ``d`` (zeros), ``alpha`` = step_size, ``restart`` = True."""
        return {"g_prev": np.zeros(shape, dtype=dtype), "d": np.zeros(shape, dtype=dtype),
                "alpha": np.array(self.step_size, dtype=np.float64),
                "restart": np.array(True)}

    def state_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``g_prev``, ``d``: ``shape``; ``alpha``, ``restart``: ``()``."""
        return {"g_prev": tuple(shape), "d": tuple(shape), "alpha": (), "restart": ()}

    def step(self, x: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], i: int,
             closure: Closure | None = None) -> None:
        """One CG update of ``x`` in place (see class docstring)."""
        check_array("x", x)
        check_array("g", g, x.shape)
        check_counter(i)
        self.check_state(x, state)
        if closure is None:
            raise ValueError("CGOptimizer.step needs closure(x_trial) -> (loss, grad)")
        slope = self._update_direction(g, state)
        loss0 = _loss(closure, x)
        accepted = self._line_search(x, state, slope, loss0, closure)
        state["g_prev"][...] = g
        state["restart"][...] = not accepted

    def _update_direction(self, g: np.ndarray, state: dict[str, np.ndarray]) -> float:
        """Set ``state['d']`` to the new search direction; return the slope ``g.d``."""
        d, g_prev = state["d"], state["g_prev"]
        beta = 0.0
        if not bool(state["restart"]):
            gp_gp = dot(g_prev, g_prev)
            if gp_gp > 0:
                beta = max(0.0, (dot(g, g) - dot(g, g_prev)) / gp_gp)
        d *= d.dtype.type(beta)
        d -= g
        slope = dot(g, d)
        if not slope < 0:
            np.negative(g, out=d)
            slope = -dot(g, g)
        return slope

    def _line_search(self, x: np.ndarray, state: dict[str, np.ndarray], slope: float,
                     loss0: float, closure: Closure) -> bool:
        """Backtrack along ``state['d']``; move ``x`` and update ``alpha``; True if accepted."""
        if slope == 0.0:  # zero gradient: nothing to do
            return False
        d = state["d"]
        alpha = float(state["alpha"])
        trial = np.empty_like(x)
        for k in range(self.max_line_search):
            np.multiply(d, x.dtype.type(alpha), out=trial)
            trial += x
            if _loss(closure, trial) <= loss0 + self.c1 * alpha * slope:
                x[...] = trial
                state["alpha"][...] = alpha * self.grow if k == 0 else alpha
                return True
            alpha *= self.shrink
        state["alpha"][...] = alpha
        return False


def _loss(closure: Closure, x: np.ndarray) -> float:
    """Loss at ``x`` from ``closure``; NaN if the closure returns a non-finite loss."""
    result = closure(x)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(f"closure must return (loss, grad), got {type(result).__name__}")
    loss = float(result[0])
    return loss if np.isfinite(loss) else float("nan")
