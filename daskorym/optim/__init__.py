"""Optimizers that update NumPy arrays in place, slab by slab.

- ``gd``: :class:`GDOptimizer`, elementwise, no state arrays.
- ``momentum``: :class:`MomentumOptimizer`, elementwise, state ``v``.
- ``adam``: :class:`AdamOptimizer`, elementwise, state ``m``, ``v``.
- ``cg``: :class:`CGOptimizer`, needs a closure, state ``g_prev``, ``d``,
  ``alpha``, ``restart``.
- ``scipy``: :class:`ScipyOptimizer`, needs a closure, no state arrays.

Usage::

    opt = get_optimizer("adam", step_size=1e-3)       # or AdamOptimizer("obj", step_size=1e-3)
    state = opt.init_state(obj.shape, obj.dtype)
    for i in range(n_updates):
        opt.step(obj, grad, state, i)                 # or per slab: obj[a:b], grad[a:b],
                                                      # {k: s[a:b] for k, s in state.items()}

A checkpoint stores ``opt.config()`` (JSON), the state arrays and ``i``;
``from_config`` plus the restored state continue the run bit for bit.
Elementwise optimizers give bit-identical results on the whole array and on
any partition of it into slabs along the first axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import Closure, Optimizer
from ._cg import CGOptimizer
from ._elementwise import AdamOptimizer, ElementwiseOptimizer, GDOptimizer, MomentumOptimizer
from ._scipy import SCIPY_METHODS, ScipyOptimizer

#: Optimizer classes by name.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (GDOptimizer, MomentumOptimizer, AdamOptimizer, CGOptimizer,
                              ScipyOptimizer)
}

# Short aliases: ``Adam(step_size=1e-3)``.
GD = GDOptimizer
Momentum = MomentumOptimizer
Adam = AdamOptimizer
CG = CGOptimizer
Scipy = ScipyOptimizer


def get_optimizer(name: str, **options: Any) -> Optimizer:
    """Create an optimizer by name.

    Parameters
    ----------
    name : str
        One of :data:`OPTIMIZERS` (``'gd'``, ``'momentum'``, ``'adam'``,
        ``'cg'``, ``'scipy'``), any case.
    **options
        Constructor arguments (``param_name``, ``step_size`` and the
        class's options).

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists the known names).
    """
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name.lower()](**options)


def from_config(cfg: Mapping[str, Any]) -> Optimizer:
    """Rebuild an optimizer from :meth:`Optimizer.config` output.

    Parameters
    ----------
    cfg : dict
        ``{"name": ..., **options}`` (as written by ``config()``).

    Returns
    -------
    Optimizer
    """
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError(f"optimizer config must be a dict with a 'name' key, got {cfg!r}")
    options = dict(cfg)
    return get_optimizer(options.pop("name"), **options)


__all__ = [
    "CG", "SCIPY_METHODS", "Adam", "AdamOptimizer", "CGOptimizer", "Closure",
    "ElementwiseOptimizer", "GD", "GDOptimizer", "Momentum", "MomentumOptimizer",
    "OPTIMIZERS", "Optimizer", "Scipy", "ScipyOptimizer", "from_config", "get_optimizer",
]
