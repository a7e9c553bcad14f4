"""daskorym: X-ray image reconstruction by automatic differentiation over Dask and MPI.

Layers (a lower layer never imports a higher one)::

    cli -> api -> engine -> execution -> store
    engine -> models -> physics -> backend
    io, simulate, config
"""

__version__ = "0.1.0"

from .backend import Backend, get_backend
from .io import DatasetError, open_dataset, write_dataset
from .models import MODELS, ForwardModel, Geometry, get_model, register_model

__all__ = [
    "Backend", "DatasetError", "ForwardModel", "Geometry", "MODELS", "__version__",
    "get_backend", "get_model", "open_dataset", "register_model", "write_dataset",
]
