"""Forward models: one class per imaging method, in a registry.

Add a model by subclassing :class:`ForwardModel` (or a concrete model),
setting ``name`` and ``inputs`` and decorating it with :func:`register_model`.
"""

from .base import MODELS, ForwardModel, Geometry, TileBatch, get_model, register_model
from .multidistance import MultiDistanceHolography
from .ctf import MinusLogTomography, MultiDistanceCTF  # noqa: F401
from .ptychography import FarFieldPtychography, FullFieldCDI, NearFieldPtychography, TiledHolography
from .sparse import SparseMultislicePtychography

__all__ = [
    "MODELS", "FarFieldPtychography", "ForwardModel", "FullFieldCDI", "Geometry",
    "MultiDistanceHolography", "NearFieldPtychography", "SparseMultislicePtychography",
    "TileBatch", "TiledHolography", "get_model", "register_model",
]
