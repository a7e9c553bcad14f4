"""Crash safety with real processes: SIGKILL of ``daskorym reconstruct`` then ``--resume``;
SIGKILL of a process while it writes checkpoints and outputs; a disk filling up (tmpfs).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from conftest import write_run_toml
from daskorym.outputs import DiskFullError, OutputFolder, load_checkpoint, read_loss

DASKORYM = Path(sys.executable).parent / "daskorym"


def _config(path: Path, data: Path, n_epochs: int) -> Path:
    return write_run_toml(path, data, n_epochs=n_epochs, execution={"engine": "local"},
                          output={"n_batch_per_checkpoint": 5})


def _reconstruct(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DASKORYM), "reconstruct", str(config), *args],
                          capture_output=True, text=True, timeout=300)


def _rows(csv: Path) -> int:
    try:
        return csv.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- (a) the client killed mid-run, then --resume -------------------------------------------


def test_cli_killed_mid_run_resumes_to_the_same_object(small_2d, tmp_path):
    n_epochs = 60  # 11 batches per epoch, a checkpoint every 5 batches
    config = _config(tmp_path / "run.toml", small_2d, n_epochs)
    ref = _reconstruct(config, "--output", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    n_rows = _rows(tmp_path / "ref" / "loss.csv") - 1
    assert n_rows == 11 * n_epochs

    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(DASKORYM), "reconstruct", str(config), "--output", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _rows(killed / "loss.csv") < n_rows // 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    at_kill = read_loss(killed / "loss.csv")["loss"].size
    ckpt_meta = load_checkpoint(killed)[1]
    print(f"killed after {at_kill} of {n_rows} batches; checkpoint at epoch "
          f"{ckpt_meta['epoch']} batch {ckpt_meta['batch']}")
    assert 0 < at_kill < n_rows

    refused = _reconstruct(config, "--output", str(killed))  # not without --resume
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = _reconstruct(config, "--output", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr

    ref_arrays, ref_meta = load_checkpoint(tmp_path / "ref")
    got_arrays, got_meta = load_checkpoint(killed)
    assert (got_meta["epoch"], got_meta["i_batch"]) == (ref_meta["epoch"], ref_meta["i_batch"])
    rel = _rel(got_arrays["object/value"], ref_arrays["object/value"])
    assert ref_arrays["object/value"].dtype == np.float64
    rel_zarr = _rel(zarr.open_array(str(killed / "object.zarr"), mode="r")[...],
                    zarr.open_array(str(tmp_path / "ref" / "object.zarr"), mode="r")[...])
    ref_loss, got_loss = read_loss(tmp_path / "ref" / "loss.csv"), read_loss(killed / "loss.csv")
    print(f"resumed: object rel. diff {rel:.2e} (checkpoint, float64), {rel_zarr:.2e} "
          f"(object.zarr); loss rows {got_loss['loss'].size} vs {ref_loss['loss'].size}")
    assert rel < 1e-5 and rel_zarr < 1e-5
    for name in ref_arrays:
        assert _rel(got_arrays[name], ref_arrays[name]) < 1e-5 if np.any(ref_arrays[name]) \
            else np.array_equal(got_arrays[name], ref_arrays[name]), name
    np.testing.assert_array_equal(got_loss["epoch"], ref_loss["epoch"])
    np.testing.assert_array_equal(got_loss["batch"], ref_loss["batch"])
    np.testing.assert_allclose(got_loss["loss"], ref_loss["loss"], rtol=1e-5)


# -- (b) killed while writing a checkpoint or an output --------------------------------------

OBJ_SHAPE = (96, 96, 16, 2)  # object.zarr and the two TIFF stacks
CKPT_N = 2**20  # two float64 arrays of 8 MiB in the checkpoint
PROBE_SHAPE = (2, 128, 128)

_WRITER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from daskorym.outputs import atomic_write_text, save_checkpoint
    from daskorym.outputs.objects import write_object
    from daskorym.outputs.probe import write_probe
    sys.path.insert(0, sys.argv[3])
    from test_crash_safety import versioned

    folder, first = sys.argv[1], int(sys.argv[2])
    print("start", flush=True)
    v = first
    while True:
        arrays, obj, probe = versioned(v)
        save_checkpoint(folder, arrays=arrays, meta={"epoch": v, "batch": 0})
        write_object(folder, obj, "delta_beta")
        write_probe(folder, probe)
        atomic_write_text(f"{folder}/settings.json", json.dumps({"version": v}))
        print(f"done {v}", flush=True)
        if first == 0:
            break
        v += 1
    """
)


def versioned(v: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """What the writer writes in round ``v`` (checkpoint arrays, object, probe)."""
    rng = np.random.default_rng(0)
    ckpt = rng.random(CKPT_N)
    obj = (rng.random(OBJ_SHAPE, dtype=np.float32) + np.float32(v)).astype(np.float32)
    probe = np.full(PROBE_SHAPE, complex(v, -v), np.complex64)
    return {"obj": ckpt + v, "opt/obj/m": ckpt - v}, obj, probe


def _version_of_outputs(folder: Path) -> dict[str, int]:
    """Load every output and checkpoint and say which round wrote it (fails if any is damaged)."""
    arrays, meta = load_checkpoint(folder)
    v = int(meta["epoch"])
    expected, obj, probe = versioned(v)
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)
    versions = {"checkpoint": v}
    stored = zarr.open_array(str(folder / "object.zarr"), mode="r")[...]
    versions["object.zarr"] = int(np.floor(stored.min()))
    assert np.array_equal(stored, versioned(versions["object.zarr"])[1])
    for name in ("delta_ds_1.tiff", "beta_ds_1.tiff"):
        page = tifffile.imread(folder / name)
        versions[name] = int(np.floor(page.min()))
        ch = 0 if name.startswith("delta") else 1
        assert np.array_equal(page.reshape(OBJ_SHAPE[:3]), versioned(versions[name])[1][..., ch])
    probe_npy = np.load(folder / "probe.npy", allow_pickle=False)
    versions["probe.npy"] = int(probe_npy.real.flat[0])
    assert np.array_equal(probe_npy, versioned(versions["probe.npy"])[2])
    versions["settings.json"] = json.loads((folder / "settings.json").read_text())["version"]
    return versions


def _start_writer(folder: Path, first: int) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(first),
                             str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def test_killed_while_writing_checkpoints_and_outputs(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    proc, lines = _start_writer(folder, 0)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert _version_of_outputs(folder) == dict.fromkeys(
        ["checkpoint", "object.zarr", "delta_ds_1.tiff", "beta_ds_1.tiff", "probe.npy",
         "settings.json"], 0)
    rng = random.Random(1)
    last_done, kills, with_temps = 0, 0, 0
    for _ in range(6):
        proc, lines = _start_writer(folder, last_done + 1)
        deadline = time.monotonic() + 60
        while "start" not in lines:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        time.sleep(0.05)  # the reader thread has the last lines
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        done = [int(line.split()[1]) for line in lines if line.startswith("done")]
        last_done = max(done, default=last_done)
        temps = [p.name for p in folder.iterdir() if ".tmp-" in p.name]
        with_temps += bool(temps)
        versions = _version_of_outputs(folder)
        print(f"kill {kills}: last complete round {last_done}, on disk {versions}, "
              f"temporaries left {temps}")
        # each file is the one of the last complete round, or of the round in progress
        assert all(v in (last_done, last_done + 1) for v in versions.values()), versions
        last_done = max(last_done, min(versions.values()))
    # the next writer removes the temporaries of killed ones
    proc, lines = _start_writer(folder, 0)
    assert proc.wait(timeout=120) == 0
    assert [p.name for p in folder.iterdir() if ".tmp-" in p.name] == []
    print(f"{kills} kills, {with_temps} of them left temporaries behind (a write in progress)")
    assert with_temps >= 1


# -- (c) the disk fills up during an output write --------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_disk_full_during_output_writes(small_disk):
    out = OutputFolder(small_disk / "run")
    rng = np.random.default_rng(0)
    obj = rng.random((16, 16, 2, 2), dtype=np.float32)
    out.write_object(obj, "delta_beta")
    out.write_probe(np.ones((1, 16, 16), np.complex64))
    out.save_checkpoint({"obj": obj.astype(np.float64)}, {"epoch": 1, "batch": 0})
    out.write_settings({"run": 1})
    out.append_loss(0, 0, 1.5, 0.1)
    before = _hashes(out.path)
    failures = []
    writes = [
        ("object", lambda big: out.write_object(big, "delta_beta")),
        ("checkpoint", lambda big: out.save_checkpoint({"obj": big.astype(np.float64)},
                                                       {"epoch": 2, "batch": 0})),
        ("probe", lambda big: out.write_probe(big[..., 0, 0][None].astype(np.complex64))),
        ("settings", lambda big: out.write_settings({"run": 2, "pad": "x" * big.size * 4})),
    ]
    for name, write in writes:
        n = 64
        while True:  # outputs of growing size until the disk is full
            big = rng.random((n, n, 8, 2), dtype=np.float32)
            try:
                write(big)
            except DiskFullError as err:
                failures.append((name, err))
                break
            before = _hashes(out.path)  # this write went through: it is the earlier output
            n *= 2
            assert n <= 4096, f"{name}: the disk never filled"
        assert _hashes(out.path) == before, name  # earlier outputs byte-identical
        assert [p.name for p in out.path.iterdir() if ".tmp-" in p.name] == []
    with pytest.raises(DiskFullError) as info:  # an append to loss.csv
        for i in range(10**6):
            out.append_loss(0, i + 1, 1.0, 0.1)
    failures.append(("loss", info.value))
    for name, err in failures:
        print(f"{name}: {type(err).__name__}: {err}")
        assert err.errno == 28 and "the disk is full" in str(err)
        assert str(out.path) in str(err) and "left as" in str(err)
    # everything written before still loads
    arrays, meta = out.load_checkpoint()
    assert meta["epoch"] in (1, 2) and arrays["obj"].dtype == np.float64
    assert zarr.open_array(str(out.path / "object.zarr"), mode="r")[...].dtype == np.float32
    assert np.load(out.path / "probe.npy", allow_pickle=False).dtype == np.complex64
    assert json.loads((out.path / "settings.json").read_text())["run"] in (1, 2)
    assert out.read_loss()["loss"][0] == 1.5


def test_cli_reports_a_full_disk(small_2d, small_disk, tmp_path):
    """The run stops with one ``error:`` line naming the file and the full disk; the outputs
    written before (settings.json, loss.csv) stay valid."""
    config = _config(tmp_path / "run.toml", small_2d, 1)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
                                - 96 * 1024))
    done = _reconstruct(config, "--output", str(small_disk / "run"))
    print(done.stderr.strip())
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the disk is full" in errors[0]
    assert str(small_disk / "run") in errors[0]
    assert json.loads((small_disk / "run" / "settings.json").read_text())["dataset"]
    read_loss(small_disk / "run" / "loss.csv")
    assert [p.name for p in (small_disk / "run").iterdir() if ".tmp-" in p.name] == []
