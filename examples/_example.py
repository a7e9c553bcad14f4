"""Small helpers shared by the method examples (cdi, nearfield_ptycho, sparse_multislice,
tiled_holography): a fresh output folder, reading the truth, the phase/delta image compared
with SSIM, and the truth-vs-result PNG."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np

from daskorym.metrics import scaled_complex_error, ssim, to_complex


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small and fast")
    ap.add_argument("--out", type=Path, default=Path(default_out))
    return ap


def fresh_folder(out: Path) -> None:
    """Remake the example's own output folder."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def read_truth(path: Path) -> tuple[np.ndarray, dict]:
    """True object ``[Ly, Lx, Lz, 2]`` and the truth file's attributes (plus positions)."""
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
        attrs["probe_pos_px"] = f["probe_pos_px"][:]
        attrs["probe"] = f["probe"][:]
        return f["obj"][:], attrs


def phase_image(estimate: np.ndarray, truth: np.ndarray, unknown_type: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, truth) images compared, global phase offset removed: delta for delta_beta
    objects, shifted by a constant so that its mean is the truth's (a constant delta is a
    global phase, which the data do not fix); for real_imag objects the phase after the best
    global complex scaling."""
    if unknown_type == "delta_beta":
        e, t = np.asarray(estimate[..., 0], np.float64), np.asarray(truth[..., 0], np.float64)
        return e - e.mean() + t.mean(), t
    e, t = to_complex(estimate), to_complex(truth)
    c = np.vdot(e, t) / np.vdot(e, e)
    return np.angle(c * e), np.angle(t)


def errors(estimate: np.ndarray, truth: np.ndarray, unknown_type: str, k1: float = 1.0
           ) -> tuple[float, float]:
    """(complex error ``min_c ||c x - t|| / ||t||`` of the transmission, SSIM of the
    phase/delta image) of one 2D object ``[Ly, Lx, 2]`` against the truth."""
    err = scaled_complex_error(to_complex(estimate, unknown_type, k1),
                               to_complex(truth, unknown_type, k1))
    a, b = phase_image(estimate, truth, unknown_type)
    return err, ssim(a, b)


def save_png(path: Path, truth: np.ndarray, results: dict[str, np.ndarray], unknown_type: str,
             label: str) -> None:
    """One row per slice: the truth's phase/delta image and each result's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n_slices = truth.shape[2]
    cols = 1 + len(results)
    fig, axes = plt.subplots(n_slices, cols, figsize=(3.2 * cols, 3.2 * n_slices), squeeze=False)
    for z in range(n_slices):
        t = phase_image(truth[:, :, z], truth[:, :, z], unknown_type)[1]
        axes[z, 0].imshow(t, cmap="gray")
        axes[z, 0].set_title(f"truth ({label})" + (f", slice {z}" if n_slices > 1 else ""))
        for ax, (name, est) in zip(axes[z, 1:], results.items()):
            ax.imshow(phase_image(est[:, :, z], truth[:, :, z], unknown_type)[0], cmap="gray",
                      vmin=t.min(), vmax=t.max())
            ax.set_title(name)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
