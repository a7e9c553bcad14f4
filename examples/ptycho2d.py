"""2D far-field ptychography: simulate, reconstruct (object and probe), compare with the truth.

Full size (default): 256x256 object whose magnitude and phase are two natural images,
64x64 Gaussian probe, 529 positions, Poisson noise; 30 epochs, probe refined from a
Gaussian guess after 5 epochs.  ``--quick``: 64x64 object, 16x16 probe, 40 epochs.

    python examples/ptycho2d.py [--quick] [--out DIR] [--backend torch|autograd]
                                [--engine local|dask|mpi] [--workers N]

``--engine dask`` runs on a local Dask cluster of ``--workers`` worker processes (the object
held by the workers as y-slabs); under ``mpiexec -n N`` use ``--engine mpi``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

import daskorym
from daskorym.metrics import illuminated_region, scaled_complex_error, to_complex
from daskorym.simulate import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small and fast")
    ap.add_argument("--out", type=Path, default=Path("daskorym-example-2d"))
    ap.add_argument("--backend", default="torch", choices=["torch", "autograd"])
    ap.add_argument("--engine", default="local", choices=["local", "dask", "mpi"])
    ap.add_argument("--workers", type=int, default=2, help="Dask workers (--engine dask)")
    args = ap.parse_args()
    rank = 0
    if args.engine == "mpi":
        from daskorym.execution.comm import get_comm
        rank = get_comm().Get_rank()
    size, probe, step, epochs = (64, 16, 4, 40) if args.quick else (256, 64, 9, 30)
    data = args.out / "data.h5"
    if rank == 0:
        if args.out.exists():
            shutil.rmtree(args.out)  # the example's own folder, remade each time
        args.out.mkdir(parents=True)
        simulate("farfield_ptychography", data, obj_shape=(size, size),
                 probe_shape=(probe, probe), step_px=step, unknown_type="real_imag",
                 noise="poisson", phase_max_rad=1.0, absorption=0.3)
    if args.engine == "mpi":
        get_comm().Barrier()
    n_per_epoch = -(-daskorym.open_dataset(data).n_tiles // 32)
    settings = {
        "dataset": {"path": str(data)},
        "model": {"unknown_type": "real_imag"},
        "object": {"shape": [size, size, 1]},
        "parameters": {"probe": {"optimize": True, "start_batch": 5 * n_per_epoch}},
        "optimization": {"n_epochs": epochs, "minibatch_size": 32},
        "execution": {"backend": args.backend, "engine": args.engine,
                      "n_workers": args.workers},
        "output": {"folder": str(args.out / "recon")},
    }
    t0 = time.perf_counter()
    result = daskorym.reconstruct(settings)
    seconds = time.perf_counter() - t0
    if rank != 0:
        return
    with h5py.File(args.out / "data_truth.h5") as f:
        truth = to_complex(f["obj"][:, :, 0])
        region = illuminated_region(f["probe_pos_px"][:], (probe, probe), truth.shape)
    err = scaled_complex_error(to_complex(result.object[:, :, 0]), truth, region)
    flat = scaled_complex_error(np.ones_like(truth), truth, region)
    print(f"complex error on the illuminated region: {err:.4f} (flat object: {flat:.4f}, "
          f"ratio {err / flat:.3f}); {epochs} epochs in {seconds:.1f} s on engine {args.engine}")
    print(f"results in {result.output_folder}")


if __name__ == "__main__":
    main()
