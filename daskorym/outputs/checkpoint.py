"""Checkpoints: ``<folder>/checkpoint/`` holding ``.npy`` arrays and ``checkpoint.json``.

Layout::

    checkpoint/
        checkpoint.json        format, version, the caller's meta, and a manifest
        obj.npy                one file per array; a name 'opt/obj/m' is stored
        opt/obj/m.npy          as nested directories

``checkpoint.json`` holds the caller's metadata (epoch, batch, i_update, RNG state,
settings hash, ...) and, under ``"arrays"``, each array's file, shape, dtype and sha256.
The whole directory is built beside the old one and renamed into place only when complete,
so the previous checkpoint stays valid until then; temporaries left by a killed writer are
removed by the next :func:`save_checkpoint`. No pickle is used anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .atomic import atomic_dir, restore_interrupted
from .errors import CheckpointError
from .jsonify import numpy_to_json

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_JSON",
    "load_checkpoint",
    "rng_from_state",
    "rng_state",
    "save_checkpoint",
    "settings_hash",
]

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_JSON = "checkpoint.json"
FORMAT = "daskorym-checkpoint"
VERSION = 1
REQUIRED_META = ("epoch", "batch")
_RESERVED = ("format", "version", "arrays")
_COMPONENT = re.compile(r"[A-Za-z0-9_\-]+")
_BLOCK = 8 * 2**20
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


class _HashingWriter:
    """File wrapper that feeds every written block to sha256 (np.save writes in chunks)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._handle.write(data)


def _array_file(name: str) -> str:
    """Relative file for array ``name`` ('opt/obj/m' -> 'opt/obj/m.npy')."""
    parts = name.split("/") if isinstance(name, str) else [None]
    if not all(isinstance(p, str) and _COMPONENT.fullmatch(p) for p in parts):
        raise ValueError(
            f"checkpoint array name {name!r}: use '/'-separated parts of letters, digits, "
            "'_' and '-'"
        )
    return name + ".npy"


def _write_array(directory: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
    """Save ``arr`` under ``directory`` and return its manifest entry."""
    relative = _array_file(name)
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as handle:
        writer = _HashingWriter(handle)
        np.save(writer, arr, allow_pickle=False)  # type: ignore[arg-type]
    return {
        "file": relative,
        "shape": list(arr.shape),
        "dtype": arr.dtype.str,
        "sha256": writer.sha256.hexdigest(),
    }


def _check_inputs(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Validate everything before touching the disk; return the meta as JSON values."""
    for name, arr in arrays.items():
        _array_file(name)
        if not isinstance(arr, np.ndarray) or arr.dtype.hasobject:
            raise TypeError(
                f"checkpoint array {name!r} must be a NumPy array of a non-object dtype, "
                f"got {type(arr).__name__}"
            )
    missing = [key for key in REQUIRED_META if key not in meta]
    reserved = [key for key in _RESERVED if key in meta]
    if missing or reserved:
        raise ValueError(
            f"checkpoint meta must hold {list(REQUIRED_META)} and not {list(_RESERVED)}; "
            f"missing {missing}, reserved {reserved}"
        )
    return numpy_to_json(dict(meta))


def save_checkpoint(
    folder: str | os.PathLike[str],
    *,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> Path:
    """Write ``<folder>/checkpoint/`` atomically, replacing the previous checkpoint.

    Parameters
    ----------
    folder : path-like
        The output folder (must exist).
    arrays : mapping of str to ndarray
        Arrays to keep, e.g. ``{"obj": [Ly, Lx, Lz, 2] float32, "opt/obj/m": ...}``. Names
        are '/'-separated parts of letters, digits, '_' and '-'. Each array is streamed to
        its ``.npy`` file in blocks (no whole-array copy).
    meta : mapping
        JSON-able metadata (NumPy values are converted); must hold ``epoch`` and ``batch``,
        typically also ``i_update``, ``rng`` (see :func:`rng_state`) and ``settings_hash``.

    Returns
    -------
    path : Path
        The checkpoint directory.
    """
    meta_json = _check_inputs(arrays, meta)
    target = Path(folder) / CHECKPOINT_DIR
    with atomic_dir(target) as tmp:
        manifest = {name: _write_array(tmp, name, arr) for name, arr in arrays.items()}
        document = {"format": FORMAT, "version": VERSION, **meta_json, "arrays": manifest}
        (tmp / CHECKPOINT_JSON).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return target


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint manifest is missing (no complete checkpoint)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint manifest ({err})") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a daskorym checkpoint (format {FORMAT!r} expected)")
    if document.get("version") != VERSION or not isinstance(document.get("arrays"), dict):
        raise CheckpointError(
            f"{path}: checkpoint version {document.get('version')!r} is not supported "
            f"(expected {VERSION} with an 'arrays' manifest)"
        )
    return document


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _load_array(directory: Path, name: str, entry: Any, mmap: bool) -> np.ndarray:
    """Load one array and check it against its manifest entry."""
    try:
        path = directory / _array_file(name)
        expected = (entry["sha256"], tuple(entry["shape"]), entry["dtype"])
    except (ValueError, TypeError, KeyError) as err:
        manifest = directory / CHECKPOINT_JSON
        raise CheckpointError(f"{manifest}: bad entry for array {name!r} ({err})") from err
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint array {name!r} is missing")
    if _sha256(path) != expected[0]:
        raise CheckpointError(f"{path}: checksum mismatch, checkpoint array {name!r} is corrupt")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read checkpoint array {name!r} ({err})") from err
    if (arr.shape, arr.dtype.str) != expected[1:]:
        raise CheckpointError(
            f"{path}: checkpoint array {name!r} has shape {arr.shape} dtype {arr.dtype.str}, "
            f"manifest says {expected[1]} {expected[2]}"
        )
    return arr


def load_checkpoint(
    folder: str | os.PathLike[str], *, mmap: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify ``<folder>/checkpoint/``.

    Parameters
    ----------
    folder : path-like
        The output folder.
    mmap : bool
        Memory-map the arrays read-only instead of reading them into memory.

    Returns
    -------
    arrays : dict of str to ndarray
        The saved arrays under their original names, with their shapes and dtypes.
    meta : dict
        The caller's metadata as saved (after JSON conversion), without the manifest.

    A checkpoint left moved aside by a save killed between its two renames is put back
    first (see :func:`daskorym.outputs.atomic.restore_interrupted`).

    Raises
    ------
    CheckpointError
        If the manifest or an array file is missing, unreadable, fails its sha256 check,
        or does not match the recorded shape and dtype; the message names the file.
    """
    directory = Path(folder) / CHECKPOINT_DIR
    restore_interrupted(directory)
    document = _read_manifest(directory / CHECKPOINT_JSON)
    arrays = {
        name: _load_array(directory, name, entry, mmap)
        for name, entry in document["arrays"].items()
    }
    meta = {key: value for key, value in document.items() if key not in _RESERVED}
    return arrays, meta


def rng_state(generator: np.random.Generator) -> dict[str, Any]:
    """The state of a NumPy ``Generator`` as JSON values, for checkpoint meta."""
    return numpy_to_json(generator.bit_generator.state)


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Rebuild the ``Generator`` saved by :func:`rng_state`."""
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(
            f"RNG state names bit generator {name!r}; expected one of {_BIT_GENERATORS}"
        )
    bit_generator = getattr(np.random, name)()
    state = dict(state)
    if name == "MT19937":
        state["state"] = {**state["state"], "key": np.asarray(state["state"]["key"], np.uint32)}
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """sha256 of the settings as canonical JSON (sorted keys), to detect a changed setup."""
    text = json.dumps(numpy_to_json(dict(settings)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
