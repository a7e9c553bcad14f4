"""Exceptions raised by the output writers and checkpoints."""

from __future__ import annotations

__all__ = ["CheckpointError", "DiskFullError", "OutputExistsError"]


class OutputExistsError(FileExistsError):
    """The output folder already holds results of an earlier run and resuming was not asked for.

    The message names the folder and says how to resume (``--resume`` on the command line,
    ``use_checkpoint=True`` in the API) or to choose another folder.
    """


class CheckpointError(ValueError):
    """A checkpoint is missing a file, or a file is corrupt or does not match its manifest.

    The message names the checkpoint file and what was expected versus what was found.
    """


class DiskFullError(OSError):
    """An output could not be written because the disk (or the user's quota) is full.

    The message names the file or folder being written and says that the previous version of
    it, if any, was left as it was. ``errno`` is ``ENOSPC`` (or ``EDQUOT``).
    """
