"""Parallel HDF5: ranks started by the venv's mpiexec write one file with driver="mpio".

Needs h5py built with MPI (deploy/install-parallel-h5py.sh does that); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

if not h5py.get_config().mpi:
    if os.environ.get("DASKORYM_REQUIRE_MPI"):  # CI: parallel HDF5 must be there
        raise RuntimeError("DASKORYM_REQUIRE_MPI is set but h5py is not built with MPI; "
                           "run deploy/install-parallel-h5py.sh")
    pytest.skip("h5py is not built with MPI (h5py.get_config().mpi is False); "
                "deploy/install-parallel-h5py.sh installs a parallel h5py",
                allow_module_level=True)
pytest.importorskip("mpi4py")

MPIEXEC = Path(sys.executable).parent / "mpiexec"
ROWS, COLS = 5, 3

SCRIPT = f"""
import os, sys
import numpy as np
import h5py
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
path = sys.argv[1]


def rows(r):
    return r * 1000 + np.arange({ROWS} * {COLS}, dtype="f8").reshape({ROWS}, {COLS})


# one MPI library in the process: mpi4py and h5py on the same MPICH
libs = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        p = line.split()[-1]
        if os.path.basename(p).startswith(("libmpi.so", "libmpich.so", "libmpi_abi.so")):
            libs.add(os.path.realpath(p))
assert len(libs) == 1, libs

with h5py.File(path, "w", driver="mpio", comm=comm) as f:
    assert f.driver == "mpio"
    d = f.create_dataset("rows", (size * {ROWS}, {COLS}), dtype="f8")
    d[rank * {ROWS}:(rank + 1) * {ROWS}] = rows(rank)           # independent I/O
    c = f.create_dataset("ranks", (size,), dtype="i4")
    with c.collective:
        c[rank:rank + 1] = [rank]                              # collective I/O
    f.attrs["nprocs"] = size
comm.Barrier()
if rank == 0:
    with h5py.File(path, "r") as f:
        ok = (np.array_equal(f["rows"][...], np.concatenate([rows(r) for r in range(size)]))
              and f["ranks"][...].tolist() == list(range(size)) and f.attrs["nprocs"] == size)
    print("rank 0 verified:", ok, flush=True)
    if not ok:
        comm.Abort(1)
comm.Barrier()
"""


@pytest.mark.skipif(not MPIEXEC.exists() and not os.environ.get("DASKORYM_REQUIRE_MPI"),
                    reason=f"no mpiexec in the venv ({MPIEXEC})")
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpio_each_rank_writes_its_rows(nprocs, tmp_path):
    script = tmp_path / "write.py"
    script.write_text(SCRIPT)
    path = tmp_path / "parallel.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([str(MPIEXEC), "-n", str(nprocs), sys.executable, str(script),
                               str(path)], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {nprocs} timed out:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "rank 0 verified: True" in proc.stdout

    with h5py.File(path, "r") as f:
        assert f.attrs["nprocs"] == nprocs
        assert f["ranks"][...].tolist() == list(range(nprocs))
        got = f["rows"][...]
    assert got.shape == (nprocs * ROWS, COLS)
    for r in range(nprocs):
        np.testing.assert_array_equal(
            got[r * ROWS:(r + 1) * ROWS],
            r * 1000 + np.arange(ROWS * COLS, dtype="f8").reshape(ROWS, COLS))
