"""Exceptions raised by the output writers and checkpoints."""

from __future__ import annotations

__all__ = ["CheckpointError", "OutputExistsError"]


class OutputExistsError(FileExistsError):
    """The output folder already holds results of an earlier run and resuming was not asked for.

    The message names the folder and says how to resume (``--resume`` on the command line,
    ``use_checkpoint=True`` in the API) or to choose another folder.
    """


class CheckpointError(ValueError):
    """A checkpoint is missing a file, or a file is corrupt or does not match its manifest.

    The message names the checkpoint file and what was expected versus what was found.
    """
