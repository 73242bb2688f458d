"""The retention policy: how long a private dataset lives and when its owner is reminded.

Pure values and arithmetic, no database: the one place where a private window is
opened (:meth:`RetentionPolicy.open_window`) and where the next reminder of a window
is found (:func:`next_reminder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.config import Settings, describe_duration


def next_reminder(
    expires_at: datetime | None, offsets: Sequence[int], *, after: datetime
) -> datetime | None:
    """The earliest reminder due strictly after ``after`` (reminders due before a
    window opened are never sent)."""
    if expires_at is None:
        return None
    dues = [expires_at - timedelta(seconds=o) for o in offsets]
    future = [due for due in dues if due > after]
    return min(future) if future else None


@dataclass(frozen=True)
class Window:
    """A dataset's window: when it ends (None: it does not), and when its next
    reminder is due."""

    expires_at: datetime | None
    next_reminder_at: datetime | None

    def fields(self) -> dict[str, datetime | None]:
        """The dataset columns that hold it."""
        return {"expires_at": self.expires_at, "next_reminder_at": self.next_reminder_at}


NO_WINDOW = Window(None, None)


@dataclass(frozen=True)
class RetentionPolicy:
    private_retention: int  # seconds a private dataset is kept after publishing
    reminders: tuple[int, ...]  # seconds before deletion, largest first

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        return cls(private_retention=settings.private_retention, reminders=settings.reminders)

    def window_for(self, *, private: bool, published: bool, start: datetime) -> Window:
        """The window a dataset gets at ``start`` (its version published, or the dataset
        made private): a full private window for a private dataset of a published
        version, none otherwise. The one place a window is opened."""
        if not (private and published):
            return NO_WINDOW
        expires_at = start + timedelta(seconds=self.private_retention)
        return Window(expires_at, next_reminder(expires_at, self.reminders, after=start))

    def next_reminder(self, expires_at: datetime | None, *, after: datetime) -> datetime | None:
        return next_reminder(expires_at, self.reminders, after=after)

    def sends(self, offset: int) -> bool:
        """Whether a reminder ``offset`` seconds before deletion belongs to this policy
        (one due before the window opened is never sent)."""
        return offset in self.reminders and offset < self.private_retention

    def notice(self) -> str:
        """The sentence the upload form shows next to the sharing option."""
        return (
            "Private datasets are visible only to you and are deleted automatically "
            f"{describe_duration(self.private_retention)} after the model is published."
        )
