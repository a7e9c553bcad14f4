"""Tests of daskorym.outputs: output folder rules, atomic writes, result writers, loss log,
previews, checkpoints (including a checkpoint writer killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from daskorym.outputs import (
    CheckpointError,
    OutputExistsError,
    OutputFolder,
    PreviewSchedule,
    atomic_dir,
    atomic_file,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    numpy_to_json,
    rng_from_state,
    rng_state,
    save_checkpoint,
    settings_hash,
)
from daskorym.outputs import atomic as atomic_module
from daskorym.outputs import checkpoint as checkpoint_module

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _object(shape: tuple[int, int, int] = (20, 6, 5), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, 2)).astype(np.float32)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and "tmp" in p.name)


@pytest.fixture
def out(tmp_path: Path) -> OutputFolder:
    return OutputFolder(tmp_path / "run")


# -- object ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unknown_type", ["delta_beta", "real_imag"])
def test_object_round_trip(out: OutputFolder, unknown_type: str) -> None:
    obj = _object()
    out.write_object(obj, unknown_type)
    stored = zarr.open_array(out.path / "object.zarr", mode="r")
    assert stored.metadata.zarr_format == 3
    assert stored.chunks == (16, 6, 5, 2)
    assert stored.attrs["unknown_type"] == unknown_type
    np.testing.assert_array_equal(stored[:], obj)
    if unknown_type == "delta_beta":
        names, expected = ("delta_ds_1.tiff", "beta_ds_1.tiff"), (obj[..., 0], obj[..., 1])
    else:
        field = obj[..., 0].astype(np.float64) + 1j * obj[..., 1]
        names = ("obj_mag_ds_1.tiff", "obj_phase_ds_1.tiff")
        expected = (abs(field), np.angle(field))
    for name, values in zip(names, expected):
        read = tifffile.imread(out.path / name)
        assert read.dtype == np.float32 and read.shape == (20, 6, 5)
        np.testing.assert_allclose(read, values, rtol=1e-6, atol=1e-6)
    assert _temps(out.path) == []


@pytest.mark.parametrize("heights", [[3, 7, 1, 9], [1]], ids=["uneven", "single_row"])
def test_object_streamed_by_slabs(out: OutputFolder, heights: list[int]) -> None:
    obj = _object((sum(heights), 4, 3))
    starts = np.cumsum([0, *heights[:-1]])
    slabs = ((int(y0), obj[y0 : y0 + h]) for y0, h in zip(starts, heights))
    out.write_object_slabs(obj.shape, slabs, "delta_beta")
    np.testing.assert_array_equal(zarr.open_array(out.path / "object.zarr", mode="r")[:], obj)
    assert zarr.open_array(out.path / "object.zarr", mode="r").chunks[0] == min(len(obj), 16)
    np.testing.assert_array_equal(tifffile.imread(out.path / "delta_ds_1.tiff"), obj[..., 0])
    np.testing.assert_array_equal(tifffile.imread(out.path / "beta_ds_1.tiff"), obj[..., 1])


def test_bad_slabs_leave_previous_object(out: OutputFolder) -> None:
    old = _object((6, 4, 3))
    out.write_object(old, "delta_beta")
    new = _object((6, 4, 3), seed=1)
    with pytest.raises(ValueError, match="start at y=3"):
        out.write_object_slabs(new.shape, [(0, new[:3]), (4, new[4:])], "delta_beta")
    with pytest.raises(ValueError, match="covered rows 0:3 of Ly=6"):
        out.write_object_slabs(new.shape, [(0, new[:3])], "delta_beta")
    np.testing.assert_array_equal(zarr.open_array(out.path / "object.zarr", mode="r")[:], old)
    np.testing.assert_array_equal(tifffile.imread(out.path / "delta_ds_1.tiff"), old[..., 0])
    assert _temps(out.path) == []
    out.write_object(new, "delta_beta")  # replacing works
    np.testing.assert_array_equal(zarr.open_array(out.path / "object.zarr", mode="r")[:], new)


def test_object_rejects_bad_input(out: OutputFolder) -> None:
    with pytest.raises(ValueError, match="unknown_type"):
        out.write_object(_object(), "amplitude")
    with pytest.raises(ValueError, match=r"\[Ly, Lx, Lz, 2\]"):
        out.write_object(np.zeros((4, 4, 4, 3), np.float32), "delta_beta")


# -- probe, parameters, settings ----------------------------------------------------------------


@pytest.mark.parametrize("real", [False, True], ids=["complex", "real_imag_axis"])
def test_probe_round_trip(out: OutputFolder, real: bool) -> None:
    rng = np.random.default_rng(2)
    probe = (rng.normal(size=(2, 8, 7)) + 1j * rng.normal(size=(2, 8, 7))).astype(np.complex64)
    out.write_probe(np.stack([probe.real, probe.imag], -1) if real else probe)
    stored = np.load(out.path / "probe.npy", allow_pickle=False)
    assert stored.dtype == np.complex64
    np.testing.assert_array_equal(stored, probe)
    mag = tifffile.imread(out.path / "probe_mag_ds_1.tiff")
    phase = tifffile.imread(out.path / "probe_phase_ds_1.tiff")
    assert mag.shape == phase.shape == (2, 8, 7) and mag.dtype == np.float32
    np.testing.assert_allclose(mag, abs(probe), rtol=1e-6)
    np.testing.assert_allclose(phase, np.angle(probe), atol=1e-6)


def test_probe_single_mode_keeps_mode_axis(out: OutputFolder) -> None:
    out.write_probe(np.ones((1, 4, 4), np.complex64))
    assert tifffile.imread(out.path / "probe_mag_ds_1.tiff").shape == (1, 4, 4)
    with pytest.raises(ValueError, match="real probe"):
        out.write_probe(np.ones((2, 4, 4)))


def test_parameters(out: OutputFolder) -> None:
    positions = np.random.default_rng(3).uniform(-5, 50, (7, 2))
    written = out.write_parameter("probe_pos_px", positions)
    directory = out.path / "parameters"
    assert written == [directory / "probe_pos_px.npy", directory / "probe_pos_px.txt"]
    np.testing.assert_array_equal(np.load(written[0], allow_pickle=False), positions)
    np.testing.assert_allclose(np.loadtxt(written[1]), positions, rtol=1e-15)
    out.write_parameter("free_prop_cm", np.float64(0.5))
    assert np.loadtxt(directory / "free_prop_cm.txt") == 0.5
    cube = np.arange(24.0).reshape(2, 3, 4)
    assert out.write_parameter("affine", cube) == [directory / "affine.npy"]
    np.testing.assert_array_equal(np.load(directory / "affine.npy", allow_pickle=False), cube)
    with pytest.raises(ValueError, match="parameter name"):
        out.write_parameter("../escape", positions)


def test_settings_json(out: OutputFolder) -> None:
    settings = {
        "n_epochs": np.int64(3), "theta": np.linspace(0, 1, 3), "b": True,
        "a": {"x": np.float32(0.5)},
    }
    path = out.write_settings(settings)
    text = path.read_text()
    assert json.loads(text) == {"a": {"x": 0.5}, "b": True, "n_epochs": 3, "theta": [0.0, 0.5, 1.0]}
    assert text.index('"a"') < text.index('"b"') < text.index('"n_epochs"')
    assert '\n  "a": {' in text


def test_numpy_to_json() -> None:
    value = {
        "i": np.int32(2), 3: np.bool_(True), "p": Path("/x"), "t": (np.float64(1.5), [np.arange(2)])
    }
    assert numpy_to_json(value) == {"i": 2, "3": True, "p": "/x", "t": [1.5, [[0, 1]]]}
    assert json.loads(json.dumps(numpy_to_json(value)))["t"] == [1.5, [[0, 1]]]
    with pytest.raises(TypeError, match="/z"):
        numpy_to_json({"z": 1 + 2j})
    assert settings_hash({"a": np.int64(1)}) == settings_hash({"a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})


# -- loss log, previews ------------------------------------------------------------------------


def test_loss_append_read_truncate(out: OutputFolder) -> None:
    for epoch in range(3):
        for batch in range(4):
            out.append_loss(epoch, batch, 10.0 / (1 + 4 * epoch + batch), 0.25 * batch)
    lines = out.loss_path.read_text().splitlines()
    assert lines[0] == "epoch,batch,loss,seconds" and len(lines) == 13
    loss = out.read_loss()
    assert loss["epoch"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert loss["loss"][5] == 10.0 / 6
    assert out.truncate_loss(1, 2) == 5
    kept = out.read_loss()
    assert list(zip(kept["epoch"], kept["batch"]))[-1] == (1, 2) and kept["loss"].size == 7
    np.testing.assert_array_equal(kept["loss"], loss["loss"][:7])
    out.append_loss(1, 3, 0.5, 1.0)  # the resumed run goes on
    assert out.read_loss()["loss"].size == 8


def test_loss_torn_row_is_dropped(out: OutputFolder) -> None:
    out.append_loss(0, 0, 1.0, 0.1)
    with open(out.loss_path, "a") as handle:
        handle.write("0,1,0.")  # a crash in the middle of a row
    assert out.read_loss()["loss"].tolist() == [1.0]
    out.append_loss(0, 1, 0.5, 0.2)
    assert out.loss_path.read_text() == "epoch,batch,loss,seconds\n0,0,1.0,0.1\n0,1,0.5,0.2\n"


def test_loss_bad_row_names_file_and_line(out: OutputFolder) -> None:
    out.loss_path.write_text("epoch,batch,loss,seconds\n0,0,1.0,0.1\n0,x,1.0,0.1\n")
    with pytest.raises(ValueError, match=r"loss\.csv: line 3"):
        out.read_loss()


def test_previews_are_png(out: OutputFolder) -> None:
    obj = _object((9, 8, 6))
    assert out.write_previews(obj, "delta_beta") == [out.path / "preview_object.png"]  # no loss yet
    for i in range(5):
        out.append_loss(i // 2, i % 2, 1.0 / (i + 1), 0.1)
    paths = out.write_previews(zarr.array(obj), "real_imag")
    assert paths == [out.path / "preview_object.png", out.path / "preview_loss.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    assert _temps(out.path) == []


def test_preview_schedule() -> None:
    by_epoch = PreviewSchedule(every_epochs=2)
    due = [by_epoch.due(e, 0.0) for e in [0, 0, 1, 2, 3, 4]]
    assert due == [True, False, False, True, False, True]
    by_time = PreviewSchedule(every_epochs=None, every_minutes=1.0)
    due = [by_time.due(0, t) for t in [0.0, 30.0, 61.0, 90.0, 121.0]]
    assert due == [True, False, True, False, True]
    either = PreviewSchedule(every_epochs=1, every_minutes=0.5)
    due = [either.due(e, t) for e, t in [(0, 0), (0, 10), (0, 31), (1, 32)]]
    assert due == [True, False, True, True]
    assert PreviewSchedule(None, None).due(0, 0.0) is False
    with pytest.raises(ValueError, match="every_epochs"):
        PreviewSchedule(every_epochs=0)


# -- output folder rules -----------------------------------------------------------------------


@pytest.mark.parametrize("result", ["object.zarr", "checkpoint", "loss.csv", "settings.json"])
def test_existing_results_refused_without_resume(tmp_path: Path, result: str) -> None:
    folder = tmp_path / "old_run"
    folder.mkdir()
    if result in ("object.zarr", "checkpoint"):
        (folder / result).mkdir()
    else:
        (folder / result).write_text("x")
    with pytest.raises(OutputExistsError, match="--resume") as info:
        OutputFolder(folder)
    assert str(folder) in str(info.value) and "use_checkpoint=True" in str(info.value)
    assert isinstance(info.value, FileExistsError)


def test_empty_existing_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert OutputFolder(tmp_path / "empty").path == tmp_path / "empty"


def test_resume_needs_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume") as info:
        OutputFolder(tmp_path / "missing", resume=True)
    assert str(tmp_path / "missing") in str(info.value)
    run = OutputFolder(tmp_path / "run")
    run.append_loss(0, 0, 1.0, 0.1)
    with pytest.raises(FileNotFoundError, match="nothing to resume") as info:
        OutputFolder(run.path, resume=True)
    assert str(run.path) in str(info.value)
    run.save_checkpoint({"x": np.zeros(3)}, {"epoch": 0, "batch": 0})
    resumed = OutputFolder(run.path, resume=True)
    assert resumed.has_checkpoint and resumed.load_checkpoint()[1]["epoch"] == 0


def test_created_folder_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        out = OutputFolder(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    for path in (out.path, out.path.parent):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o750, oct(mode)
        assert not mode & stat.S_IWOTH


def test_unwritable_folder_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("permissions are not enforced for this user (running as root)")
        with pytest.raises(PermissionError, match="not writable") as info:
            OutputFolder(folder)
        assert str(folder) in str(info.value)
    finally:
        folder.chmod(0o700)


def test_path_that_is_a_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        OutputFolder(tmp_path / "f")


# -- atomic writes -----------------------------------------------------------------------------


def test_atomic_file_writers(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.txt", "héllo")
    atomic_save_npy(tmp_path / "a.npy", np.arange(5))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), np.arange(5))
    assert _temps(tmp_path) == []


def test_failed_replace_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.npy"
    atomic_save_npy(target, np.arange(3))
    with pytest.raises(ValueError):
        atomic_save_npy(target, np.array([object()], dtype=object))  # pickle is refused
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target) as tmp:
            assert tmp.name.startswith(".") and "tmp" in tmp.name
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    np.testing.assert_array_equal(np.load(target, allow_pickle=False), np.arange(3))
    assert _temps(tmp_path) == []


def test_atomic_dir_failure_keeps_old_dir(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "v").write_text("new")
            raise RuntimeError("fail while writing")
    assert (target / "v").read_text() == "old" and _temps(tmp_path) == []


def test_atomic_dir_restores_old_when_move_in_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "d"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("old")
    real_rename = os.rename
    calls: list[str] = []

    def flaky_rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 2:  # old aside worked, new in fails
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(atomic_module.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_dir(target) as tmp:
            (tmp / "v").write_text("new")
    assert (target / "v").read_text() == "old" and _temps(tmp_path) == []


def test_interrupted_dir_swap_is_restored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, arrays={"x": np.arange(4)}, meta={"epoch": 2, "batch": 1})
    # a process killed between "old aside" and "new in" leaves only the aside copy
    os.rename(tmp_path / "checkpoint", tmp_path / ".checkpoint.tmp-old-deadbeef")
    (tmp_path / ".checkpoint.tmp-0123abcd").mkdir()  # and its unfinished new one
    arrays, meta = load_checkpoint(tmp_path)
    assert meta["epoch"] == 2 and arrays["x"].tolist() == [0, 1, 2, 3]
    save_checkpoint(tmp_path, arrays={"x": np.arange(2)}, meta={"epoch": 3, "batch": 0})
    assert _temps(tmp_path) == []


# -- checkpoints -------------------------------------------------------------------------------


def _state(seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    rng = np.random.default_rng(seed)
    arrays = {
        "obj": _object((5, 4, 3), seed),
        "opt/obj/m": rng.normal(size=(5, 4, 3, 2)).astype(np.float32),
        "opt/obj/v": rng.normal(size=(5, 4, 3, 2))[:, ::2],  # not contiguous
        "probe": (rng.normal(size=(2, 4, 4)) + 1j).astype(np.complex64),
        "i_theta": np.array(3),
        "flags": np.array([True, False]),
    }
    meta = {
        "epoch": np.int64(2), "batch": 7, "i_update": 31, "rng": rng_state(rng),
        "settings_hash": settings_hash({"n_epochs": 3}),
    }
    return arrays, meta


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    arrays, meta = _state()
    path = save_checkpoint(tmp_path, arrays=arrays, meta=meta)
    assert (path / "opt" / "obj" / "m.npy").is_file()
    document = json.loads((path / "checkpoint.json").read_text())
    assert set(document["arrays"]) == set(arrays)
    assert document["arrays"]["probe"]["dtype"] == "<c8"
    assert len(document["arrays"]["obj"]["sha256"]) == 64
    loaded, loaded_meta = load_checkpoint(tmp_path)
    assert set(loaded) == set(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype and loaded[name].shape == arr.shape
        np.testing.assert_array_equal(loaded[name], arr)
    assert loaded_meta == numpy_to_json(meta)
    mapped, _ = load_checkpoint(tmp_path, mmap=True)
    np.testing.assert_array_equal(mapped["obj"], arrays["obj"])


@pytest.mark.parametrize("kind", ["PCG64", "MT19937"])
def test_rng_state_round_trip(kind: str) -> None:
    generator = np.random.Generator(getattr(np.random, kind)(7))
    generator.normal(size=5)
    state = json.loads(json.dumps(rng_state(generator)))
    np.testing.assert_array_equal(rng_from_state(state).random(4), generator.random(4))


def test_checkpoint_input_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="array name"):
        save_checkpoint(tmp_path, arrays={"../x": np.zeros(1)}, meta={"epoch": 0, "batch": 0})
    with pytest.raises(TypeError, match="'x'"):
        arrays: dict = {"x": [1, 2]}
        save_checkpoint(tmp_path, arrays=arrays, meta={"epoch": 0, "batch": 0})
    with pytest.raises(ValueError, match="missing \\['batch'\\]"):
        save_checkpoint(tmp_path, arrays={}, meta={"epoch": 0})
    assert list(tmp_path.iterdir()) == []


def _byte_flipped(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checkpoint_corruption_detected(tmp_path: Path) -> None:
    arrays, meta = _state()
    save_checkpoint(tmp_path, arrays=arrays, meta=meta)
    victim = tmp_path / "checkpoint" / "opt" / "obj" / "m.npy"
    _byte_flipped(victim, victim.stat().st_size - 3)
    with pytest.raises(CheckpointError, match="checksum") as info:
        load_checkpoint(tmp_path)
    assert str(victim) in str(info.value)
    victim.unlink()
    with pytest.raises(CheckpointError, match="missing") as info:
        load_checkpoint(tmp_path)
    assert str(victim) in str(info.value)


def test_checkpoint_manifest_problems(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint.json"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, arrays={"x": np.arange(6)}, meta={"epoch": 0, "batch": 0})
    manifest = tmp_path / "checkpoint" / "checkpoint.json"
    document = json.loads(manifest.read_text())
    document["arrays"]["x"]["shape"] = [2, 3]
    manifest.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"shape \(6,\)"):
        load_checkpoint(tmp_path)
    manifest.write_text("{ not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path)


def test_crash_during_checkpoint_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, meta = _state(0)
    save_checkpoint(tmp_path, arrays=first, meta=meta)
    real_write = checkpoint_module._write_array
    written: list[str] = []

    def failing_write(directory: Path, name: str, arr: np.ndarray) -> dict:
        if written:
            raise OSError("disk full")
        written.append(name)
        return real_write(directory, name, arr)

    monkeypatch.setattr(checkpoint_module, "_write_array", failing_write)
    second, _ = _state(1)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, arrays=second, meta={"epoch": 3, "batch": 0})
    loaded, loaded_meta = load_checkpoint(tmp_path)
    assert loaded_meta["epoch"] == 2
    np.testing.assert_array_equal(loaded["obj"], first["obj"])
    assert _temps(tmp_path) == []


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from daskorym.outputs import save_checkpoint

    folder = sys.argv[1]
    big = {f"part{i}": np.full(25 * 2**20 // 8, float(i)) for i in range(8)}  # 200 MiB
    first = {"obj": np.arange(12.0).reshape(3, 4)}
    save_checkpoint(folder, arrays=first, meta={"epoch": 0, "batch": 5})
    print("first", flush=True)
    save_checkpoint(folder, arrays=big, meta={"epoch": 1, "batch": 0})
    print("second", flush=True)
    """
)


def test_sigkill_during_checkpoint_keeps_previous(tmp_path: Path) -> None:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "first"
        deadline = time.monotonic() + 30
        while not any(n.startswith(".checkpoint.tmp-") for n in os.listdir(tmp_path)):
            assert child.poll() is None, "writer ended before its second checkpoint was seen"
            assert time.monotonic() < deadline, "no temporary checkpoint directory appeared"
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    assert _temps(tmp_path), "the killed writer should have left its temporary behind"
    arrays, meta = load_checkpoint(tmp_path)
    assert meta == {"epoch": 0, "batch": 5} and list(arrays) == ["obj"]
    np.testing.assert_array_equal(arrays["obj"], np.arange(12.0).reshape(3, 4))
    save_checkpoint(tmp_path, arrays={"obj": np.zeros(2)}, meta={"epoch": 0, "batch": 6})
    assert _temps(tmp_path) == []
    assert load_checkpoint(tmp_path)[1]["batch"] == 6
