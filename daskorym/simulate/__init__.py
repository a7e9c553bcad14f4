"""Simulated datasets with their ground truth, phantoms, scan positions and tiling.

``simulate(model, out, ...)`` writes a dataset in Adorym's layout for any
registered forward model and ``<out stem>_truth.h5`` beside it;
``tile_dataset`` divides full-field (holography) data into tiles.
"""

from .phantoms import (NATURAL_IMAGES, model_probe, natural_image, object_2d, object_3d,
                       object_scales, phantom_2d, sample_object, sparse_object, value_volume,
                       values_to_object)
from .scan import LAYOUTS, grid_tiles, raster_positions, scan_layout, tile_size
from .simulate import (DEFAULTS, ModelDefaults, SimulationPlan, SimulationSettings, make_truth,
                       plan_simulation, predict_angle, rotated, simulate, truth_path, write_truth)
from .tiling import LazyAngles, tile_dataset, tile_image, untile

__all__ = [
    "DEFAULTS", "LAYOUTS", "LazyAngles", "ModelDefaults", "NATURAL_IMAGES", "SimulationPlan",
    "SimulationSettings", "grid_tiles", "make_truth", "model_probe", "natural_image", "object_2d",
    "object_3d", "object_scales", "phantom_2d", "plan_simulation", "predict_angle",
    "raster_positions", "rotated", "sample_object", "scan_layout", "simulate", "sparse_object",
    "tile_dataset", "tile_image", "tile_size", "truth_path", "untile", "value_volume",
    "values_to_object", "write_truth",
]
