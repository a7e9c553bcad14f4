"""Results of a reconstruction on disk: output folder, atomic writers, loss log, previews,
checkpoints. Adorym's file names are kept where Adorym has the output; no pickle anywhere.
"""

from .atomic import atomic_dir, atomic_file, atomic_save_npy, atomic_write_bytes, atomic_write_text
from .checkpoint import load_checkpoint, rng_from_state, rng_state, save_checkpoint, settings_hash
from .errors import CheckpointError, DiskFullError, OutputExistsError
from .folder import OutputFolder
from .jsonify import numpy_to_json
from .losslog import read_loss
from .schedule import PreviewSchedule

__all__ = [
    "CheckpointError",
    "DiskFullError",
    "OutputExistsError",
    "OutputFolder",
    "PreviewSchedule",
    "atomic_dir",
    "atomic_file",
    "atomic_save_npy",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "numpy_to_json",
    "read_loss",
    "rng_from_state",
    "rng_state",
    "save_checkpoint",
    "settings_hash",
]
