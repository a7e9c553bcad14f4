"""Divide full-field images into tiles (``daskorym tile``), streaming one angle at a time.

Tiling follows Adorym: an image ``[Ly, Lx]`` is cut into ``ny x nx`` contiguous
tiles of size ``(t_y, t_x) = (ceil(Ly / ny), ceil(Lx / nx))``.  When ``L`` is not a
multiple of ``n`` the image is first padded at its bottom / right edge to
``(ny t_y, nx t_x)`` by repeating the edge pixels (``numpy.pad(mode="edge")``), so
every tile is full and every original pixel lies in exactly one tile.  The
padded pixels are measurements invented from their neighbours; they sit beyond
the original field of view and the object there is vacuum-padded by the models.

Multi-distance data (``n_dists`` images per angle, one per distance) are tiled
per distance and stored tile-then-distance: index ``i_dist * n_blocks + i_block``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..io import Dataset, open_dataset, write_dataset
from .scan import grid_tiles


class LazyAngles:
    """Array-like ``[n_theta, n_tiles, det_y, det_x]`` float32 whose angle ``i`` is made
    by ``make(i)`` when indexed (what :func:`daskorym.io.write_dataset` streams)."""

    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, int, int, int], make: Callable[[int], np.ndarray]
                 ) -> None:
        self.shape = tuple(int(n) for n in shape)
        self._make = make

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.shape[0]:
            raise IndexError(f"LazyAngles takes one angle index in [0, {self.shape[0]}), "
                             f"got {i!r}")
        block = np.asarray(self._make(int(i)), np.float32)
        if block.shape != self.shape[1:]:
            raise ValueError(f"angle {i}: expected a block of shape {self.shape[1:]}, "
                             f"found {block.shape}")
        return block


def tile_image(image: np.ndarray, n_tiles_y: int, n_tiles_x: int) -> np.ndarray:
    """Tiles ``[ny * nx, t_y, t_x]`` of an image ``[Ly, Lx]`` (edge-padded, row-major)."""
    pos, (ty, tx) = grid_tiles(image.shape[-2:], n_tiles_y, n_tiles_x)
    ly, lx = image.shape[-2:]
    padded = np.pad(image, ((0, n_tiles_y * ty - ly), (0, n_tiles_x * tx - lx)), mode="edge")
    tiles = padded.reshape(n_tiles_y, ty, n_tiles_x, tx).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles.reshape(n_tiles_y * n_tiles_x, ty, tx))


def untile(tiles: np.ndarray, positions_px: np.ndarray, image_shape: tuple[int, int]
           ) -> np.ndarray:
    """Inverse of :func:`tile_image`: paste tiles ``[n, t_y, t_x]`` at integer corners
    ``[n, 2]`` (relative to the image) and crop to ``image_shape``."""
    ty, tx = tiles.shape[-2:]
    pos = np.rint(np.asarray(positions_px)).astype(np.int64)
    ly = max(int(image_shape[0]), int(pos[:, 0].max()) + ty)
    lx = max(int(image_shape[1]), int(pos[:, 1].max()) + tx)
    out = np.zeros((ly, lx), tiles.dtype)
    for tile, (y, x) in zip(tiles, pos):
        out[y:y + ty, x:x + tx] = tile
    return out[:image_shape[0], :image_shape[1]]


def _n_dists(ds: Dataset) -> int:
    """Images per angle of a full-field dataset: 1, or one per distance."""
    if ds.is_far_field:
        raise ValueError(f"{ds.path}: far-field data cannot be tiled (a diffraction pattern is not "
                         "an image of the object); tiling is for near-field holograms")
    n_dists = ds.n_dists
    if ds.n_tiles != n_dists:
        raise ValueError(f"{ds.path}: expected a full-field dataset with one image per angle and "
                         f"distance ({n_dists} per angle), found {ds.n_tiles} tiles per angle")
    return n_dists


def _tiled_positions(ds: Dataset, i_theta: int, grid_px: np.ndarray) -> np.ndarray:
    """Tile corners ``[n_dists * n_blocks, 2]``: each source image's position plus the grid."""
    src = ds.positions(i_theta)
    return np.concatenate([p[None, :] + grid_px for p in src])


def _has_per_angle_positions(ds: Dataset) -> bool:
    return any(ds.positions_item(i) != "metadata/probe_pos_px" for i in range(ds.n_theta))


def tile_dataset(src: str | os.PathLike[str], dst: str | os.PathLike[str], n_tiles_y: int,
                 n_tiles_x: int, *, overwrite: bool = False, progress: bool = False) -> Path:
    """Write a tiled copy of a full-field dataset.

    Parameters
    ----------
    src : full-field dataset, ``[n_theta, n_dists, Ly, Lx]`` (``n_dists = 1`` unless
        ``metadata/free_prop_cm`` holds several distances)
    dst : output ``.h5`` or ``.zarr``; data ``[n_theta, n_dists * ny * nx, t_y, t_x]``
        in tile-then-distance order, ``metadata/probe_pos_px`` the tile corners
        (source position + grid corner, repeated per distance; per angle if the
        source has per-angle positions); energy, pixel size, distances and angles copied
    n_tiles_y, n_tiles_x : tiles along y and x (tile size ``ceil(L / n)``)
    overwrite : replace an existing ``dst``
    progress : show a progress bar over angles

    Notes
    -----
    No buffer zone is stored: tiles are detector crops, and the buffer
    (``safe_zone_px``) is a reconstruction setting of the tiled models.
    """
    src_path, dst_path = Path(src), Path(dst)
    if src_path.resolve() == dst_path.resolve():
        raise ValueError(f"source and destination are the same path: {src_path}")
    with open_dataset(src_path) as ds:
        n_dists = _n_dists(ds)
        grid_px, (ty, tx) = grid_tiles(ds.det_shape, n_tiles_y, n_tiles_x)
        n_out = n_dists * len(grid_px)
        shape = (ds.n_theta, n_out, ty, tx)
        bar = tqdm(total=ds.n_theta, desc="tile", unit="angle", disable=not progress)

        def make(i: int) -> np.ndarray:
            block = ds.read_angle(i)
            bar.update(1)
            return np.concatenate([tile_image(img, n_tiles_y, n_tiles_x) for img in block])

        positions = [_tiled_positions(ds, i, grid_px) for i in range(ds.n_theta)]
        per_angle = _has_per_angle_positions(ds)
        with bar:
            return write_dataset(
                dst_path, LazyAngles(shape, make),
                probe_pos_px=None if per_angle else positions[0],
                probe_pos_px_per_angle=positions if per_angle else None,
                energy_ev=ds.energy_ev, psize_cm=ds.psize_cm,
                free_prop_cm="inf" if ds.is_far_field else ds.free_prop_cm,
                theta=ds.theta, overwrite=overwrite)
