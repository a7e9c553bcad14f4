"""3D ptycho-tomography: simulate a phantom over many angles, reconstruct delta and beta.

Two regimes (``--regime``):

* ``multislice`` (default): 1 nm voxels, so the 64 nm thick object is far beyond the depth
  of focus (about 2 dx^2 / lambda = 8 nm at 5 keV) and the multislice model is needed;
* ``projection``: 10 nm voxels, the 640 nm object lies within the depth of focus (about
  0.8 um), and the projection approximation (``model.pure_projection``) is used.

The data are always simulated with multislice.  Delta/beta representation, TV
regularisation and non-negativity; the probe is known.  Full size (default): 64^3 phantom,
16 angles over 180 degrees, 81 positions of 32x32 per angle (step 6, the scan reaching 6
pixels beyond the object so that the Gaussian probe's bright centre lights the object's
border: scanned over the object alone, its top and bottom rows get 0.1 % of the light and
are not measured), 14 epochs of Adam with the step halved after 4 epochs and again after 8.
``--quick``: 24^3, 8 angles, 14 epochs.  Prints the Pearson correlation and the SSIM (the
paper's global definition) of delta, whole volume and central slice, and saves
``comparison.png``.

    python examples/ptychotomo3d.py [--quick] [--out DIR] [--regime multislice|projection]

From the command line (``examples/configs/ptychotomo3d.toml``)::

    daskorym simulate farfield_ptychography --out tomo.h5 --obj-shape 64,64,64 \
        --probe-shape 32,32 --step 6 --n-theta 16
    daskorym reconstruct examples/configs/ptychotomo3d.toml --set dataset.path=tomo.h5

(the TOML starts from a Gaussian probe guess and refines it, as there is no known probe
on the command line.)
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

import daskorym
from daskorym.metrics import pearson, ssim
from daskorym.simulate import simulate


def save_png(path: Path, truth: np.ndarray, result: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, img, title in zip(axes, (truth, result), ("truth", "reconstruction")):
        ax.imshow(img, cmap="gray", vmin=truth.min(), vmax=truth.max())
        ax.set_title(f"delta, central slice: {title}")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small and fast")
    ap.add_argument("--out", type=Path, default=Path("daskorym-example-3d"))
    ap.add_argument("--regime", default="multislice", choices=["multislice", "projection"])
    ap.add_argument("--tv", type=float, default=3e2, help="TV weight (gamma) at 64^3, 1 nm")
    ap.add_argument("--epochs", type=int, help="epochs (default 14)")
    ap.add_argument("--minibatch", type=int, help="tiles per update (default: one angle's)")
    ap.add_argument("--step", type=float, default=1e-4, help="Adam step on delta at 1 nm voxels")
    ap.add_argument("--angles", type=int, help="rotation angles (default 16; 8 with --quick)")
    args = ap.parse_args()
    projection = args.regime == "projection"
    size, probe, step, n_theta, epochs = (24, 16, 4, 8, 14) if args.quick else (64, 32, 6, 16, 14)
    epochs = args.epochs or epochs
    n_theta = args.angles or n_theta
    if args.out.exists():
        shutil.rmtree(args.out)  # the example's own folder, remade each time
    args.out.mkdir(parents=True)
    data = simulate("farfield_ptychography", args.out / "tomo.h5", obj_shape=(size,) * 3,
                    probe_shape=(probe, probe), step_px=step, scan_margin_px=probe // 5,
                    n_theta=n_theta,
                    theta_range_rad=(0.0, np.pi), psize_cm=1e-6 if projection else None,
                    progress=False)
    with h5py.File(args.out / "tomo_truth.h5") as f:
        truth = f["obj"][..., 0]
        known_probe = f["probe"][0, ..., 0] + 1j * f["probe"][0, ..., 1]
    ds = daskorym.open_dataset(data)
    n_tiles = ds.n_tiles
    minibatch = args.minibatch or n_tiles
    updates_per_epoch = n_theta * -(-n_tiles // minibatch)
    k_ratio = 1e-7 / ds.psize_cm  # (k dz at 1 nm voxels) / (k dz here)
    settings = {
        "dataset": {"path": str(data)},
        "model": {"pure_projection": projection},
        "object": {"shape": [size] * 3, "non_negativity": True},
        # step and TV weight tuned at 1 nm voxels, scaled with k dz (delta of a given phase
        # is k dz times smaller in larger voxels); Adam with a fixed step wanders about the
        # minimum, so the step is halved after 4 epochs and again after 8
        "parameters": {"object": {"optimize": True, "step_size": args.step * k_ratio,
                                  "options": {"dynamic_rate": True,
                                              "first_downrate_iteration": 4 * updates_per_epoch}}},
        "regularizers": {"gamma": args.tv * (size / 64) ** 3 / k_ratio},  # per voxel as at 64^3
        "optimization": {"n_epochs": epochs, "minibatch_size": minibatch},
        "output": {"folder": str(args.out / "recon"), "progress": False},
    }
    t0 = time.perf_counter()
    result = daskorym.reconstruct(settings, daskorym.InMemoryInputs(initial_probe=known_probe))
    seconds = time.perf_counter() - t0
    delta = result.object[..., 0]
    mid = size // 2
    print(f"{args.regime}: delta vs truth: Pearson {pearson(delta, truth):.4f}, SSIM "
          f"{ssim(delta, truth):.4f} (volume), SSIM {ssim(delta[mid], truth[mid]):.4f} (central "
          f"slice); {epochs} epochs in {seconds:.1f} s")
    save_png(args.out / "comparison.png", truth[mid], delta[mid])
    print(f"comparison image {args.out / 'comparison.png'}")
    print(f"results in {result.output_folder}")


if __name__ == "__main__":
    main()
