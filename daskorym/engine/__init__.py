"""The reconstruction loop and what it is built from."""

from .loop import Reconstruction, ReconstructionResult
from .problem import InMemoryInputs, Problem, build_problem
from .schedule import BatchSpec, epoch_batches

__all__ = ["BatchSpec", "InMemoryInputs", "Problem", "Reconstruction", "ReconstructionResult",
           "build_problem", "epoch_batches"]
