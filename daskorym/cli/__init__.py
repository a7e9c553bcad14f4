"""Command line interface: ``daskorym simulate | inspect | tile`` (also ``python -m daskorym``)."""

from .main import main

__all__ = ["main"]
