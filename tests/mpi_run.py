"""Run reconstructions under ``mpiexec`` for the MPI tests.

``python mpi_run.py SETTINGS1.json OUT1.npz [SETTINGS2.json OUT2.npz ...]``: every rank runs
each reconstruction in turn (one interpreter start for all); rank 0 saves the final object,
the probe, the loss history and the other parameters (``param_<name>``) of each.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from daskorym.execution import make_reconstruction


def run_one(settings_path: str, out_path: str) -> None:
    with open(settings_path) as f:
        settings = json.load(f)
    with make_reconstruction(settings) as rec:
        rec.run()
        obj = rec.object.copy()  # collective in modes 'do' and 'h5'
        probe = rec.probe.copy()
        losses = np.array([h[2] for h in rec.history])
        extra = {f"param_{name}": p.value.copy() for name, p in rec.params.items()
                 if name not in ("object", "probe")}
        rank = getattr(rec, "rank", 0)
    if rank == 0:
        np.savez(out_path, obj=obj, probe=probe, losses=losses, **extra)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: mpi_run.py SETTINGS.json OUT.npz [SETTINGS.json OUT.npz ...]")
    try:
        for k in range(0, len(args), 2):
            run_one(args[k], args[k + 1])
    except BaseException:
        # one rank's error ends the whole run at once (the others would wait in their next
        # collective until the test's timeout)
        import traceback

        from mpi4py import MPI
        traceback.print_exc()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
