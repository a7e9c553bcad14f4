"""daskorym: X-ray image reconstruction by automatic differentiation over Dask and MPI.

Layers (a lower layer never imports a higher one)::

    cli -> api -> engine -> execution -> store
    engine -> models -> physics -> backend
    io, simulate, config
"""

__version__ = "0.1.0"

from .api import PtychographyModel, reconstruct, reconstruct_ptychography
from .backend import Backend, get_backend
from .config import ConfigError, Settings, load_settings, read_toml
from .engine import InMemoryInputs, Reconstruction, ReconstructionResult
from .execution import make_reconstruction
from .io import DatasetError, open_dataset, write_dataset
from .models import MODELS, ForwardModel, Geometry, get_model, register_model
from .optim import (AdamOptimizer, CGOptimizer, GDOptimizer, MomentumOptimizer, Optimizer,
                    ScipyOptimizer)
from .parameters import PARAMETERS, RefinableParameter, register_parameter

__all__ = [
    "AdamOptimizer", "Backend", "CGOptimizer", "ConfigError", "DatasetError", "ForwardModel",
    "GDOptimizer", "Geometry", "InMemoryInputs", "MODELS", "MomentumOptimizer", "Optimizer",
    "PARAMETERS", "PtychographyModel", "Reconstruction", "ReconstructionResult",
    "RefinableParameter", "ScipyOptimizer", "Settings", "__version__", "get_backend",
    "get_model", "load_settings", "make_reconstruction", "open_dataset", "read_toml", "reconstruct",
    "reconstruct_ptychography", "register_model", "register_parameter", "write_dataset",
]
