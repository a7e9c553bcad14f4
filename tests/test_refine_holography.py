"""Recovery of three refinable parameters of near-field holography.

Each test simulates noise-free data with the true value of a parameter, starts the
reconstruction from a wrong value and checks that (1) refining the parameter brings its
error to at most a quarter of the initial error and (2) the object is then better than in
the same run with the parameter held at its wrong value.  The tests print their numbers.

Sampling: every Fresnel kernel here is sampled without aliasing,
``lambda z / psize^2 <= tile size`` (the impulse response fits in the tile).  Beyond that
limit the loss oscillates with the distance and refinement can stall in a local minimum.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from daskorym.engine import InMemoryInputs, Reconstruction
from daskorym.metrics import scaled_complex_error, to_complex
from daskorym.models import Geometry
from daskorym.simulate.phantoms import model_probe, sample_object
from refine_cases import grid_positions, simulate_with

WAVELENGTH_M, PSIZE_M = 1e-10, 1e-7  # 12.4 keV, 100 nm pixels
N = 64  # object (Ly, Lx)
QUIET = {"progress": False, "store_checkpoint": False, "preview_every_epochs": 100000,
         "preview_every_minutes": 100000.0}


def _complex_probe(probe: np.ndarray) -> np.ndarray:
    return probe[0, ..., 0] + 1j * probe[0, ..., 1]


def _run(path, folder, probe, name: str, *, model: dict, params: dict, obj_step: float,
         epochs: int, minibatch: int, **groups) -> tuple[np.ndarray, np.ndarray, float]:
    """(the parameter's final value, the final object, seconds) of one reconstruction."""
    s = {"dataset": {"path": str(path)}, "model": model,
         "object": {"shape": [N, N, 1], "init": "constant"},
         "parameters": {"object": {"optimize": True, "step_size": obj_step}, name: params},
         "optimization": {"n_epochs": epochs, "minibatch_size": minibatch},
         "output": {"folder": str(folder), **QUIET}}
    for k, v in groups.items():
        s.setdefault(k, {}).update(v)
    t0 = time.perf_counter()
    with Reconstruction(s, InMemoryInputs(initial_probe=_complex_probe(probe))) as rec:
        assert rec.problem.model.name == (model.get("name") or rec.problem.model.name)
        rec.run()
        return rec.params[name].value.copy(), rec.object.astype(np.float64), \
            time.perf_counter() - t0


# ---------------------------------------------------------------------- a. distance
Z_M = 1e-3  # sample-detector distance; lambda z / psize^2 = 10 (<= 32 px tiles)
P = 32  # structured probe tile


@pytest.fixture(scope="module")
def distance_case(tmp_path_factory):
    """Near-field ptychography: a known structured (defocused aperture) 32 px probe scanned
    over a 64x64 real_imag object (phase 1 rad, 30 % absorption), 36 positions (step 6 px),
    holograms at 1 mm."""
    g = Geometry(wavelength_m=WAVELENGTH_M, psize_m=PSIZE_M, obj_shape=(N, N, 1),
                 probe_shape=(P, P), free_prop_m=(Z_M,), unknown_type="real_imag")
    probe = model_probe("aperture", (P, P), PSIZE_M, WAVELENGTH_M).astype(np.float64)
    obj = sample_object((N, N, 1), "real_imag", 1.0, 0.3, 1.0, seed=0).astype(np.float64)
    pos = grid_positions(g.obj_shape, (P, P), 6.0)
    path = simulate_with(tmp_path_factory.mktemp("free_prop") / "data.h5",
                         "nearfield_ptychography", g, obj, probe, pos, np.zeros(1))
    return path, probe, obj


def test_free_prop_distance_recovered(distance_case, tmp_path):
    """The geometry says 1.1 mm (10 % too long); the distance is refined from batch 10."""
    path, probe, truth = distance_case
    inner = (slice(6, N - 6), slice(6, N - 6))
    out = {}
    for refine in (True, False):
        z, obj, t = _run(path, tmp_path / f"r{refine}", probe, "free_prop",
                         model={"name": "nearfield_ptychography", "unknown_type": "real_imag"},
                         params={"optimize": refine, "step_size": 3e-3 * Z_M, "start_batch": 10},
                         obj_step=3e-2, epochs=50, minibatch=12,
                         geometry={"free_prop_cm": 1.1 * Z_M * 100})
        err = scaled_complex_error(to_complex(obj[:, :, 0]), to_complex(truth[:, :, 0]), inner)
        out[refine] = (abs(float(z[0]) / Z_M - 1), err, t)
    rel0, (rel, e_ref, t_ref), (_, e_fixed, t_fixed) = 0.1, out[True], out[False]
    print(f"\nfree_prop (nearfield_ptychography, {Z_M * 1e3:g} mm): initial error "
          f"{100 * rel0:.1f} %, final {100 * rel:.3f} %; object error {e_ref:.4f} with "
          f"refinement, {e_fixed:.4f} without; {t_ref:.1f} s + {t_fixed:.1f} s")
    assert out[False][0] == pytest.approx(rel0)
    assert rel <= rel0 / 4
    assert e_ref < e_fixed


# ---------------------------------------------------------------------- multi-distance
DISTS_M = (2e-3, 4e-3, 7e-3)  # lambda z / psize^2 = 20, 40, 70 (<= 80 px tiles)
SAFE = 8  # buffer: wave tiles of 80x80 around the 64x64 detector image
MAG = 1.02  # distance 1 images magnified by 2 %


def _multidistance_geometry(unknown_type: str) -> Geometry:
    return Geometry(wavelength_m=WAVELENGTH_M, psize_m=PSIZE_M, obj_shape=(N, N, 1),
                    probe_shape=(N + 2 * SAFE, N + 2 * SAFE), free_prop_m=DISTS_M,
                    unknown_type=unknown_type, safe_zone_px=SAFE, n_tiles=len(DISTS_M))


def _multidistance_data(folder, unknown_type: str, obj: np.ndarray, fixed: dict):
    """One 64x64 hologram per distance (one block each), plane-wave illumination."""
    g = _multidistance_geometry(unknown_type)
    probe = model_probe("plane", g.probe_shape, PSIZE_M, WAVELENGTH_M).astype(np.float64)
    path = simulate_with(folder / "data.h5", "multidistance_holography", g, obj, probe,
                         np.zeros((len(DISTS_M), 2)), np.zeros(1), fixed=fixed)
    return path, probe


# ---------------------------------------------------------------------- b. affine maps
def _true_affine() -> np.ndarray:
    """Identity at distances 0 and 2; distance 1 magnified by MAG about the image centre:
    ``out(r) = img((r - c) / MAG + c)``, i.e. ``A = I / MAG`` (see ``affine_warp``)."""
    aff = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (len(DISTS_M), 1, 1))
    aff[1, 0, 0] = aff[1, 1, 1] = 1.0 / MAG
    return aff


@pytest.fixture(scope="module")
def affine_case(tmp_path_factory):
    """64x64 real_imag object (phase 1 rad, 30 % absorption) at 2, 4 and 7 mm; the images
    of distance 1 magnified by 2 %."""
    obj = sample_object((N, N, 1), "real_imag", 1.0, 0.3, 1.0, seed=0).astype(np.float64)
    path, probe = _multidistance_data(tmp_path_factory.mktemp("prj_affine"), "real_imag", obj,
                                      {"prj_affine": _true_affine()})
    return path, probe, obj


def test_prj_affine_magnification_recovered(affine_case, tmp_path):
    """Start from identity maps; the maps are refined from batch 5 (Adam, 2e-3)."""
    path, probe, truth = affine_case
    true_aff = _true_affine()
    out = {}
    for refine in (True, False):
        aff, obj, t = _run(path, tmp_path / f"r{refine}", probe, "prj_affine",
                           model={"name": "multidistance_holography", "unknown_type": "real_imag",
                                  "safe_zone_px": SAFE},
                           params={"optimize": refine, "step_size": 2e-3, "start_batch": 5},
                           obj_step=0.2, epochs=500, minibatch=len(DISTS_M))
        err = scaled_complex_error(to_complex(obj[:, :, 0]), to_complex(truth[:, :, 0]))
        out[refine] = (aff, err, t)
    (aff, e_ref, t_ref), (_, e_fixed, t_fixed) = out[True], out[False]
    scale0 = abs(1.0 - 1.0 / MAG)  # initial error of the scale (matrix diagonal) of distance 1
    scale_err = float(np.abs(np.diag(aff[1, :, :2]) - 1.0 / MAG).max())
    linear_err = float(np.abs(aff[:, :, :2] - true_aff[:, :, :2]).max())  # every entry
    mag = 1.0 / np.diag(aff[1, :, :2])
    print(f"\nprj_affine (multidistance_holography, {len(DISTS_M)} distances): distance 1 "
          f"magnification {MAG:.4f}, start 1, final (y, x) = ({mag[0]:.5f}, {mag[1]:.5f}); "
          f"scale error initial {100 * scale0:.2f} %, final {100 * scale_err:.3f} % (worst "
          f"linear entry of any distance {100 * linear_err:.3f} %, translations (px) "
          f"{np.round(aff[1:, :, 2].ravel(), 4).tolist()}); object error {e_ref:.4f} with "
          f"refinement, {e_fixed:.4f} without; {t_ref:.1f} s + {t_fixed:.1f} s")
    np.testing.assert_array_equal(aff[0], true_aff[0])  # distance 0 pinned
    assert scale_err <= scale0 / 4
    assert linear_err <= scale0 / 4
    assert e_ref < e_fixed


# ---------------------------------------------------------------------- c. kappa
KAPPA = 0.1  # true beta/delta


@pytest.fixture(scope="module")
def kappa_case(tmp_path_factory):
    """Homogeneous delta_beta object (peak phase 1 rad, beta = 0.1 delta) at 2, 4 and 7 mm."""
    k1 = 2 * math.pi * PSIZE_M / WAVELENGTH_M
    obj = sample_object((N, N, 1), "delta_beta", 1.0, 0.3, k1, seed=0).astype(np.float64)
    obj[..., 1] = KAPPA * obj[..., 0]
    path, probe = _multidistance_data(tmp_path_factory.mktemp("kappa"), "delta_beta", obj,
                                      {"lg_kappa": np.array([math.log10(KAPPA)])})
    return path, probe, obj, k1


def test_ctf_lg_kappa_recovered(kappa_case, tmp_path):
    """model.kappa = 0.2 (twice the truth); log10 kappa refined from batch 5 (Adam, 1e-2).

    Object error: relative RMS error of delta (the unknown; beta = kappa delta), no fitted
    scale; the error of the transmission with each run's kappa is printed too."""
    path, probe, truth, k1 = kappa_case
    d_true = truth[:, :, 0, 0]
    t_true = to_complex(truth[:, :, 0], "delta_beta", k1)
    out = {}
    for refine in (True, False):
        lg, obj, t = _run(path, tmp_path / f"r{refine}", probe, "ctf_lg_kappa",
                          model={"name": "multidistance_holography", "unknown_type": "delta_beta",
                                 "safe_zone_px": SAFE, "kappa": 2 * KAPPA},
                          params={"optimize": refine, "step_size": 1e-2, "start_batch": 5},
                          obj_step=0.1 / k1, epochs=300, minibatch=len(DISTS_M))
        kappa = 10 ** float(lg[0])
        d = obj[:, :, 0, 0]
        est = obj[:, :, 0].copy()
        est[..., 1] = kappa * est[..., 0]
        out[refine] = (kappa, float(np.linalg.norm(d - d_true) / np.linalg.norm(d_true)),
                       scaled_complex_error(to_complex(est, "delta_beta", k1), t_true), t)
    (kappa, e_ref, te_ref, t_ref), (kappa_f, e_fixed, te_fixed, t_fixed) = out[True], out[False]
    lg0, lg1 = math.log10(2.0), abs(math.log10(kappa / KAPPA))
    rel1 = abs(kappa / KAPPA - 1)
    print(f"\nctf_lg_kappa (multidistance_holography, {len(DISTS_M)} distances): kappa "
          f"{KAPPA:g}, start {kappa_f:g}, final {kappa:.5f}; error in log10 kappa initial "
          f"{lg0:.4f}, final {lg1:.5f} (in kappa: 100 % -> {100 * rel1:.3f} %); object (delta) "
          f"error {e_ref:.4f} with refinement, {e_fixed:.4f} without (transmission "
          f"{te_ref:.4f} vs {te_fixed:.4f}); {t_ref:.1f} s + {t_fixed:.1f} s")
    assert kappa_f == pytest.approx(2 * KAPPA)
    assert lg1 <= lg0 / 4
    assert rel1 <= 1.0 / 4
    assert e_ref < e_fixed
