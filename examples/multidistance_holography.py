"""Multi-distance holography of a homogeneous object: CTF phase retrieval, then iterative Fresnel.

A weak homogeneous object (beta = kappa delta) is imaged by a plane wave at several distances
(data in tile-then-distance order: one full-image tile per distance).  The object is retrieved
(1) in closed form by CTF phase retrieval (:func:`daskorym.physics.ctf.ctf_retrieve`) and
(2) iteratively with the exact Fresnel model (``multidistance_holography``, ``model.kappa``)
started from the CTF result; optionally (3) iteratively with the linearised model
(``model.forward_algorithm = "ctf"``).  SSIM of the projected delta against the truth is printed.

Full size (default): 256x256, 4 distances (4 to 32 mm), 30 epochs.  ``--quick``: 64x64, 3
distances (2 to 8 mm), 20 epochs.  The distances stay within N psize^2 / lambda, where the
sampled Fresnel kernel is exact (daskorym warns beyond it).

    python examples/multidistance_holography.py [--quick] [--out DIR] [--phase RAD] [--ctf-iter]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

import daskorym
from daskorym.backend import get_backend
from daskorym.engine import InMemoryInputs
from daskorym.io.write import write_dataset
from daskorym.metrics import ssim
from daskorym.models import Geometry, get_model
from daskorym.physics.ctf import ctf_initial_object, ctf_retrieve
from daskorym.simulate.phantoms import natural_image

ENERGY_EV = 17000.0
WAVELENGTH_M = 1239.84193e-9 / ENERGY_EV
PSIZE_M = 1e-7
KAPPA = 0.05


def simulate_holograms(path: Path, n: int, dists_m, phase_max_rad: float, noise: float = 0.0,
                       seed: int = 0):
    """Intensities by the exact Fresnel model; writes magnitudes ``[1, n_d, n, n]``.

    Returns (projected delta truth [n, n] (one slice), intensities [n_d, n, n])."""
    k1 = 2 * np.pi * PSIZE_M / WAVELENGTH_M
    img = natural_image("camera", (n, n))
    img = (img - img.min()) / (img.max() - img.min())
    delta = img * phase_max_rad / k1
    geom = Geometry(wavelength_m=WAVELENGTH_M, psize_m=PSIZE_M, obj_shape=(n, n, 1),
                    probe_shape=(n, n), free_prop_m=tuple(dists_m), n_tiles=len(dists_m),
                    kappa=KAPPA)
    model = get_model("multidistance_holography")(geom)
    be = get_backend("autograd", "float64")
    batch = model.plan_batch(0, np.arange(len(dists_m)), np.zeros((len(dists_m), 2)), "box")
    probe = np.zeros((1, n, n, 2))
    probe[..., 0] = 1.0
    obj = np.stack([delta, KAPPA * delta], -1)[:, :, None, :]
    inten = be.to_numpy(be.evaluate(lambda p: model.intensity(be, p, batch),
                                    {"obj": obj, "probe": probe}))
    if noise:
        inten = inten + noise * np.random.default_rng(seed).standard_normal(inten.shape)
    inten = np.clip(inten, 0.0, None)
    write_dataset(path, np.sqrt(inten)[None], probe_pos_px=np.zeros((len(dists_m), 2)),
                  energy_ev=ENERGY_EV, psize_cm=PSIZE_M * 100,
                  free_prop_cm=[d * 100 for d in dists_m], theta=np.zeros(1), overwrite=True)
    return delta, inten


def settings_for(data: Path, n: int, epochs: int, out: Path, algorithm: str = "fresnel",
                 step: float = 1e-9) -> dict:
    return {
        "dataset": {"path": str(data)},
        "model": {"kappa": KAPPA, "forward_algorithm": algorithm},
        "object": {"shape": [n, n, 1], "init": "constant"},
        "probe": {"type": "plane"},
        "parameters": {"object": {"optimize": True, "optimizer": "adam", "step_size": step}},
        "optimization": {"n_epochs": epochs, "minibatch_size": 1},
        "output": {"folder": str(out)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small and fast")
    ap.add_argument("--out", type=Path, default=Path("daskorym-example-multidistance"))
    ap.add_argument("--phase", type=float, default=0.5, help="largest phase shift (rad)")
    ap.add_argument("--alpha", type=float, default=1e-2, help="CTF regularisation")
    ap.add_argument("--ctf-iter", action="store_true", help="also iterate the CTF model")
    args = ap.parse_args()
    # distances within N psize^2 / lambda (0.88 cm for 64 px, 3.5 cm for 256 px): beyond it
    # the sampled Fresnel kernel aliases (daskorym warns)
    n, dists, epochs = ((64, (0.002, 0.004, 0.008), 20) if args.quick
                        else (256, (0.004, 0.008, 0.016, 0.032), 30))
    if args.out.exists():
        shutil.rmtree(args.out)  # the example's own folder, remade each time
    args.out.mkdir(parents=True)
    data = args.out / "data.h5"
    delta, inten = simulate_holograms(data, n, dists, args.phase)
    k1 = 2 * np.pi * PSIZE_M / WAVELENGTH_M

    t0 = time.perf_counter()
    d_ctf = ctf_retrieve(inten, dists, PSIZE_M, WAVELENGTH_M, KAPPA, alpha=args.alpha, k1=k1)
    t_ctf = time.perf_counter() - t0
    print(f"CTF retrieval: SSIM {ssim(d_ctf, delta):.4f}, Pearson "
          f"{np.corrcoef(d_ctf.ravel(), delta.ravel())[0, 1]:.4f}, SSIM with the mean matched "
          f"{ssim(d_ctf - d_ctf.mean() + delta.mean(), delta):.4f} in {t_ctf:.3f} s")

    start = ctf_initial_object(inten, dists, PSIZE_M, WAVELENGTH_M, KAPPA, (n, n, 1),
                               alpha=args.alpha, k1=k1)
    runs = [("fresnel", "iterative Fresnel from CTF start")]
    if args.ctf_iter:
        runs.append(("ctf", "iterative CTF model from CTF start"))
    step = float(delta.max()) / 50  # the mean of delta is weakly constrained (2 kappa at q = 0)
    result = None
    for algo, label in runs:
        t0 = time.perf_counter()
        result = daskorym.reconstruct(settings_for(data, n, epochs, args.out / f"recon_{algo}",
                                                   algo, step),
                                      InMemoryInputs(initial_object=start))
        sec = time.perf_counter() - t0
        d = np.asarray(result.object)[:, :, 0, 0]
        print(f"{label}: SSIM {ssim(d, delta):.4f}, Pearson "
              f"{np.corrcoef(d.ravel(), delta.ravel())[0, 1]:.4f}, mean offset "
              f"{(d.mean() - delta.mean()) / np.ptp(delta):+.3f} of the range, SSIM with the mean "
              f"matched {ssim(d - d.mean() + delta.mean(), delta):.4f}; {epochs} epochs in {sec:.1f} s")
    from _example import save_png  # (here: the module is also imported by the tests)
    as_obj = lambda d2: np.stack([d2, KAPPA * d2], -1)[:, :, None, :]  # noqa: E731
    save_png(args.out / "comparison.png", as_obj(delta),
             {"CTF": as_obj(d_ctf), "iterative": np.asarray(result.object)[:, :, :1]},
             "delta_beta", "projected delta")
    print(f"comparison image {args.out / 'comparison.png'}")
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
