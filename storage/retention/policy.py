"""The retention policy: how long a private dataset lives and when its owner is reminded.

Pure values and arithmetic, no database: the one place where a private window is
opened (:meth:`RetentionPolicy.open_window`) and where the next reminder of a window
is found (:func:`next_reminder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.config.parse import describe_duration
from storage.config.settings import Settings
from storage.db.enums import DatasetStatus, DeletionReason, VersionStatus, Visibility
from storage.db.models import ModelFile, ModelVersion, TrainingDataset

LIVE = (DatasetStatus.PENDING_UPLOAD, DatasetStatus.UPLOADING, DatasetStatus.AVAILABLE)


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
    draft_retention: int = 30 * 86400  # seconds a never-published private dataset is kept

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            private_retention=settings.private_retention,
            reminders=settings.reminders,
            draft_retention=settings.draft_retention,
        )

    def length(self, *, published: bool) -> int:
        """How long a private window lasts: from publishing, or for a draft from upload."""
        return self.private_retention if published else self.draft_retention

    def window_for(self, *, private: bool, published: bool, start: datetime) -> Window:
        """The window a dataset gets at ``start`` (its bytes arrived, its version was
        published, or it was made private): a full private window for a private dataset
        (the draft lifetime while its version is unpublished), none for a public one.
        The one place a window is opened."""
        if not private:
            return NO_WINDOW
        expires_at = start + timedelta(seconds=self.length(published=published))
        return Window(expires_at, next_reminder(expires_at, self.reminders, after=start))

    def header_window(
        self, file: ModelFile, version: ModelVersion, dataset: TrainingDataset | None
    ) -> datetime | None:
        """When a weights file's withheld header keys are erased (None: never).

        They follow the version's training dataset: public with a PUBLIC dataset (never
        erased), gone with a private dataset's window (its ``expires_at``, the draft
        lifetime included). Without a dataset that has a window, the private window
        is the version's own: ``published_at + retention``, or for a draft the draft
        lifetime from the file's upload.
        """
        if not file.withheld_keys or file.header_erased_at is not None:
            return None
        if dataset is not None:
            live = dataset.status in LIVE
            shared = dataset.status == DatasetStatus.AVAILABLE
            if shared and dataset.visibility == Visibility.PUBLIC:
                return None
            expired = dataset.deletion_reason == DeletionReason.EXPIRED
            if dataset.expires_at is not None and (live or expired):
                return dataset.expires_at
        if version.status == VersionStatus.PUBLISHED and version.published_at is not None:
            return version.published_at + timedelta(seconds=self.private_retention)
        start = file.uploaded_at or file.created_at
        return start + timedelta(seconds=self.draft_retention)

    def next_reminder(self, expires_at: datetime | None, *, after: datetime) -> datetime | None:
        return next_reminder(expires_at, self.reminders, after=after)

    def sends(self, offset: int, *, published: bool) -> bool:
        """Whether a reminder ``offset`` seconds before deletion belongs to this policy
        (one due before the window opened is never sent)."""
        return offset in self.reminders and offset < self.length(published=published)

    def notice(self) -> str:
        """The sentence the upload form shows next to the sharing option."""
        return (
            "Private datasets are visible only to you and are deleted automatically "
            f"{describe_duration(self.private_retention)} after the version is published "
            f"(or {describe_duration(self.draft_retention)} after upload if it is never "
            "published)."
        )
