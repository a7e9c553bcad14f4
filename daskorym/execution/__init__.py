"""Where a run executes: on this machine, over Dask workers, or over MPI ranks."""

from __future__ import annotations

from ..config import ConfigError, Settings, load_settings


def make_reconstruction(settings, inputs=None, **engine_options):
    """The :class:`~daskorym.engine.Reconstruction` for ``execution.engine``.

    ``engine_options`` go to the engine (e.g. ``client=`` for Dask).
    """
    s = settings if isinstance(settings, Settings) else load_settings(settings)
    engine = s.execution.engine
    if engine == "local":
        from ..engine import Reconstruction
        return Reconstruction(s, inputs)
    if engine == "dask":
        if s.execution.mode == "h5" and s.execution.exchange == "direct":
            raise ConfigError("execution.exchange = 'direct' applies to modes 'dp' and 'do'; "
                              "mode 'h5' keeps its slabs in files and exchanges them through "
                              "scheduled tasks")
        if s.execution.mode == "h5":
            from .h5 import DaskH5Reconstruction
            return DaskH5Reconstruction(s, inputs, **engine_options)
        if s.execution.exchange == "direct":
            from .dask_direct import DirectDaskReconstruction
            return DirectDaskReconstruction(s, inputs, **engine_options)
        from .dask_engine import DaskReconstruction
        return DaskReconstruction(s, inputs, **engine_options)
    if engine == "mpi":
        from .mpi_engine import MPIReconstruction
        return MPIReconstruction(s, inputs, **engine_options)
    raise ConfigError(f"execution.engine = {engine!r} is not available; use 'local', 'dask' "
                      f"or 'mpi'")


__all__ = ["make_reconstruction"]
