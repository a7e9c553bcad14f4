"""Conversion of metadata holding NumPy values to plain JSON types."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["numpy_to_json"]

_PLAIN = (str, int, float, bool, type(None))


def numpy_to_json(obj: Any, *, where: str = "") -> Any:
    """Return ``obj`` with NumPy scalars and arrays turned into JSON-ready Python values.

    Mappings become dicts (keys must be strings or NumPy/Python integers, which become
    strings), tuples and lists become lists, ``ndarray`` becomes nested lists, NumPy scalars
    become Python scalars, paths become strings. Non-finite floats are kept (Python's
    ``json`` writes them as ``NaN``/``Infinity``).

    Parameters
    ----------
    obj : Any
        Value to convert.
    where : str
        Key path used in error messages (filled in by recursion).

    Raises
    ------
    TypeError
        For values with no JSON form (complex numbers, bytes, arbitrary objects); the
        message names the key path.
    """
    if isinstance(obj, np.ndarray):
        return numpy_to_json(obj.tolist(), where=where)
    if isinstance(obj, np.generic):
        return numpy_to_json(obj.item(), where=where)
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return {_key(k, where): numpy_to_json(v, where=f"{where}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [numpy_to_json(v, where=f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"metadata item {where or '<root>'!r}: {type(obj).__name__} value {obj!r:.80} "
        "has no JSON form (expected numbers, strings, booleans, lists, dicts or NumPy arrays)"
    )


def _key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return str(int(key))
    raise TypeError(f"metadata item {where or '<root>'!r}: key {key!r} is not a string")

