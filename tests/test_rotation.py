"""Rotation about y: slab invariance, identity, exact quarter turns, inverse."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.physics import RotationOperator


@pytest.fixture
def volume():
    rng = np.random.default_rng(3)
    return rng.standard_normal((13, 16, 11, 2)).astype(np.float32)


@pytest.mark.parametrize("theta", [0.3, 1.1, 2.9, -0.8])
def test_slab_by_slab_equals_whole_volume(volume, theta):
    rot = RotationOperator(volume.shape[1:3], theta)
    whole = rot(volume)
    slabs = np.concatenate([rot(volume[a:b]) for a, b in [(0, 4), (4, 5), (5, 13)]])
    assert np.array_equal(whole, slabs)
    back_whole = rot.adjoint(whole)
    back_slabs = np.concatenate([rot.adjoint(whole[a:b]) for a, b in [(0, 6), (6, 13)]])
    assert np.array_equal(back_whole, back_slabs)


def test_zero_angle_is_identity(volume):
    assert np.array_equal(RotationOperator(volume.shape[1:3], 0.0)(volume), volume)


def test_quarter_turn_is_a_permutation():
    vol = np.arange(2 * 5 * 5, dtype=np.float64).reshape(2, 5, 5, 1)
    out = RotationOperator((5, 5), np.pi / 2)(vol)
    # xs = -(z - c) + c, zs = (x - c) + c  =>  out[:, x, z] = vol[:, 4 - z, x]
    expected = np.transpose(vol[:, ::-1, :, :], (0, 2, 1, 3))
    assert np.allclose(out, expected, atol=1e-12)


def test_rotation_then_inverse_recovers_smooth_interior():
    ly, lx, lz = 2, 40, 40
    x, z = np.meshgrid(np.arange(lx), np.arange(lz), indexing="ij")
    blob = np.exp(-((x - 19.5) ** 2 + (z - 19.5) ** 2) / (2 * 6.0 ** 2))
    vol = np.broadcast_to(blob[None, :, :, None], (ly, lx, lz, 1)).copy()
    rot = RotationOperator((lx, lz), 0.5)
    back = rot.inverse(rot(vol))
    assert np.max(np.abs(back - vol)) < 0.02


def test_shape_mismatch_is_reported(volume):
    with pytest.raises(ValueError, match="does not match"):
        RotationOperator((5, 5), 0.1)(volume)
