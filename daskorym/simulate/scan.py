"""Scan positions: raster scans for ptychography and contiguous tile grids for full-field data.

Positions are float64 ``[n, 2]`` arrays of top-left corners ``(y, x)`` in object
pixels, in row-major order (y outer, x inner).
"""

from __future__ import annotations

import math

import numpy as np


def _axis_positions(length_px: float, probe_px: int, step_px: float) -> np.ndarray:
    """Corners along one axis: evenly spaced by ``step_px``, centred on the object.

    ``n = ceil((L - p) / step) + 1`` corners span ``(n - 1) step >= L - p``; the
    excess (``< step``) is split on both sides and the first corner rounded down, so
    a tile sticks out by at most half a step (at most half a probe as ``step <= p``).
    """
    n = int(math.ceil((length_px - probe_px) / step_px - 1e-9)) + 1
    span = (n - 1) * step_px
    start = math.floor((length_px - probe_px - span) / 2.0)
    return start + step_px * np.arange(n, dtype=np.float64)


def raster_positions(obj_shape_yx: tuple[int, int], probe_shape: tuple[int, int],
                     step_px: float | tuple[float, float], jitter_px: float = 0.0,
                     seed: int = 0, margin_px: float = 0.0) -> np.ndarray:
    """A raster scan covering the object.

    Parameters
    ----------
    obj_shape_yx : (Ly, Lx) object size in pixels
    probe_shape : (py, px) probe size; at most the object's size
    step_px : scan step (one value, or (step_y, step_x)); in (0, probe size]
    jitter_px : uniform random offsets in [-jitter, jitter] added to each
        coordinate (sub-pixel positions), seeded by ``seed``
    seed : random seed of the jitter
    margin_px : scan a field ``margin_px`` larger than the object on every side, so that
        the bright centre of a tapered probe (a Gaussian) also passes over the object's
        border pixels, which the tiles' faint edges barely light otherwise

    Returns
    -------
    float64 ``[n_y * n_x, 2]`` top-left corners, y outer.  Every object pixel is
    under at least one tile (without jitter); a tile sticks out of the object by
    at most half a step plus ``margin_px`` (plus the jitter).
    """
    ly, lx = (int(v) for v in obj_shape_yx)
    py, px = (int(v) for v in probe_shape)
    steps = np.broadcast_to(np.asarray(step_px, np.float64), (2,))
    if py > ly or px > lx:
        raise ValueError(f"probe {(py, px)} is larger than the object {(ly, lx)}")
    for step, p, axis in zip(steps, (py, px), "yx"):
        if not 0 < step <= p:
            raise ValueError(f"step_px along {axis} must be in (0, {p}] (the probe size) so the "
                             f"tiles overlap or touch, got {step}")
    if jitter_px < 0:
        raise ValueError(f"jitter_px must be >= 0, got {jitter_px}")
    if not (math.isfinite(margin_px) and 0 <= margin_px <= min(py, px) / 2):
        raise ValueError(f"margin_px must be in [0, {min(py, px) / 2}] (half the probe), "
                         f"got {margin_px}")
    m = float(margin_px)
    ys = _axis_positions(ly + 2 * m, py, float(steps[0])) - m
    xs = _axis_positions(lx + 2 * m, px, float(steps[1])) - m
    pos = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    if jitter_px > 0:
        pos = pos + np.random.default_rng([seed, 2]).uniform(-jitter_px, jitter_px, pos.shape)
    return pos


def tile_size(length_px: int, n_tiles: int) -> int:
    """Adorym's tile size ``ceil(L / N)``; ValueError if a tile would be empty."""
    if n_tiles < 1:
        raise ValueError(f"number of tiles must be >= 1, got {n_tiles}")
    size = -(-int(length_px) // int(n_tiles))
    if (n_tiles - 1) * size >= length_px:
        raise ValueError(f"{n_tiles} tiles of size ceil({length_px}/{n_tiles}) = {size} px would "
                         f"leave the last tile outside an image of {length_px} px")
    return size


def grid_tiles(image_shape: tuple[int, int], n_tiles_y: int, n_tiles_x: int
               ) -> tuple[np.ndarray, tuple[int, int]]:
    """Contiguous tiles of size ``(ceil(Ly / ny), ceil(Lx / nx))`` covering an image.

    Tile ``(i, j)`` has its top-left corner at ``(i t_y, j t_x)``; index ``i nx + j``.
    The last row / column of tiles may reach past the image by less than one tile
    (``n t - L`` pixels).

    Returns
    -------
    (positions float64 ``[ny * nx, 2]``, (t_y, t_x))
    """
    ty = tile_size(image_shape[0], n_tiles_y)
    tx = tile_size(image_shape[1], n_tiles_x)
    ys = ty * np.arange(n_tiles_y, dtype=np.float64)
    xs = tx * np.arange(n_tiles_x, dtype=np.float64)
    pos = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    return pos, (ty, tx)


LAYOUTS = ("raster", "whole", "grid")


def scan_layout(layout: str, obj_shape_yx: tuple[int, int], *,
                probe_shape: tuple[int, int] | None = None, step_px: float | None = None,
                jitter_px: float = 0.0, seed: int = 0, tiles: tuple[int, int] = (1, 1),
                safe_zone_px: int = 0, n_dists: int = 1, margin_px: float = 0.0
                ) -> tuple[tuple[int, int], np.ndarray]:
    """Probe (wave tile) shape and positions of one of the :data:`LAYOUTS`.

    * ``raster``: a scanned ``probe_shape`` probe, :func:`raster_positions` with
      ``step_px`` (default a quarter of the probe) over the object and ``margin_px``
      around it;
    * ``whole``: one tile, the object's shape, at (0, 0) (full-field CDI);
    * ``grid``: :func:`grid_tiles` detector tiles of the object's field, the wave tile
      ``safe_zone_px`` larger on each side; the grid is repeated ``n_dists`` times
      (tile-then-distance order: index ``i_dist * n_blocks + i_block``).

    Returns
    -------
    ((py, px), float64 ``[n_tiles, 2]`` top-left corners of the detector tiles)
    """
    if layout == "whole":
        return (int(obj_shape_yx[0]), int(obj_shape_yx[1])), np.zeros((1, 2))
    if layout == "raster":
        if probe_shape is None:
            raise ValueError("a raster scan needs probe_shape (py, px)")
        probe = (int(probe_shape[0]), int(probe_shape[1]))
        step = max(1, min(probe) // 4) if step_px is None else step_px
        return probe, raster_positions(obj_shape_yx, probe, step, jitter_px, seed, margin_px)
    if layout == "grid":
        grid, (ty, tx) = grid_tiles(obj_shape_yx, int(tiles[0]), int(tiles[1]))
        if safe_zone_px < 0:
            raise ValueError(f"safe_zone_px must be >= 0, got {safe_zone_px}")
        return (ty + 2 * safe_zone_px, tx + 2 * safe_zone_px), np.tile(grid, (n_dists, 1))
    raise ValueError(f"unknown scan layout {layout!r}; expected one of {LAYOUTS}")
