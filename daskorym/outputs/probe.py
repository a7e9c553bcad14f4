"""The probe on disk: ``probe.npy`` (complex64) and Adorym's magnitude/phase TIFF stacks."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import tifffile

from .atomic import atomic_file

__all__ = ["PROBE_NPY", "PROBE_TIFFS", "as_complex_probe", "write_probe"]

PROBE_NPY = "probe.npy"
PROBE_TIFFS = ("probe_mag_ds_1.tiff", "probe_phase_ds_1.tiff")


def as_complex_probe(probe: np.ndarray) -> np.ndarray:
    """Return the probe as complex64 [m, py, px].

    Parameters
    ----------
    probe : ndarray
        complex [m, py, px] or [py, px] (one mode), or real [m, py, px, 2] or [py, px, 2]
        with the last axis (real, imag).

    Returns
    -------
    probe : ndarray, complex64 [m, py, px]
    """
    probe = np.asarray(probe)
    if not np.iscomplexobj(probe):
        if probe.ndim not in (3, 4) or probe.shape[-1] != 2:
            raise ValueError(
                "a real probe must be [m, py, px, 2] or [py, px, 2] (real, imag), "
                f"got shape {probe.shape}"
            )
        probe = probe[..., 0] + 1j * probe[..., 1]
    if probe.ndim == 2:
        probe = probe[np.newaxis]
    if probe.ndim != 3:
        raise ValueError(
            f"a complex probe must be [m, py, px] or [py, px], got shape {probe.shape}"
        )
    return probe.astype(np.complex64)


def write_probe(folder: Path, probe: np.ndarray) -> list[Path]:
    """Write ``probe.npy`` and ``probe_mag_ds_1.tiff``/``probe_phase_ds_1.tiff`` in ``folder``.

    Parameters
    ----------
    folder : Path
        Output folder (must exist).
    probe : ndarray
        complex [m, py, px] or real [m, py, px, 2]; see :func:`as_complex_probe`.

    Returns
    -------
    paths : list of Path
        ``probe.npy``, then the magnitude and phase TIFFs (float32 [m, py, px]; phase in
        radians). Each file is replaced atomically, and only once all three are written (on
        an error, a full disk for one, none of them is changed).
    """
    folder = Path(folder)
    probe = as_complex_probe(probe)
    paths = [folder / PROBE_NPY] + [folder / name for name in PROBE_TIFFS]
    with ExitStack() as stack:  # the three are replaced only once all of them are written
        tmps = [stack.enter_context(atomic_file(path)) for path in paths]
        with open(tmps[0], "xb") as handle:
            np.save(handle, probe, allow_pickle=False)
        for tmp, values in zip(tmps[1:], (np.abs(probe), np.angle(probe))):
            tifffile.imwrite(tmp, values.astype(np.float32), photometric="minisblack")
    return paths
