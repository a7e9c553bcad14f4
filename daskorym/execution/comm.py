"""MPI communicators for the MPI engine: mpi4py's, or a null one for a single process.

Only buffer-based collectives are used on arrays (``Allreduce``, ``Alltoallv``,
``Allgatherv``); the pickled lower-case calls carry only small Python values
(an error message at start-up).
"""

from __future__ import annotations

import os
import time

import numpy as np

MAX_MESSAGE_BYTES = 2 ** 31 - 2 ** 20  # stay under 2 GiB per message


class NullComm:
    """A communicator of one rank: the same code path without MPI."""

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1

    def bcast(self, obj, root: int = 0):
        return obj

    def allreduce(self, obj, op=None):
        return obj

    def Barrier(self) -> None:
        pass

    def Allreduce(self, sendbuf, recvbuf, op=None) -> None:
        recvbuf[...] = sendbuf

    def Allgatherv(self, sendbuf, recv) -> None:
        out = recv[0]
        out.reshape(-1)[:sendbuf.size] = sendbuf.reshape(-1)

    def Alltoallv(self, send, recv) -> None:
        sbuf, (scounts, sdispls), _ = send
        rbuf, (rcounts, rdispls), _ = recv
        rbuf[rdispls[0]:rdispls[0] + rcounts[0]] = sbuf[sdispls[0]:sdispls[0] + scounts[0]]


class TimedComm:
    """A communicator that adds the wall time spent in its collectives to ``seconds``.

    The time includes waiting for the slowest rank (load imbalance shows up here too).
    Other attributes pass through to the wrapped communicator (``raw``).
    """

    TIMED = ("Allreduce", "Alltoallv", "Allgatherv", "Barrier", "bcast", "allreduce")

    def __init__(self, comm) -> None:
        self.raw = comm
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(self.raw, name)
        if name not in self.TIMED:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        return timed


def launched_ranks() -> int:
    """Number of ranks ``mpiexec`` started this process among (1 when not under mpiexec).

    Read from the launcher's environment (MPICH/hydra, Open MPI, PMIx), without starting MPI.
    """
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def get_comm():
    """``MPI.COMM_WORLD`` when mpi4py is installed, else a :class:`NullComm`."""
    try:
        from mpi4py import MPI
    except ImportError:
        return NullComm()
    return MPI.COMM_WORLD


def mpi_datatype(dtype):
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI._typedict[np.dtype(dtype).char]


def alltoallv(comm, send: list[list[np.ndarray]], expected: list[list[tuple]], dtype
              ) -> list[list[np.ndarray]]:
    """Exchange lists of arrays between all ranks with buffer ``Alltoallv``.

    ``send[d]`` are the arrays for rank ``d``; ``expected[s]`` the shapes coming
    from rank ``s``.  Messages larger than ~2 GiB are sent in several rounds.
    Returns ``received[s]``, arrays of the expected shapes.
    """
    dtype = np.dtype(dtype)
    size = comm.Get_size()
    flat_send = [np.concatenate([a.astype(dtype, copy=False).ravel() for a in arrs])
                 if arrs else np.empty(0, dtype) for arrs in send]
    recv_counts = [int(sum(int(np.prod(s)) for s in shapes)) for shapes in expected]
    flat_recv = [np.empty(n, dtype) for n in recv_counts]
    per_round = max(1, MAX_MESSAGE_BYTES // dtype.itemsize)
    longest = max([b.size for b in flat_send] + recv_counts + [0])
    n_rounds = int(comm.allreduce(-(-longest // per_round) if longest else 0, op=max_op()))
    mtype = mpi_datatype(dtype)
    for r in range(n_rounds):
        lo, hi = r * per_round, (r + 1) * per_round
        chunks = [b[lo:hi] for b in flat_send]
        scounts = [c.size for c in chunks]
        sbuf = np.concatenate(chunks) if chunks else np.empty(0, dtype)
        rcounts = [max(0, min(n, hi) - lo) for n in recv_counts]
        rbuf = np.empty(sum(rcounts), dtype)
        comm.Alltoallv([sbuf, (scounts, _displs(scounts)), mtype],
                       [rbuf, (rcounts, _displs(rcounts)), mtype])
        for s, (cnt, d) in enumerate(zip(rcounts, _displs(rcounts))):
            flat_recv[s][lo:lo + cnt] = rbuf[d:d + cnt]
    out = []
    for s, shapes in enumerate(expected):
        arrays, pos = [], 0
        for shape in shapes:
            n = int(np.prod(shape))
            arrays.append(flat_recv[s][pos:pos + n].reshape(shape))
            pos += n
        out.append(arrays)
    assert size == len(send) == len(expected)
    return out


def _displs(counts: list[int]) -> list[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(counts)[:-1]])] if counts else []


def max_op():
    """``MPI.MAX`` (``None`` without mpi4py: the null communicator ignores ``op``)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.MAX
