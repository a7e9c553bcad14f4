"""The order of work in an epoch: a pure function of (seed, epoch).

Every engine (local, Dask, MPI) iterates the same list, so the same run
gives the same numbers however the tiles of a minibatch are spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchSpec:
    """One global minibatch: tiles of one angle."""

    i_theta: int
    tiles: np.ndarray
    last_of_angle: bool


def epoch_batches(seed: int, epoch: int, n_theta: int, n_tiles: int, minibatch_size: int,
                  randomize_tiles: bool = False) -> list[BatchSpec]:
    """Minibatches of an epoch.

    Angles are visited in a random order drawn from ``(seed, epoch)`` (in
    order when there is one angle).  Each angle's tiles, shuffled if
    ``randomize_tiles``, are cut into consecutive minibatches of
    ``minibatch_size`` (the last one may be smaller).
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    angles = rng.permutation(n_theta) if n_theta > 1 else np.arange(n_theta)
    out: list[BatchSpec] = []
    for i_theta in angles:
        tiles = rng.permutation(n_tiles) if randomize_tiles else np.arange(n_tiles)
        chunks = [tiles[i:i + minibatch_size] for i in range(0, n_tiles, minibatch_size)]
        for k, chunk in enumerate(chunks):
            out.append(BatchSpec(int(i_theta), chunk, k == len(chunks) - 1))
    return out
