"""Wrapper of ``scipy.optimize.minimize`` for small, whole-parameter problems."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.optimize

from ._base import Closure, Optimizer, check_array, check_counter, positive_float, positive_int

#: Gradient-based methods of ``scipy.optimize.minimize`` that accept
#: ``options={'maxiter': ...}`` and need no Hessian (lower case).
SCIPY_METHODS = ("cg", "bfgs", "newton-cg", "l-bfgs-b", "slsqp", "trust-constr")


def _method(name: str, value: Any) -> str:
    """Accept one of :data:`SCIPY_METHODS` (any case)."""
    if not isinstance(value, str) or value.lower() not in SCIPY_METHODS:
        raise ValueError(f"option {name!r} must be one of {', '.join(SCIPY_METHODS)} "
                         f"(any case), got {value!r}")
    return value


def _solver_options(name: str, value: Any) -> dict[str, Any]:
    """Accept ``None`` or a JSON-serialisable dict of extra solver options."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"option {name!r} must be a dict or None, got {type(value).__name__}")
    if "maxiter" in value:
        raise ValueError(f"option {name!r} must not contain 'maxiter'; use the 'maxiter' option")
    try:
        json.dumps(dict(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"option {name!r} must be JSON-serialisable: {err}") from err
    return dict(value)


class ScipyOptimizer(Optimizer):
    """Run ``scipy.optimize.minimize`` for ``maxiter`` iterations per update.

    Each :meth:`step` minimises ``closure`` from ``x`` (flattened, in
    float64) with ``jac=True`` and writes the result back into ``x`` (cast
    to ``x.dtype``).  The closure receives trial points shaped like ``x``
    and of ``x.dtype``.  No persistent state; not elementwise.

    Options
    -------
    method : str, default 'L-BFGS-B'
        One of :data:`SCIPY_METHODS` (any case).
    maxiter : int, default 20
    options : dict, optional
        Extra solver options passed to ``minimize`` (e.g. ``{'gtol': 1e-8}``).
    step_size : float, default 1e-3
        Accepted so that all optimizers share one constructor; unused.
    """

    name: ClassVar[str] = "scipy"
    elementwise: ClassVar[bool] = False
    needs_closure: ClassVar[bool] = True
    OPTIONS = {"step_size": (1e-3, positive_float), "method": ("L-BFGS-B", _method),
               "maxiter": (20, positive_int), "options": (None, _solver_options)}

    def init_state(self, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
        """No state: ``{}``."""
        return {}

    def state_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """No state: ``{}``."""
        return {}

    def step(self, x: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], i: int,
             closure: Closure | None = None) -> None:
        """Minimise from ``x`` and write the result into ``x``; ``g`` is not used."""
        check_array("x", x)
        check_array("g", g, x.shape)
        check_counter(i)
        if closure is None:
            raise ValueError("ScipyOptimizer.step needs closure(x_trial) -> (loss, grad)")
        result = scipy.optimize.minimize(
            _flat_fun(closure, x.shape, x.dtype), x.astype(np.float64).ravel(), jac=True,
            method=self.method, options={"maxiter": self.maxiter, **self.options})
        x[...] = result.x.reshape(x.shape)


def _flat_fun(closure: Closure, shape: tuple[int, ...], dtype: np.dtype):
    """``z -> (loss, grad)`` on flat float64 vectors, from ``closure`` on arrays."""
    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = closure(z.reshape(shape).astype(dtype))
        grad = np.asarray(grad)
        if grad.shape != shape:
            raise ValueError(f"closure gradient must have shape {shape}, got {grad.shape}")
        return float(loss), grad.astype(np.float64).ravel()
    return fun
