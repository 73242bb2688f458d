"""Every word lorashelf puts in an e-mail, in one place, by language: subjects, the
framing around a notice, the verification message, footers, and the pages the links
in them open. A message is plain text plus an HTML alternative made from the same
strings (escaped). A moderation notice's e-mail carries the in-app notification's own
words (``storage/moderation/notices.py``). A notice about a private dataset
(``storage/retention/notices.py``) does not: its e-mail names nothing of the dataset (no
file, model or version) and gives no instant (the end of a window is its version's
public ``publishedAt`` plus the public retention, so an instant would point at the
version), only roughly how long is left; the app says the rest. An e-mail passes
through relays and sits in mailboxes nobody here controls, for ever.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.db.enums import MailKind, NotificationKind
from storage.db.models import Notification

LANGUAGE = "en"  # the only catalogue so far; a new language is a new key below

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "site": "lorashelf",
        "subject.verify": "Confirm your e-mail address",
        f"subject.{NotificationKind.DATASET_EXPIRING}": (
            "Your private training dataset will be deleted soon"
        ),
        f"subject.{NotificationKind.DATASET_DELETED}": "Your private training dataset was deleted",
        f"subject.{NotificationKind.CONTENT_TAKEN_DOWN}": "Your content was taken down",
        f"subject.{NotificationKind.CONTENT_RESTORED}": "Your content was restored",
        f"subject.{NotificationKind.ACCOUNT_SUSPENDED}": "Your account was suspended",
        f"subject.{NotificationKind.ACCOUNT_REINSTATED}": "Your account was reinstated",
        f"notice.{NotificationKind.DATASET_EXPIRING}": (
            "One of your private training datasets will be deleted in about {left}. Sign "
            "in to see which one and when, and download it before then if you still need "
            "it:"
        ),
        f"notice.{NotificationKind.DATASET_DELETED}": (
            "One of your private training datasets was deleted. Sign in to see which one, "
            "when and why, with its deletion receipt:"
        ),
        "greeting": "Hello {username},",
        "verify.body": (
            "Somebody (we hope you) asked to receive lorashelf's reminders and notices at "
            "this address. To confirm it, open this link within {lifetime}:"
        ),
        "verify.ignore": (
            "If you did not ask for this, ignore this message: nothing is sent to this "
            "address unless it is confirmed."
        ),
        "footer.optional": (
            "You receive these because you confirmed this address on lorashelf. To stop "
            "e-mails like this one (the app keeps showing them), open: {unsubscribe}"
        ),
        "footer.always": (
            "Notices about moderation of your account and content are sent to every "
            "confirmed address."
        ),
        "page.verify.title": "Confirm your e-mail address",
        "page.verify.button": "Confirm this address",
        "page.verify.done": "Your e-mail address is confirmed. You can close this page.",
        "page.unsubscribe.title": "Stop these e-mails",
        "page.unsubscribe.ask": "Stop e-mail {topic}? The app keeps showing them.",
        "page.unsubscribe.button": "Stop these e-mails",
        "page.unsubscribe.done": "Done: no more e-mail {topic}. You can close this page.",
        "page.failed": "This link does not work: {reason}",
        "topic.reminders": "reminders before a private dataset is deleted",
        "topic.deletions": "notices after a private dataset was deleted",
    }
}


def text(key: str, **values: object) -> str:
    """One string of the site's language, with its values filled in."""
    return STRINGS[LANGUAGE][key].format(**values)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Link:
    """A paragraph that is a link (in HTML, an anchor)."""

    url: str

    def __str__(self) -> str:
        return self.url


def _paragraph(part: str | Link) -> str:
    if isinstance(part, Link):
        url = html.escape(part.url, quote=True)
        return f'<p><a href="{url}">{html.escape(part.url)}</a></p>'
    return "<p>" + html.escape(part).replace("\n", "<br>") + "</p>"


def _html(paragraphs: list[str | Link]) -> str:
    body = "".join(_paragraph(p) for p in paragraphs)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(text('site'))}</title></head>"
        f'<body style="font-family: sans-serif; line-height: 1.4">{body}</body></html>'
    )


def _render(subject: str, paragraphs: list[str | Link]) -> Rendered:
    return Rendered(
        subject=f"[{text('site')}] {subject}",
        text="\n\n".join(str(p) for p in paragraphs) + "\n",
        html=_html(paragraphs),
    )


def verification(*, username: str, link: str, lifetime: str) -> Rendered:
    return _render(
        text("subject.verify"),
        [
            text("greeting", username=username),
            text("verify.body", lifetime=lifetime),
            Link(link),
            text("verify.ignore"),
        ],
    )


def moment(at: datetime) -> str:
    """An instant as every notice writes it."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def roughly(seconds: float) -> str:
    """How long, in its largest whole unit ("7 days", "5 hours", "3 seconds"): never
    precise enough to add to the instant the e-mail was sent."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    count = max(1, round(seconds))
    return f"{count} second{'' if count == 1 else 's'}"


PRIVATE_NOTICES = frozenset({NotificationKind.DATASET_EXPIRING, NotificationKind.DATASET_DELETED})
"""The notices about a private dataset: their e-mail has words of its own, naming none of it."""


def notice(
    *, notification: Notification, username: str, site: str, unsubscribe: str | None
) -> Rendered:
    """A notification as an e-mail: its subject, its words (for a private dataset only
    roughly how long is left, and a link to ``site``), and a footer (how to stop it, or
    why it cannot be stopped)."""
    kind = notification.kind
    footer = (
        text("footer.optional", unsubscribe=unsubscribe)
        if unsubscribe is not None
        else text("footer.always")
    )
    words: list[str | Link] = [notification.message]
    if kind in PRIVATE_NOTICES:
        left = notification.window_end - notification.created_at
        words = [text(f"notice.{kind}", left=roughly(left.total_seconds())), Link(site)]
    return _render(text(f"subject.{kind}"), [text("greeting", username=username), *words, footer])


MAIL_KIND: dict[NotificationKind, MailKind] = {
    NotificationKind.DATASET_EXPIRING: MailKind.REMINDER,
    NotificationKind.DATASET_DELETED: MailKind.DELETION,
    NotificationKind.CONTENT_TAKEN_DOWN: MailKind.MODERATION,
    NotificationKind.CONTENT_RESTORED: MailKind.MODERATION,
    NotificationKind.ACCOUNT_SUSPENDED: MailKind.MODERATION,
    NotificationKind.ACCOUNT_REINSTATED: MailKind.MODERATION,
}
"""Which kind of e-mail each notification is (and so which preference stops it)."""

TOPIC: dict[MailKind, str] = {MailKind.REMINDER: "reminders", MailKind.DELETION: "deletions"}
"""The e-mail a user may stop, by the preference that stops it (``setEmailPreferences``)."""


def page(title: str, paragraphs: list[str], *, form: str | None = None) -> str:
    """A small page for a link opened from an e-mail (``graph/http/email.py``): a title,
    some text, and at most one button (a POST to the same address)."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if form is not None:
        body += (
            '<form method="post"><button type="submit" style="font-size: 1.1em">'
            f"{html.escape(form)}</button></form>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
