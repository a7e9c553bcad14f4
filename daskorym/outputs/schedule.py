"""When to write previews: every N epochs and/or every M minutes."""

from __future__ import annotations

__all__ = ["PreviewSchedule"]


class PreviewSchedule:
    """Throttle for previews (or any periodic output).

    Parameters
    ----------
    every_epochs : int or None
        Due when the epoch has advanced by at least this many since the last preview.
    every_minutes : float or None
        Due when at least this many minutes have passed since the last preview.

    Either criterion makes a preview due; the first call is always due (unless both are
    None, which means never). ``due`` records the preview when it returns True, so call it
    once per opportunity, e.g. after every batch::

        if schedule.due(epoch, time.monotonic()):
            folder.write_previews(obj, "delta_beta")
    """

    def __init__(self, every_epochs: int | None = 1, every_minutes: float | None = None) -> None:
        if every_epochs is not None and (int(every_epochs) != every_epochs or every_epochs < 1):
            raise ValueError(
                f"every_epochs must be a positive integer or None, got {every_epochs!r}"
            )
        if every_minutes is not None and not every_minutes > 0:
            raise ValueError(f"every_minutes must be positive or None, got {every_minutes!r}")
        self.every_epochs = every_epochs
        self.every_minutes = every_minutes
        self._last: tuple[int, float] | None = None

    def __repr__(self) -> str:
        return (
            f"PreviewSchedule(every_epochs={self.every_epochs!r}, "
            f"every_minutes={self.every_minutes!r})"
        )

    def due(self, epoch: int, now: float) -> bool:
        """Return True if a preview is due at ``epoch`` and time ``now`` (seconds, e.g.
        ``time.monotonic()``), and record it as done."""
        if self.every_epochs is None and self.every_minutes is None:
            return False
        if self._last is None or self._elapsed(epoch, now):
            self._last = (epoch, now)
            return True
        return False

    def _elapsed(self, epoch: int, now: float) -> bool:
        assert self._last is not None
        last_epoch, last_time = self._last
        if self.every_epochs is not None and epoch - last_epoch >= self.every_epochs:
            return True
        return self.every_minutes is not None and now - last_time >= 60.0 * self.every_minutes
