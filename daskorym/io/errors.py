"""The one exception raised for every problem found in an input dataset."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset is missing, unreadable, or does not follow the Adorym layout.

    The message names the file, the item (e.g. ``exchange/data``,
    ``metadata/probe_pos_px``) and what was expected versus what was found.
    """


def dataset_error(path: object, item: str, problem: str) -> DatasetError:
    """Build a :class:`DatasetError` with the standard ``file: item: problem`` message.

    Parameters
    ----------
    path : path-like or str
        The dataset file or store.
    item : str
        The item inside the dataset, e.g. ``"metadata/energy_ev"``; empty for the file itself.
    problem : str
        What was expected and what was found.
    """
    where = f"{path}: {item}" if item else f"{path}"
    return DatasetError(f"{where}: {problem}")
