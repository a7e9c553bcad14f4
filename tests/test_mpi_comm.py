"""``alltoallv``: lists of arrays between ranks, in several rounds when messages are large.

The round size is lowered (``MAX_MESSAGE_BYTES``) so that the splitting that keeps real
messages under 2 GiB is exercised with small arrays, on 1 rank (null communicator) and on
3 real ranks under the venv's mpiexec.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daskorym.execution import comm as comm_mod

MPIEXEC = Path(sys.executable).parent / "mpiexec"

SCRIPT = """
import sys
import numpy as np
from daskorym.execution import comm as comm_mod

comm_mod.MAX_MESSAGE_BYTES = int(sys.argv[1])
comm = comm_mod.TimedComm(comm_mod.get_comm() if len(sys.argv) < 3 else comm_mod.NullComm())
rank, size = comm.Get_rank(), comm.Get_size()


def arrays(src, dst):
    # what rank src sends rank dst: a few arrays of sizes depending on both (some empty)
    shapes = [(src + dst + 4, 3), (0, 2), ((src * 7 + dst * 5) % 11, 2, 2)]
    return [np.arange(np.prod(s), dtype="f8").reshape(s) + 1000 * src + 100 * dst
            for s in shapes]


send = [arrays(rank, d) for d in range(size)]
expected = [[a.shape for a in arrays(s, rank)] for s in range(size)]
got = comm_mod.alltoallv(comm, send, expected, np.float64)
ok = all(np.array_equal(g, w) for s in range(size)
         for g, w in zip(got[s], arrays(s, rank)))
rounds = comm.calls - 1  # one allreduce of the round count, then one Alltoallv per round
print(f"rank {rank} of {size}: {'ok' if ok else 'WRONG'}", flush=True)
print(f"rounds {rounds}", flush=True)
sys.exit(0 if ok else 1)
"""


@pytest.mark.parametrize("max_bytes", [24, 80, 2 ** 31 - 2 ** 20])
def test_alltoallv_null_comm(max_bytes, tmp_path):
    script = tmp_path / "a2a.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(max_bytes), "null"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rank 0 of 1: ok" in out.stdout
    rounds = int(out.stdout.split("rounds ")[1].split()[0])
    assert (rounds > 1) == (max_bytes < 1000)


@pytest.mark.skipif(not MPIEXEC.exists() and not os.environ.get("DASKORYM_REQUIRE_MPI"),
                    reason=f"no mpiexec in the venv ({MPIEXEC})")
@pytest.mark.parametrize("max_bytes", [24, 80, 2 ** 31 - 2 ** 20])
def test_alltoallv_three_ranks_in_rounds(max_bytes, tmp_path):
    """24 bytes per round: every message is cut into many rounds of 3 doubles."""
    pytest.importorskip("mpi4py")
    script = tmp_path / "a2a.py"
    script.write_text(SCRIPT)
    out = subprocess.run([str(MPIEXEC), "-n", "3", sys.executable, str(script),
                          str(max_bytes)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    # the ranks' lines may interleave in mpiexec's output: match them anywhere
    assert sorted(re.findall(r"rank (\d) of 3: (ok|WRONG)", out.stdout)) == \
        [(str(r), "ok") for r in range(3)]
    rounds = {int(n) for n in re.findall(r"rounds (\d+)", out.stdout)}
    assert len(rounds) == 1 and (rounds.pop() > 1) == (max_bytes < 1000)  # same on every rank


def test_timed_comm_counts_collective_time():
    timed = comm_mod.TimedComm(comm_mod.NullComm())
    buf, out = np.ones(4), np.empty(4)
    timed.Allreduce(buf, out)
    timed.Barrier()
    assert np.array_equal(out, buf) and timed.calls == 2 and timed.seconds >= 0.0
    assert timed.Get_size() == 1  # not timed, passed through
    assert timed.calls == 2
