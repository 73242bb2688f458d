"""Sending e-mail through SMTP (``LORASHELF_SMTP_URL``): ``smtp://`` upgrades the
connection with STARTTLS and refuses to go on without it, ``smtps://`` speaks TLS from
the first byte. Server certificates are verified against the system's trust store
(``SSL_CERT_FILE`` names another). The standard library's client runs in a thread: a
slow server never holds up the event loop.

What is sent is built here from a queued message (``storage/mail/outbox.py``): plain
text with an HTML alternative, and for the e-mail a person may stop, the
``List-Unsubscribe`` header with its one-click form (RFC 8058).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

from storage.config.settings import Settings
from storage.db.site import OutgoingMail
from storage.mail import links, messages

TIMEOUT = 30.0  # seconds for each network step


class SendFailed(Exception):
    """The server did not take the message; ``permanent`` when trying again cannot help
    (it refused the recipient or the message for good, a 5xx answer)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def compose(settings: Settings, mail: OutgoingMail) -> EmailMessage:
    assert mail.recipient is not None
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(mail.created_at)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid("lorashelf", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    topic = messages.TOPIC.get(mail.kind)
    if topic is not None:
        link = links.unsubscribe_link(settings, mail.user_id, topic)
        message["List-Unsubscribe"] = f"<{link}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    return message


class SmtpSender:
    """One configured SMTP server."""

    def __init__(self, settings: Settings):
        parts = urlsplit(settings.smtp_url)
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname or ""
        self.port = parts.port or (465 if self.tls else 587)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        try:
            if self.tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=TIMEOUT, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
            with client:
                client.ehlo()
                if not self.tls:
                    if not client.has_extn("starttls"):
                        raise SendFailed("the server does not offer STARTTLS (smtp:// needs it)")
                    client.starttls(context=context)
                    client.ehlo()
                if self.user is not None:
                    client.login(self.user, self.password or "")
                client.send_message(message)
        except SendFailed:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(500 <= code < 600 for code in codes)
            raise SendFailed(f"recipient refused ({codes})", permanent=permanent) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600 and exc.smtp_code not in (530, 534, 535)
            raise SendFailed(f"server answered {exc.smtp_code}", permanent=permanent) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, TLS, timeout
            raise SendFailed(f"{exc.__class__.__name__}: {exc}"[:160]) from None
