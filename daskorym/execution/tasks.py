"""Functions that run inside Dask tasks (or MPI ranks): pure, on NumPy arrays.

Slab functions take one y-slab ``[h, Lx, Lz, C]`` of an object-shaped array
and the slab's first row ``y0``; regions are :class:`~daskorym.physics.Region`
boxes in object pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..backend import get_backend
from ..optim import from_config
from ..parameters import constrain_object
from ..physics import Region, RotationOperator
from ..physics.region import extract_region


@lru_cache(maxsize=8)
def cached_backend(name: str, precision: str, device: str, threads: int):
    """One backend per worker process and configuration (threads set once)."""
    be = get_backend(name, precision, device)
    be.set_threads(threads)
    return be


def slab_bounds(ly: int, height: int) -> list[tuple[int, int]]:
    """Rows ``[(y0, y1), ...]`` of the y-slabs of ``height`` rows covering ``ly`` rows."""
    return [(y0, min(y0 + height, ly)) for y0 in range(0, ly, height)]


def even_slabs(ly: int, n: int) -> list[tuple[int, int]]:
    """:func:`slab_bounds` of ``ly`` rows cut into ``n`` slabs of (nearly) equal height (fewer
    when ``n > ly``): one per worker, rank or process."""
    return slab_bounds(ly, -(-ly // max(1, min(n, ly))))


def tile_groups(tiles: np.ndarray, n: int, rows_y: np.ndarray | None = None
                ) -> list[np.ndarray]:
    """A minibatch's tiles in (at most) ``n`` non-empty groups of nearly equal size, one per
    worker.  With ``rows_y`` (each tile's row in the object) the tiles are taken in the order
    of their rows, so that each group covers a band of the object: a smaller chunk to assemble
    and differentiate, and fewer gradient rows for the other slabs' owners (3D bench case,
    2 groups: chunks of 50 rows instead of 68).  One group keeps the minibatch's order."""
    tiles = np.asarray(tiles)
    n = min(n, len(tiles))
    if rows_y is not None and n > 1:
        tiles = tiles[np.argsort(rows_y, kind="stable")]
    return [g for g in np.array_split(tiles, n) if len(g)]


def slabs_under(bounds: list[tuple[int, int]], region: Region) -> list[int]:
    """Numbers of the slabs (``bounds`` as :func:`slab_bounds`) holding rows of ``region``."""
    return [i for i, (a, b) in enumerate(bounds) if a < region.y0 + region.ny and b > region.y0]


def rotate_slab(slab: np.ndarray, theta_rad: float) -> np.ndarray:
    """The slab rotated about y (rows are independent, so slab-local)."""
    if theta_rad == 0.0:
        return slab
    return RotationOperator(slab.shape[1:3], theta_rad)(slab)


@dataclass
class SlabRecord:
    """What a slab's owner holds: the object slab, its optimizer state and the
    gradient accumulated since the last update (rotated frame)."""

    obj: np.ndarray
    state: dict[str, np.ndarray]
    grad: np.ndarray


def rotate_record(record: SlabRecord, theta_rad: float) -> np.ndarray:
    return rotate_slab(record.obj, theta_rad)


def cut_piece(slab: np.ndarray | SlabRecord, y0: int, region: Region, fill: tuple[float, ...]
              ) -> tuple[int, np.ndarray]:
    """The rows of ``region`` inside this slab, over the region's x range (fill outside).

    ``slab`` is a rotated slab or, at angle 0, the owner's record.  Returns
    ``(row offset in the region, piece [rows, region.nx, Lz, C])``.
    """
    if isinstance(slab, SlabRecord):
        slab = slab.obj
    ya, n = _rows_in_slab(y0, slab.shape[0], region)
    return ya - region.y0, extract_region(slab, Region(ya - y0, region.x0, n, region.nx), fill)


def _rows_in_slab(y0: int, h: int, region: Region) -> tuple[int, int]:
    """First object row and number of rows of ``region`` inside the slab ``[y0, y0 + h)``."""
    ya = max(y0, region.y0)
    return ya, max(min(y0 + h, region.y0 + region.ny) - ya, 0)


#: marks a whole rotated slab among a gradient task's pieces: ``(SLAB, y0, slab)``
SLAB = "slab"


def assemble(region: Region, pieces: list[tuple], trailing: tuple[int, ...],
             fill: tuple[float, ...], dtype, out: np.ndarray | None = None) -> np.ndarray:
    """The region array ``[ny, nx, Lz, C]`` from pieces cut on the slab owners
    (``(row, piece)`` from :func:`cut_piece`) or whole rotated slabs (``(SLAB, y0, slab)``,
    cut here); rows no piece covers (outside the object) hold ``fill``.  Written into
    ``out`` when given (a view of a chunk), each element once."""
    if out is None:
        out = np.empty((region.ny, region.nx) + tuple(trailing), dtype)
    fill_v = np.asarray(fill, dtype)
    covered = np.zeros(region.ny, bool)
    for item in pieces:
        if item[0] == SLAB:
            _, y0, slab = item
            ya, rows = _rows_in_slab(y0, slab.shape[0], region)
            if not rows:
                continue
            row = ya - region.y0
            extract_region(slab, Region(ya - y0, region.x0, rows, region.nx), fill,
                           out=out[row:row + rows])
        else:
            row, piece = item
            rows = piece.shape[0]
            out[row:row + rows] = piece
        covered[row:row + rows] = True
    if not covered.all():
        out[~covered] = fill_v
    return out


@dataclass(frozen=True)
class KernelJob:
    """What a gradient task needs besides the object chunk."""

    backend: tuple[str, str, str, int]  # name, precision, device, threads
    wrt: tuple[str, ...]
    n_pix_global: int
    measured_fft_order: bool = False  # the measured data come ifftshift-ed (Problem.measured)


def gradient_task(model, job: KernelJob, batch, part_pieces: list, fill, small: dict,
                  measured: np.ndarray, loss, mask) -> dict[str, Any]:
    """Loss share and gradients of one worker's tiles of a global minibatch.

    ``batch`` is the worker's :class:`~daskorym.models.TileBatch`; ``part_pieces``
    holds, for each of ``batch.parts()``, the pieces cut on the slab owners.  The
    loss is divided by the pixels of the *global* minibatch so the shares add up
    to the mean.
    """
    be = cached_backend(*job.backend)
    lz_c = tuple(model.geometry.obj_shape[2:]) + (2,)
    dtype = np.dtype(job.backend[1])
    # the pieces go straight into the chunk (its parts tile it: one box, or tiles side by side)
    chunk = np.empty((batch.region.ny, batch.region.nx) + lz_c, dtype)
    for (reg, r0, c0), pieces in zip(batch.parts(), part_pieces):
        assemble(reg, pieces, lz_c, fill, dtype, out=chunk[r0:r0 + reg.ny, c0:c0 + reg.nx])
    params = dict(small, obj=chunk)

    def f(q):
        return model.tile_loss(be, q, batch, measured, loss, mask,
                               measured_fft_order=job.measured_fft_order)[0] / job.n_pix_global

    if job.wrt:
        value, grads = be.value_and_grad(f, params, list(job.wrt))
    else:
        value, grads = float(be.evaluate(f, params)), {}
    return {"loss": value, "grads": grads, "parts": batch.parts()}


def small_grads(result: dict[str, Any]) -> tuple[float, dict[str, np.ndarray]]:
    """The loss share and the gradients of every input but the object (sent to the client)."""
    return result["loss"], {k: v for k, v in result["grads"].items() if k != "obj"}


def _grad_entries(result: dict[str, Any]) -> list[tuple]:
    """``(region, r0, c0, array)`` per piece of a task's object gradient: the region's
    values are ``array[r0:r0 + ny, c0:c0 + nx]``."""
    if "entries" in result:
        return result["entries"]
    g = result["grads"].get("obj")
    if g is None:
        return []
    return [(region, r0, c0, g) for region, r0, c0 in result["parts"]]


def add_object_grad(grad_slab: np.ndarray, y0: int, result: dict[str, Any]) -> np.ndarray:
    """``grad_slab += `` the rows of the task's object gradient falling in this slab
    (``result``: a gradient task's or a :func:`slab_share`)."""
    h = grad_slab.shape[0]
    for region, r0, c0, g in _grad_entries(result):
        ya, yb = max(y0, region.y0), min(y0 + h, region.y0 + region.ny)
        xa, xb = max(region.x0, 0), min(region.x0 + region.nx, grad_slab.shape[1])
        if yb > ya and xb > xa:
            grad_slab[ya - y0:yb - y0, xa:xb] += g[r0 + ya - region.y0:r0 + yb - region.y0,
                                                   c0 + xa - region.x0:c0 + xb - region.x0]
    return grad_slab


def slab_share(result: dict[str, Any], y0: int, y1: int) -> dict[str, Any]:
    """The rows ``[y0, y1)`` of a gradient task's object gradient (what the owner of that
    slab adds; sent instead of the whole chunk's gradient)."""
    entries = []
    for region, r0, c0, g in _grad_entries(result):
        ya, yb = max(y0, region.y0), min(y1, region.y0 + region.ny)
        if yb > ya:
            rows = g[r0 + ya - region.y0:r0 + yb - region.y0, c0:c0 + region.nx].copy()
            entries.append((Region(ya, region.x0, yb - ya, region.nx), 0, 0, rows))
    return {"entries": entries}


def add_to_record(record: SlabRecord, y0: int, *results: dict[str, Any]) -> SlabRecord:
    """Add the object gradients of gradient tasks to the record's gradient slab."""
    for result in results:
        add_object_grad(record.grad, y0, result)
    return record


@dataclass(frozen=True)
class SlabConstraints:
    unknown_type: str = "delta_beta"
    non_negativity: bool = False
    object_type: str = "normal"


def update_slab(obj_slab: np.ndarray, grad_slab: np.ndarray, state: dict[str, np.ndarray],
                theta_rad: float, opt_config: dict, i_update: int,
                constraints: SlabConstraints
                ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Rotate the accumulated gradient back (exact adjoint), take an optimizer step,
    apply the constraints; returns the new slab, optimizer state and a zeroed gradient."""
    grad = grad_slab if theta_rad == 0.0 else \
        RotationOperator(grad_slab.shape[1:3], theta_rad).adjoint(grad_slab)
    obj = obj_slab.copy()
    new_state = {k: v.copy() for k, v in state.items()}
    from_config(opt_config).step(obj, grad.astype(obj.dtype, copy=False), new_state, i_update)
    constrain_object(obj, constraints.unknown_type, constraints.non_negativity,
                     constraints.object_type)
    return obj, new_state, np.zeros_like(grad_slab)


def add_and_update_record(record: SlabRecord, y0: int, theta_rad: float, opt_config: dict,
                          i_update: int, constraints: SlabConstraints,
                          *results: dict[str, Any]) -> SlabRecord:
    """:func:`add_to_record` then :func:`update_slab`, in one task (one hop fewer)."""
    add_to_record(record, y0, *results)
    return SlabRecord(*update_slab(record.obj, record.grad, record.state, theta_rad,
                                   opt_config, i_update, constraints))


def republish(key) -> Any:
    """The value this worker holds under ``key``, to be stored under a new key.

    Used to cut the chain of slab tasks: a worker keeps every released task that a task it
    still holds depends on, so a slab updated by a chain of tasks, one per batch, would keep
    a record of every batch for ever.  The caller holds ``key``'s future until this task has
    finished, so the value is there when it runs (it runs where the value is).  If the
    worker holding the copy is lost later, Dask cannot recompute it: it raises an error that
    names the loss, and the engine's recovery takes over."""
    from distributed import get_worker
    data = get_worker().data
    if key not in data:
        # Dask recomputes a lost result from its task: this one's input was the value of
        # a key already released, so it cannot be recomputed; the engine's recovery redoes
        # the epoch instead
        raise RuntimeError(f"slab {key} was lost with a worker")
    return data[key]
