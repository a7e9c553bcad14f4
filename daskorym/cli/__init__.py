"""Command line interface: ``daskorym simulate | inspect | tile | reconstruct | bench``."""

from . import run as _run  # noqa: F401  (registers reconstruct and bench)
from .main import main

__all__ = ["main"]
