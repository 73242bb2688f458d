"""A real SMTP server for the e-mail tests: aiosmtpd, in this process (its own thread),
speaking STARTTLS (or TLS from the first byte) with a certificate made for the test and
a login, so lorashelf's sender is tested the way it talks to a real server. It keeps
what it receives; it can be stopped and started again on the same port (an outage)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.processes import free_port

USER = "mailer"
PASSWORD = "s3cret pass/word"
SENDER = "lorashelf <noreply@example.test>"


def _certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lorashelf test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "smtp-cert.pem", workdir / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    """One message as the server received it."""

    envelope_to: list[str]
    message: EmailMessage
    at: float  # time.time() when it arrived

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        content: str = part.get_content()
        return content


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.received.append(Received(list(envelope.rcpt_tos), parsed, time.time()))
        return "250 Message accepted"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


class SmtpServer:
    def __init__(self, workdir: Path, *, implicit_tls: bool = False):
        self.cert, self.key = _certificate(workdir)
        self.port = free_port()
        self.implicit_tls = implicit_tls
        self.handler = _Handler()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a lorashelf process needs to send here (trusting the test certificate)."""
        return {
            "LORASHELF_SMTP_URL": self.url,
            "LORASHELF_MAIL_FROM": SENDER,
            "SSL_CERT_FILE": str(self.cert),
        }

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        # With TLS from the first byte aiosmtpd does not know the session is encrypted:
        # it is, so logging in is allowed.
        tls: dict[str, Any] = (
            {"ssl_context": context, "auth_require_tls": False}
            if self.implicit_tls
            else {"tls_context": context, "require_starttls": True}
        )
        with warnings.catch_warnings():  # the implicit-TLS case: it is encrypted (above)
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            self._controller = self._controller_for(tls)
        self._controller.start()

    def _controller_for(self, tls: dict[str, Any]) -> Controller:
        return Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_authenticator,
            auth_required=True,
            **tls,
        )

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.envelope_to]

    def wait_for(self, predicate: Callable[[list[Received]], Any], *, timeout: float = 15) -> Any:
        """Until ``predicate(messages)`` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            found = predicate(self.messages)
            if found:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s; received: "
                    f"{[(m.envelope_to, m.subject) for m in self.messages]}"
                )
            time.sleep(0.05)


@contextmanager
def smtp_server(workdir: Path, *, implicit_tls: bool = False) -> Iterator[SmtpServer]:
    server = SmtpServer(workdir, implicit_tls=implicit_tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
