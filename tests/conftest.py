"""Shared fixtures: small simulated datasets made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.simulate import simulate


@pytest.fixture(scope="session")
def small_2d(tmp_path_factory):
    """A 48x48 far-field real_imag dataset with 16x16 tiles (fast engine tests)."""
    path = tmp_path_factory.mktemp("small2d") / "data.h5"
    simulate("farfield_ptychography", path, progress=False, obj_shape=(48, 48),
             probe_shape=(16, 16), step_px=4, unknown_type="real_imag", phase_max_rad=0.8,
             absorption=0.2)
    return path


@pytest.fixture(scope="session")
def small_3d(tmp_path_factory):
    """A 16^3 delta_beta multislice dataset over 4 angles, 8x8 tiles."""
    path = tmp_path_factory.mktemp("small3d") / "data.h5"
    simulate("farfield_ptychography", path, progress=False, obj_shape=(16, 16, 16),
             probe_shape=(8, 8), step_px=3, n_theta=4, theta_range_rad=(0.0, np.pi))
    return path


def small_settings(path, folder, **groups) -> dict:
    """Settings for the small datasets, quiet and without previews."""
    import h5py
    with h5py.File(str(path).replace(".h5", "_truth.h5")) as f:
        shape = list(f["obj"].shape[:3])
        unknown_type = f.attrs["unknown_type"]
    s = {"dataset": {"path": str(path)}, "object": {"shape": shape},
         "model": {"unknown_type": str(unknown_type)},
         "optimization": {"n_epochs": 2, "minibatch_size": 16},
         "output": {"folder": str(folder), "progress": False,
                    "preview_every_epochs": 1000, "preview_every_minutes": 1000}}
    for k, v in groups.items():
        s.setdefault(k, {}).update(v)
    return s


def run_reconstruction(settings, **kw):
    """Run ``settings`` to the end (``make_reconstruction``'s engine; ``client=`` for Dask):
    ``(object, losses per minibatch)``."""
    from daskorym.execution import make_reconstruction
    with make_reconstruction(settings, **kw) as rec:
        rec.run()
        return rec.object.copy(), np.array([h[2] for h in rec.history])


def relative_differences(reference, other) -> tuple[float, float]:
    """``(object, loss)`` relative differences of two ``(object, losses)`` runs: the object's
    in norm, the losses' largest per minibatch."""
    (obj_a, loss_a), (obj_b, loss_b) = reference, other
    rel = np.linalg.norm(obj_b - obj_a) / np.linalg.norm(obj_a)
    return float(rel), float(np.max(np.abs(loss_b - loss_a) / np.abs(loss_a)))


def _toml_value(v) -> str:
    import json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v if isinstance(v, (int, float)) else str(v))


def write_run_toml(path, data, *, n_epochs: int = 2, **groups):
    """A TOML run file (as ``daskorym reconstruct`` reads) for the small 2D dataset ``data``:
    48x48 real/imag object, minibatches of 8, float64, quiet and without previews;
    ``groups`` add or override keys per section (``output={"store_checkpoint": False}``)."""
    sections = {"dataset": {"path": str(data)}, "object": {"shape": [48, 48, 1]},
                "model": {"unknown_type": "real_imag"},
                "optimization": {"n_epochs": n_epochs, "minibatch_size": 8},
                "execution": {"precision": "float64"},
                "output": {"progress": False, "preview_every_epochs": 1000,
                           "preview_every_minutes": 1000}}
    for k, v in groups.items():
        sections.setdefault(k, {}).update(v)
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
