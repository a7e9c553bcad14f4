"""The bad-input catalogue: each case runs the real ``daskorym reconstruct`` in a subprocess.

Every case must end with a non-zero exit and one ``error: ...`` line that names the file, the
item and what was expected; no traceback; fast (before any heavy work: no ``loss.csv``,
nothing new in the output folder); and the files already in the output folder byte-identical.

A case is ``(id, make, expected substrings)``: ``make(case_dir)`` changes what the case
needs under ``case_dir`` (which starts as a copy of the good ``run.toml`` and ``data.h5``,
with ``out/`` holding earlier files) and returns the extra command-line arguments. The
substrings may use ``{dir}`` for ``case_dir``; they must all be in the one error line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from daskorym.io import write_dataset

DASKORYM = Path(sys.executable).parent / "daskorym"
DET = (8, 8)
OBJ = (16, 16, 1)
POS = np.array([(y, x) for y in (0, 4, 8) for x in (0, 4, 8)], np.float64)  # 9 tiles in 16x16
N_TILES = len(POS)
MAX_SECONDS = 30.0

GOOD_TOML = """\
[dataset]
path = "data.h5"

[object]
shape = [16, 16, 1]

[model]
unknown_type = "real_imag"

[optimization]
n_epochs = 1
minibatch_size = 3

[output]
folder = "out"
progress = false
preview_every_epochs = 1000
preview_every_minutes = 1000
"""

# files an earlier run (or the user) left in the output folder; none of them marks the
# folder as holding results, so every check after the output folder's is reached too
EARLIER_FILES = {"notes.txt": b"beamtime 42, sample A\n", "probe.npy": None,
                 "obj_mag_ds_1.tiff": bytes(range(256)) * 8}


def _magnitudes(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, (1, N_TILES, *DET)).astype(np.float32)


def _good_items() -> dict[str, object]:
    return {"exchange/data": _magnitudes(), "metadata/energy_ev": 5000.0,
            "metadata/psize_cm": 1e-7, "metadata/free_prop_cm": "inf",
            "metadata/probe_pos_px": POS, "metadata/theta": np.zeros(1)}


def _h5(path: Path, drop: tuple[str, ...] = (), **replace: object) -> None:
    """An HDF5 file in Adorym's layout written with h5py (no validation), with items left out
    or replaced (``replace`` keys use ``__`` for ``/``)."""
    items = _good_items()
    items.update({k.replace("__", "/"): v for k, v in replace.items()})
    path.unlink(missing_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in items.items():
            if name in drop:
                continue
            if isinstance(value, str):
                f.create_dataset(name, data=value, dtype=h5py.string_dtype("utf-8"))
            else:
                f.create_dataset(name, data=value)


def _toml(case: Path, text: str) -> None:
    (case / "run.toml").write_text(text)


def _edit_toml(case: Path, old: str, new: str) -> None:
    text = (case / "run.toml").read_text()
    assert old in text, old
    _toml(case, text.replace(old, new))


def _data(**replace: object) -> Callable[[Path], list[str]]:
    def make(case: Path) -> list[str]:
        _h5(case / "data.h5", **replace)
        return []
    return make


def _drop(*items: str) -> Callable[[Path], list[str]]:
    def make(case: Path) -> list[str]:
        _h5(case / "data.h5", drop=items)
        return []
    return make


def _setting(old: str, new: str, *args: str) -> Callable[[Path], list[str]]:
    def make(case: Path) -> list[str]:
        _edit_toml(case, old, new)
        return list(args)
    return make


def _args(*args: str) -> Callable[[Path], list[str]]:
    return lambda case: list(args)


def _with_nan(case: Path) -> list[str]:
    data = _magnitudes()
    data[0, 4, 2, 3] = np.nan
    _h5(case / "data.h5", exchange__data=data)
    return []


def _with_inf(case: Path) -> list[str]:
    data = _magnitudes()
    data[0, 7, 0, 0] = np.inf
    _h5(case / "data.h5", exchange__data=data)
    return []


def _negative(case: Path) -> list[str]:
    data = _magnitudes()
    data[0, 1, 1, 1] = -0.25
    _h5(case / "data.h5", exchange__data=data)
    _edit_toml(case, 'path = "data.h5"', 'path = "data.h5"\nraw_data_type = "intensity"')
    return []


def _data_group(case: Path) -> list[str]:
    _h5(case / "data.h5", drop=("exchange/data",))
    with h5py.File(case / "data.h5", "a") as f:
        f.create_group("exchange/data")
    return []


def _h5_unwritten_chunks(case: Path) -> list[str]:
    """A chunked data array of which two tiles were never written (they read as zeros)."""
    _h5(case / "data.h5", drop=("exchange/data",))
    with h5py.File(case / "data.h5", "a") as f:
        data = f.create_dataset("exchange/data", (1, N_TILES, *DET), np.float32,
                                chunks=(1, 1, *DET))
        data[0, :4] = _magnitudes()[0, :4]
        data[0, 6:] = _magnitudes()[0, 6:]
    return []


def _truncated(case: Path) -> list[str]:
    good = (case / "data.h5").read_bytes()
    (case / "data.h5").write_bytes(good[: len(good) // 2])
    return []


def _not_hdf5(case: Path) -> list[str]:
    (case / "data.h5").write_text("energy,psize\n5000,1e-7\n")
    return []


def _zarr(case: Path) -> Path:
    path = case / "data.zarr"
    write_dataset(path, _magnitudes(), probe_pos_px=POS, energy_ev=5000.0, psize_cm=1e-7,
                  free_prop_cm="inf")
    _edit_toml(case, 'path = "data.h5"', 'path = "data.zarr"')
    return path


def _zarr_missing_chunk(case: Path) -> list[str]:
    chunk = _zarr(case) / "exchange" / "data" / "c" / "0" / "5" / "0" / "0"
    assert chunk.is_file(), chunk
    chunk.unlink()
    return []


def _zarr_without_metadata(case: Path) -> list[str]:
    (_zarr(case) / "zarr.json").unlink()
    return []


def _zarr_corrupt_chunk(case: Path) -> list[str]:
    chunk = _zarr(case) / "exchange" / "data" / "c" / "0" / "2" / "0" / "0"
    chunk.write_bytes(b"\x00garbage" * 3)
    return []


def _output_under_file(case: Path) -> list[str]:
    return ["--output", str(case / "out" / "notes.txt" / "run2")]


def _output_is_file(case: Path) -> list[str]:
    return ["--output", str(case / "out" / "notes.txt")]


def _config_dir(case: Path) -> list[str]:
    (case / "run.toml").unlink()
    (case / "run.toml").mkdir()
    return []


def _config_binary(case: Path) -> list[str]:
    (case / "run.toml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(200)))
    return []


def _other_run(case: Path) -> list[str]:
    return []  # the output folder holds a finished run: see ``existing`` below


@dataclass
class Case:
    id: str
    make: Callable[[Path], list[str]]
    expected: tuple[str, ...]
    existing: str = "earlier"  # "earlier": EARLIER_FILES; "run": a finished run's outputs


CASES = [
    # -- datasets ---------------------------------------------------------------------------
    Case("data-missing", _drop("exchange/data"),
         ("{dir}/data.h5", "exchange/data", "missing", "expected [n_theta, n_tiles")),
    Case("data-not-an-array", _data_group,
         ("{dir}/data.h5", "exchange/data", "expected an array")),
    Case("metadata-group-missing",
         _drop("metadata/energy_ev", "metadata/psize_cm", "metadata/free_prop_cm",
               "metadata/probe_pos_px", "metadata/theta"),
         ("{dir}/data.h5", "metadata/energy_ev", "missing", "photon energy in eV")),
    Case("energy-missing", _drop("metadata/energy_ev"),
         ("{dir}/data.h5", "metadata/energy_ev", "missing", "photon energy")),
    Case("positions-missing", _drop("metadata/probe_pos_px"),
         ("{dir}/data.h5", "metadata/probe_pos_px", "missing", "positions [n_tiles, 2]")),
    Case("data-3d", _data(exchange__data=_magnitudes()[0]),
         ("{dir}/data.h5", "exchange/data", "expected a 4D array", "3D shape")),
    Case("data-empty", _data(exchange__data=np.zeros((1, 0, *DET), np.float32)),
         ("{dir}/data.h5", "exchange/data", "empty", "zero-length axis")),
    Case("data-nan", _with_nan, ("{dir}/data.h5", "exchange/data", "1 NaN values")),
    Case("data-inf", _with_inf, ("{dir}/data.h5", "exchange/data", "1 inf values")),
    Case("data-negative-intensity", _negative,
         ("{dir}/data.h5", "exchange/data", "1 negative values", "data must be >= 0")),
    Case("hdf5-unwritten-chunks", _h5_unwritten_chunks,
         ("{dir}/data.h5", "exchange/data", "2 of 9 chunks are missing", "offset [0, 4, 0, 0]")),
    Case("positions-wrong-shape", _data(metadata__probe_pos_px=np.zeros((N_TILES, 3))),
         ("{dir}/data.h5", "metadata/probe_pos_px", "expected [n_tiles, 2]", "(9, 3)")),
    Case("positions-count", _data(metadata__probe_pos_px=POS[:5]),
         ("{dir}/data.h5", "metadata/probe_pos_px", "expected 9 positions", "found 5")),
    Case("positions-nan", _data(metadata__probe_pos_px=np.where(POS == 4, np.nan, POS)),
         ("{dir}/data.h5", "metadata/probe_pos_px", "expected finite positions")),
    Case("positions-outside-object", _data(metadata__probe_pos_px=POS + [0, 40]),
         ("{dir}/data.h5", "metadata/probe_pos_px", "outside the object [16, 16]")),
    Case("theta-count", _data(metadata__theta=np.zeros(3)),
         ("{dir}/data.h5", "metadata/theta", "expected 1 angles", "(3,)")),
    Case("energy-inf", _data(metadata__energy_ev=np.inf),
         ("{dir}/data.h5", "metadata/energy_ev", "expected a finite number > 0", "inf")),
    Case("energy-nan", _data(metadata__energy_ev=np.nan),
         ("{dir}/data.h5", "metadata/energy_ev", "expected a finite number > 0", "nan")),
    Case("psize-negative", _data(metadata__psize_cm=-1e-7),
         ("{dir}/data.h5", "metadata/psize_cm", "expected a finite number > 0")),
    Case("free-prop-text", _data(metadata__free_prop_cm="far"),
         ("{dir}/data.h5", "metadata/free_prop_cm", "expected 'inf'", "'far'")),
    Case("hdf5-truncated", _truncated,
         ("{dir}/data.h5", "cannot open HDF5 file", "truncated or corrupt")),
    Case("not-hdf5", _not_hdf5, ("{dir}/data.h5", "not an HDF5 file or Zarr store")),
    Case("dataset-file-missing", _setting('path = "data.h5"', 'path = "nothere.h5"'),
         ("{dir}/nothere.h5", "dataset", "does not exist", "expected an HDF5 file or a Zarr")),
    Case("zarr-missing-chunk", _zarr_missing_chunk,
         ("{dir}/data.zarr", "exchange/data", "1 of 9 chunks are missing",
          "c/0/5/0/0", "Expected every chunk present")),
    Case("zarr-corrupt-chunk", _zarr_corrupt_chunk,
         ("{dir}/data.zarr", "exchange/data", "cannot read angle 0", "decompression")),
    Case("zarr-without-zarr-json", _zarr_without_metadata,
         ("{dir}/data.zarr", "not an HDF5 file or Zarr store", "without zarr.json")),
    # -- settings ---------------------------------------------------------------------------
    Case("unknown-key", _setting("n_epochs = 1", "n_epoch = 1"),
         ("{dir}/run.toml", "optimization", "unknown setting 'n_epoch'", "did you mean 'n_epochs'")),
    Case("unknown-section", _setting("[optimization]", "[optimisation]"),
         ("{dir}/run.toml", "unknown setting 'optimisation'", "did you mean 'optimization'")),
    Case("wrong-type", _setting("n_epochs = 1", 'n_epochs = "ten"'),
         ("{dir}/run.toml", "optimization.n_epochs", "valid integer", "'ten'")),
    Case("wrong-type-table", _setting('path = "data.h5"\n', 'path = "data.h5"\ncache_mb = [1]\n'),
         ("{dir}/run.toml", "dataset.cache_mb", "valid number")),
    Case("wrong-choice", _setting("[output]", '[execution]\nengine = "spark"\n\n[output]'),
         ("{dir}/run.toml", "execution.engine", "'local', 'dask' or 'mpi'", "'spark'")),
    Case("object-size-zero", _setting("shape = [16, 16, 1]", "shape = [0, 16, 1]"),
         ("{dir}/run.toml", "object.shape", "must be positive")),
    Case("object-shape-2d", _setting("shape = [16, 16, 1]", "shape = [16, 16]"),
         ("{dir}/run.toml", "object.shape", "3 sizes (Ly, Lx, Lz)", "got 2")),
    Case("epochs-zero", _args("--epochs", "0"),
         ("{dir}/run.toml", "optimization.n_epochs", "greater than or equal to 1")),
    Case("minibatch-zero", _setting("minibatch_size = 3", "minibatch_size = 0"),
         ("{dir}/run.toml", "optimization.minibatch_size", "greater than or equal to 1")),
    Case("energy-override-inf", _setting("[object]", "[geometry]\nenergy_ev = inf\n\n[object]"),
         ("{dir}/run.toml", "geometry.energy_ev", "finite number", "inf")),
    Case("distance-override-negative",
         _setting("[object]", "[geometry]\nfree_prop_cm = [1.0, -2.0]\n\n[object]"),
         ("{dir}/run.toml", "geometry.free_prop_cm", "distances > 0 in cm", "-2.0")),
    Case("probe-larger-than-object", _setting("shape = [16, 16, 1]", "shape = [4, 4, 1]"),
         ("{dir}/data.h5", "exchange/data", "probe larger than the object", "(8, 8)")),
    Case("minibatch-larger-than-data", _setting("minibatch_size = 3", "minibatch_size = 100"),
         ("{dir}/data.h5", "optimization.minibatch_size = 100", "larger than the 9 tiles")),
    Case("dataset-setting-missing", _setting('[dataset]\npath = "data.h5"\n', ""),
         ("{dir}/run.toml", "dataset: Field required")),
    Case("output-under-a-file", _output_under_file,
         ("{dir}/out/notes.txt/run2", "cannot create output folder", "Not a directory")),
    Case("output-is-a-file", _output_is_file,
         ("{dir}/out/notes.txt", "output folder", "not a directory")),
    Case("output-of-another-run", _other_run,
         ("{dir}/out", "already holds results", "--resume"), existing="run"),
    Case("resume-without-checkpoint", _args("--resume"),
         ("{dir}/out", "checkpoint", "nothing to resume")),
    Case("set-without-value", _args("--set", "optimization.n_epochs"),
         ("--set", "key=value", "'optimization.n_epochs'")),
    # -- configs ----------------------------------------------------------------------------
    Case("toml-syntax", _setting("n_epochs = 1", "n_epochs = "),
         ("{dir}/run.toml", "TOML syntax error", "line 11")),
    Case("toml-unclosed-string", _setting('folder = "out"', 'folder = "out'),
         ("{dir}/run.toml", "TOML syntax error", "line 15")),
    Case("toml-duplicate-key", _setting("n_epochs = 1", "n_epochs = 1\nn_epochs = 2"),
         ("{dir}/run.toml", "TOML syntax error", "Cannot overwrite a value", "line 12")),
    Case("config-missing", _args("--set", "x=1"), ("{dir}/nothere.toml", "config file not found")),
    Case("config-is-a-directory", _config_dir,
         ("{dir}/run.toml", "cannot read config file", "TOML text file", "Is a directory")),
    Case("config-not-text", _config_binary,
         ("{dir}/run.toml", "cannot read config file", "UTF-8", "can't decode byte 0x89")),
]


def _hashes(folder: Path) -> dict[str, str]:
    """Every file and directory under ``folder`` with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def _reconstruct(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(DASKORYM), "reconstruct", str(config), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A good case: ``run.toml``, ``data.h5`` and ``finished/`` (the outputs of a real run)."""
    base = tmp_path_factory.mktemp("good")
    _h5(base / "data.h5")
    _toml(base, GOOD_TOML)
    np.save(base / "probe.npy", np.ones((1, *DET), np.complex64))
    done = _reconstruct(base / "run.toml", "--output", str(base / "finished"), cwd=base)
    assert done.returncode == 0, done.stderr
    assert (base / "finished" / "loss.csv").is_file()
    return base


def test_good_case_runs(good: Path) -> None:
    """The starting point of every case is itself valid (a real run finished in ``good``)."""
    assert {"object.zarr", "checkpoint", "settings.json"} <= {p.name for p in
                                                             (good / "finished").iterdir()}


@dataclass
class Run:
    dir: Path
    done: subprocess.CompletedProcess
    seconds: float
    before: dict[str, str]
    after: dict[str, str]


def _prepare_case(case: Case, good: Path, case_dir: Path) -> tuple[Path, list[str], dict]:
    """Set up ``case_dir`` as the case says; (config, CLI arguments, hashes of the output
    folder before the run)."""
    case_dir.mkdir()
    shutil.copy(good / "run.toml", case_dir / "run.toml")
    shutil.copy(good / "data.h5", case_dir / "data.h5")
    out = case_dir / "out"
    if case.existing == "run":
        shutil.copytree(good / "finished", out)
    else:
        out.mkdir()
        for name, content in EARLIER_FILES.items():
            (out / name).write_bytes(content if content is not None
                                     else (good / "probe.npy").read_bytes())
    args = case.make(case_dir)
    config = case_dir / ("nothere.toml" if case.id == "config-missing" else "run.toml")
    return config, args, _hashes(out)


def _run_case(case_dir: Path, config: Path, args: list[str], before: dict) -> Run:
    """Run the CLI in a prepared case folder, hash the output folder after it."""
    t0 = time.monotonic()
    done = _reconstruct(config, *args, cwd=case_dir)
    return Run(case_dir, done, time.monotonic() - t0, before, _hashes(case_dir / "out"))


@pytest.fixture(scope="module")
def runs(good: Path, tmp_path_factory) -> dict[str, Run]:
    """Every case, run two at a time (each is a fresh process; most of its time is start-up).
    The folders are prepared first, in this thread: an HDF5 file opened by one thread while
    another starts a process can be left locked for a moment (HDF5 locks the file and the
    new process inherits the descriptor until it execs)."""
    root = tmp_path_factory.mktemp("cases")
    prepared = [(root / c.id, *_prepare_case(c, good, root / c.id)) for c in CASES]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda p: _run_case(*p), prepared)
        return {case.id: run for case, run in zip(CASES, results)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, runs: dict[str, Run]) -> None:
    run = runs[case.id]
    stderr = run.done.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    print(f"{case.id}: exit {run.done.returncode} in {run.seconds:.1f} s: {stderr.strip()}")
    assert run.done.returncode != 0
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1, stderr
    for expected in case.expected:
        assert expected.format(dir=run.dir) in errors[0], (expected, errors[0])
    assert run.seconds < MAX_SECONDS
    assert run.after == run.before  # byte-identical, and nothing added (no loss.csv)
    assert case.existing == "run" or not (run.dir / "out" / "loss.csv").exists()
    assert not (run.dir / "out" / "notes.txt" / "run2").exists()
