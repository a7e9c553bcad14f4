"""Backends: one small array interface, two implementations (torch, autograd)."""

from __future__ import annotations

from .base import Backend

BACKENDS = ("torch", "autograd")


def get_backend(name: str = "torch", precision: str = "float32", device: str = "cpu") -> Backend:
    """Build a backend by name.

    Parameters
    ----------
    name : "torch" (alias "pytorch") or "autograd"
    precision : "float32" (default) or "float64"
    device : torch device ("cpu", "cuda", "cuda:1"); only "cpu" for autograd
    """
    key = {"pytorch": "torch"}.get(name, name)
    if key == "torch":
        from .torch_backend import TorchBackend
        return TorchBackend(precision, device)
    if key == "autograd":
        if device != "cpu":
            raise ValueError("the autograd backend runs on the CPU only; use backend='torch' for "
                             f"device={device!r}")
        from .autograd_backend import AutogradBackend
        return AutogradBackend(precision)
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


__all__ = ["Backend", "BACKENDS", "get_backend"]
