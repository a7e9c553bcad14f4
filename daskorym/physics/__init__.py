"""Physics: propagation, modulation, multislice, shifts, rotation, probes.

Pure functions of a :class:`~daskorym.backend.Backend` and arrays; no state.
"""

from .multislice import UNKNOWN_TYPES, Modulation, multislice, pure_projection, sparse_multislice
from .propagation import (INF, fresnel_kernel, fresnel_kernel_diff, fresnel_phase_coefficient,
                          frequency_sq, propagate_far, propagate_far_adjoint, propagate_fresnel)
from .region import Region, add_region, extract_region, split_positions, vacuum_value
from .rotation import RotationOperator
from .shift import fourier_shift, shift_ramp

__all__ = [
    "INF", "UNKNOWN_TYPES", "Modulation", "Region", "RotationOperator", "add_region",
    "extract_region", "split_positions", "vacuum_value", "fourier_shift",
    "frequency_sq", "fresnel_kernel", "fresnel_kernel_diff", "fresnel_phase_coefficient",
    "multislice", "propagate_far", "propagate_far_adjoint", "propagate_fresnel",
    "pure_projection", "shift_ramp", "sparse_multislice",
]
