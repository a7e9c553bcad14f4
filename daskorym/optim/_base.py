"""Optimizer base class: option validation, configuration, array checks.

Optimizers update NumPy arrays in place, outside any autodiff graph.  An
optimizer object holds only its (immutable) options; everything that
changes during a reconstruction lives in a *state* dict of NumPy arrays
(returned by :meth:`Optimizer.init_state`, stored by the caller in
checkpoints) plus the update counter ``i`` kept by the caller.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

#: ``closure(x_trial) -> (loss, grad)``: the loss (a float) and its gradient
#: (an array shaped like ``x_trial``) at a trial point.
Closure = Callable[[np.ndarray], "tuple[float, np.ndarray]"]

#: Validator of one option: ``(option name, value) -> normalised value``.
Validator = Callable[[str, Any], Any]

#: Largest number of elements processed at once by blocked loops, which
#: bounds the size of scratch arrays (4 Mi elements: 16 MB in float32).
BLOCK_ELEMENTS = 1 << 22

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------- validators

def positive_float(name: str, value: Any) -> float:
    """Accept a finite real number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {name!r} must be a positive number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"option {name!r} must be a finite number > 0, got {value!r}")
    return value


def unit_interval(name: str, value: Any) -> float:
    """Accept a real number in ``[0, 1)`` (decay rates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {name!r} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"option {name!r} must be in [0, 1), got {value!r}")
    return value


def open_unit_interval(name: str, value: Any) -> float:
    """Accept a real number in ``(0, 1)``."""
    value = unit_interval(name, value)
    if value == 0.0:
        raise ValueError(f"option {name!r} must be in (0, 1), got 0.0")
    return value


def positive_int(name: str, value: Any) -> int:
    """Accept an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"option {name!r} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"option {name!r} must be an integer >= 1, got {value!r}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """Accept ``True``/``False`` (also NumPy booleans)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"option {name!r} must be True or False, got {value!r}")
    return bool(value)


# ---------------------------------------------------------------- array checks

def check_array(name: str, a: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check that ``a`` is a float32/float64 NumPy array (of ``shape`` if given)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def check_counter(i: Any) -> int:
    """Check the update counter: an integer >= 0."""
    if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
        raise ValueError(f"update counter i must be an integer >= 0, got {i!r}")
    return int(i)


def row_blocks(shape: tuple[int, ...], max_elements: int = 0) -> Iterator[Any]:
    """Indices of blocks of the first axis, each of at most ``max_elements``.

    Every block holds at least one row; indexing with a block gives a view.
    A 0-d shape yields ``...`` once.  ``max_elements <= 0`` uses
    :data:`BLOCK_ELEMENTS`.
    """
    limit = max_elements if max_elements > 0 else BLOCK_ELEMENTS
    if len(shape) == 0:
        yield ...
        return
    row = int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, limit // max(row, 1))
    for start in range(0, shape[0], rows):
        yield slice(start, min(start + rows, shape[0]))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` accumulated in float64, block by block (no full-size copy)."""
    total = 0.0
    for sl in row_blocks(a.shape):
        ab, bb = a[sl], b[sl]
        total += float(np.dot(ab.reshape(-1).astype(np.float64, copy=False),
                              bb.reshape(-1).astype(np.float64, copy=False)))
    return total


# ---------------------------------------------------------------- base class

class Optimizer:
    """Base class of the optimizers.

    Parameters
    ----------
    param_name : str, optional
        Name of the refined quantity (``"obj"``, ``"probe"``, ...), kept as
        an attribute (Adorym-style first positional argument).
    step_size : float, optional
        Step size (learning rate); ``None`` takes the class default.
    options_dict : dict, optional
        Adorym-style options; its entries are merged with ``**options``.
    output_folder, distribution_mode : optional
        Accepted for Adorym compatibility and kept as attributes; unused.
    **options
        Algorithm options (see each subclass).  Unknown names raise
        ``TypeError``, bad values ``TypeError``/``ValueError``, naming the option.

    Notes
    -----
    Subclasses declare ``OPTIONS = {name: (default, validator)}`` (with a
    ``step_size`` entry) and implement :meth:`init_state` and :meth:`step`.
    Each validated option becomes an attribute; treat them as read-only.
    """

    name: ClassVar[str] = ""
    elementwise: ClassVar[bool] = False
    needs_closure: ClassVar[bool] = False
    OPTIONS: ClassVar[dict[str, tuple[Any, Validator]]] = {}

    def __init__(self, param_name: str | None = None, *, step_size: float | None = None,
                 options_dict: Mapping[str, Any] | None = None,
                 output_folder: str | os.PathLike | None = None,
                 distribution_mode: str | None = None, **options: Any) -> None:
        if param_name is not None and not isinstance(param_name, str):
            raise TypeError(f"param_name must be a string or None, got {param_name!r}")
        if distribution_mode is not None and not isinstance(distribution_mode, str):
            raise TypeError("distribution_mode must be a string or None, "
                            f"got {distribution_mode!r}")
        self.param_name = param_name
        self.output_folder = None if output_folder is None else os.fspath(output_folder)
        self.distribution_mode = distribution_mode
        merged = _merge_options(options_dict, options, step_size)
        for key, value in self._validate(merged).items():
            setattr(self, key, value)

    @classmethod
    def _validate(cls, given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(cls.OPTIONS))
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise TypeError(f"{cls.__name__} got unknown option(s) {names}; "
                            f"known options: {', '.join(sorted(cls.OPTIONS))}")
        out = {}
        for key, (default, validator) in cls.OPTIONS.items():
            out[key] = validator(key, given.get(key, default))
        return out

    # ------------------------------------------------------------ interface

    def init_state(self, shape: tuple[int, ...], dtype: Any) -> dict[str, np.ndarray]:
        """Fresh optimizer state for a parameter of ``shape`` and ``dtype``."""
        raise NotImplementedError

    def step(self, x: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], i: int,
             closure: Closure | None = None) -> None:
        """Update ``x`` in place from gradient ``g`` at update ``i`` (0-based)."""
        raise NotImplementedError

    def step_size_at(self, i: int) -> float:
        """Step size used at update ``i`` (constant unless the class has a schedule)."""
        check_counter(i)
        return self.step_size

    def config(self) -> dict[str, Any]:
        """JSON-serialisable ``{"name": ..., <options>}``; rebuild with ``from_config``."""
        cfg: dict[str, Any] = {"name": self.name}
        for key in ("param_name", "output_folder", "distribution_mode"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        for key in self.OPTIONS:
            value = getattr(self, key)
            cfg[key] = dict(value) if isinstance(value, dict) else value
        return cfg

    def state_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shape of each state array for a parameter of ``shape`` (allocates nothing)."""
        raise NotImplementedError

    def check_state(self, x: np.ndarray, state: Mapping[str, np.ndarray]) -> None:
        """Check that ``state`` has the keys of :meth:`init_state` with matching shapes."""
        expected = self.state_shapes(x.shape)
        missing = sorted(set(expected) - set(state))
        if missing:
            raise KeyError(f"{type(self).__name__} state lacks {missing}; has {sorted(state)}")
        for key, shape in expected.items():
            arr = state[key]
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                found = getattr(arr, "shape", type(arr).__name__)
                raise ValueError(f"state[{key!r}] must be an array of shape {shape}, got {found}")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.OPTIONS)
        prefix = f"{self.param_name!r}, " if self.param_name is not None else ""
        return f"{type(self).__name__}({prefix}{opts})"


def _merge_options(options_dict: Mapping[str, Any] | None, options: dict[str, Any],
                   step_size: float | None) -> dict[str, Any]:
    """Merge ``options_dict``, ``**options`` and ``step_size``; reject conflicts."""
    if options_dict is None:
        options_dict = {}
    if not isinstance(options_dict, Mapping):
        raise TypeError(f"options_dict must be a dict, got {type(options_dict).__name__}")
    merged = dict(options_dict)
    extra = dict(options)
    if step_size is not None:
        extra["step_size"] = step_size
    for key, value in extra.items():
        if key in merged and merged[key] != value:
            raise ValueError(f"option {key!r} given twice with different values: "
                             f"{merged[key]!r} in options_dict and {value!r} as a keyword")
        merged[key] = value
    return merged
