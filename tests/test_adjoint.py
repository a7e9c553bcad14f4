"""Adjoint (dot-product) tests for every linear operator, from one registry.

For each operator A with claimed adjoint A^H: ``|<y, A x> - <A^H y, x>| /
max(|<y, A x>|, |<A^H y, x>|) < 1e-5`` in float64, random x and y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.physics import (Region, RotationOperator, add_region, extract_region,
                              fourier_shift, fresnel_kernel, propagate_far,
                              propagate_far_adjoint, propagate_fresnel)


@dataclass
class LinearOp:
    name: str
    in_shape: tuple
    out_shape: tuple
    complex_: bool
    forward: Callable  # (be, x) -> y
    adjoint: Callable  # (be, y) -> x


def _fresnel(shape, approx):
    kern = fresnel_kernel(shape, 1e-7, 1e-10, 5e-4, fresnel_approx=approx)

    def fwd(be, x):
        return propagate_fresnel(be, x, be.asarray(kern))

    def adj(be, y):
        return propagate_fresnel(be, y, be.asarray(np.conj(kern)))
    return fwd, adj


def _far(sign, normalize):
    return (lambda be, x: propagate_far(be, x, sign, normalize),
            lambda be, y: propagate_far_adjoint(be, y, sign, normalize))


def _shift(shifts):
    s = np.asarray(shifts, np.float64)
    return (lambda be, x: fourier_shift(be, x, be.asarray(s)),
            lambda be, y: fourier_shift(be, y, be.asarray(-s)))


IY, IX = np.array([0, 3, 5, 5]), np.array([1, 0, 4, 6])


def _patches():
    return (lambda be, x: be.gather_patches(x, IY, IX, (4, 5)),
            lambda be, y: be.scatter_add_patches(y, IY, IX, (9, 11, 3, 2)))


def _rotation(theta):
    rot = RotationOperator((10, 7), theta)
    return (lambda be, x: be.asarray(rot(be.to_numpy(x))),
            lambda be, y: be.asarray(rot.adjoint(be.to_numpy(y))))


REGION = Region(-2, 3, 6, 9)


def _region():
    def fwd(be, x):
        return be.asarray(extract_region(be.to_numpy(x), REGION))

    def adj(be, y):
        out = np.zeros((8, 10, 3, 2))
        add_region(out, REGION, be.to_numpy(y))
        return be.asarray(out)
    return fwd, adj


def _buffer(width):
    def fwd(be, x):
        return x[..., width:-width, width:-width]

    def adj(be, y):
        return be.pad(y, [(0, 0)] * (len(y.shape) - 2) + [(width, width)] * 2)
    return fwd, adj


OPERATORS = [
    LinearOp("fresnel_paraxial", (3, 2, 12, 10), (3, 2, 12, 10), True, *_fresnel((12, 10), True)),
    LinearOp("fresnel_exact", (3, 2, 12, 10), (3, 2, 12, 10), True, *_fresnel((12, 10), False)),
    LinearOp("farfield_fft", (3, 8, 9), (3, 8, 9), True, *_far(1, False)),
    LinearOp("farfield_fft_ortho", (3, 8, 9), (3, 8, 9), True, *_far(1, True)),
    LinearOp("farfield_ifft_sign-1", (3, 8, 9), (3, 8, 9), True, *_far(-1, False)),
    LinearOp("fourier_shift", (3, 2, 8, 7), (3, 2, 8, 7), True,
             *_shift([[0.3, -1.7], [2.5, 0.1], [-0.4, 0.45]])),
    LinearOp("patch_gather", (9, 11, 3, 2), (4, 4, 5, 3, 2), False, *_patches()),
    LinearOp("rotation_0.7rad", (4, 10, 7, 2), (4, 10, 7, 2), False, *_rotation(0.7)),
    LinearOp("rotation_2.1rad", (4, 10, 7, 2), (4, 10, 7, 2), False, *_rotation(2.1)),
    LinearOp("region_extract", (8, 10, 3, 2), (6, 9, 3, 2), False, *_region()),
    LinearOp("buffer_crop", (3, 12, 14), (3, 8, 10), True, *_buffer(2)),
]


def _random(rng, shape, complex_):
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if complex_ else x


@pytest.mark.parametrize("backend", ["torch", "autograd"])
@pytest.mark.parametrize("op", OPERATORS, ids=[o.name for o in OPERATORS])
def test_adjoint(op, backend):
    be = get_backend(backend, "float64")
    rng = np.random.default_rng(0)
    x = _random(rng, op.in_shape, op.complex_)
    y = _random(rng, op.out_shape, op.complex_)
    ax = be.to_numpy(op.forward(be, be.asarray(x)))
    ahy = be.to_numpy(op.adjoint(be, be.asarray(y)))
    assert ax.shape == op.out_shape and ahy.shape == op.in_shape
    lhs = np.vdot(y, ax)
    rhs = np.vdot(ahy, x)
    rel = abs(lhs - rhs) / max(abs(lhs), abs(rhs))
    print(f"{op.name} [{backend}]: <y,Ax>={lhs:.6e} <A^H y,x>={rhs:.6e} rel={rel:.1e}")
    assert rel < 1e-5


def test_registry_covers_operators():
    names = {o.name.split("_")[0] for o in OPERATORS}
    assert {"fresnel", "farfield", "fourier", "patch", "rotation", "region", "buffer"} <= names


@pytest.mark.parametrize("region", [Region(2, 3, 5, 4), Region(-3, -2, 6, 7), Region(5, 6, 8, 9),
                                    Region(-2, -3, 16, 17), Region(20, 1, 3, 3),
                                    Region(0, 0, 10, 12)])
def test_extract_region_equals_padded_slice(region):
    """The one-pass extract (copy inside, vacuum only in the strips outside) equals slicing
    the object padded with vacuum, for regions inside, across each edge, around and outside."""
    rng = np.random.default_rng(0)
    obj = rng.standard_normal((10, 12, 3, 2))
    vac = (1.0, -0.5)
    pad = 25
    big = np.empty((10 + 2 * pad, 12 + 2 * pad, 3, 2))
    big[...] = vac
    big[pad:pad + 10, pad:pad + 12] = obj
    ref = big[pad + region.y0:pad + region.y0 + region.ny, pad + region.x0:pad + region.x0 + region.nx]
    np.testing.assert_array_equal(extract_region(obj, region, vac), ref)
