"""Datasets in Adorym's layout (HDF5 or Zarr v3): lazy reading, validation, atomic writing."""

from .dataset import HC_EV_M, Dataset, open_dataset
from .errors import DatasetError
from .summary import data_stats, save_pattern_png, summarize
from .validate import validate_dataset
from .write import write_dataset

__all__ = [
    "DatasetError",
    "Dataset",
    "open_dataset",
    "validate_dataset",
    "write_dataset",
    "summarize",
    "save_pattern_png",
    "data_stats",
    "HC_EV_M",
]
