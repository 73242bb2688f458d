"""Idempotency keys: a mutation request sent with an ``Idempotency-Key`` acts at most
once, and a retry of it within 24 hours gets the first answer, byte for byte.

A request is keyed by its scope (the signed-in viewer, or for an anonymous request the
client's address) and the client's key. Its steps:

1. :func:`claim`, before anything runs: one row per (scope, key), inserted (the unique
   ``lookup`` makes concurrent duplicates meet here; only one inserts). A key already
   used answers with what it holds: the stored answer (:class:`Replay`), a refusal for
   another request under the same key (:class:`Reused`), or "still being answered"
   (:class:`InUse`).
2. :func:`acted`, in the transaction of the change the request makes (every service
   calls it through :func:`storage.changes.made`): the claim records that the change
   committed. A request whose claim was taken over meanwhile (see below) is stopped
   there, before its change commits.
3. :func:`settle`, once the answer is known and before it is sent: stored (sealed) if
   the request acted, or if it is final; released if nothing was done and the answer
   was "try again" (a busy database, an unexpected error), so that a retry acts.

A claim whose holder died (a crash between claim and answer) is taken over by a retry
if it had not acted yet (nothing was done: safe to run); if it had, the change happened
but the answer is lost, and the retry is told so (:class:`Lost`) rather than acting
twice.

Nothing stored is readable without the client's key, which is never stored: ``lookup``
is an HMAC of the scope and key, ``request_mac`` an HMAC of the request under a key
derived from both, and the answer is sealed with AES-GCM under that key (an answer may
hold a bearer token, an upload URL, a private dataset's name). Rows are purged 24
hours after their claim by the sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tortoise.exceptions import IntegrityError

from storage.db.connection import is_busy
from storage.db.models import IdempotencyKey
from storage.errors import ServiceError
from storage.system.claim_holder import holder, holder_gone

log = logging.getLogger("lorashelf.idempotency")

WINDOW = timedelta(hours=24)  # how long a key's answer is kept and replayed
LEASE = timedelta(seconds=60)  # a claim not answered by then, holder silent: abandoned
MAX_KEY = 255  # characters of a key: visible ASCII


@dataclass(frozen=True)
class Claim:
    """This request's hold on its key."""

    id: int
    token: str


@dataclass(frozen=True)
class Replay:
    """The key was used for this very request: its first answer."""

    status: int
    body: bytes


@dataclass(frozen=True)
class Reused:
    """The key was used for another request (another document, variables or
    operation name) within the window."""


@dataclass(frozen=True)
class InUse:
    """A request with this key is still being answered."""


@dataclass(frozen=True)
class Lost:
    """A request with this key made its change, but its answer was lost (its process
    stopped before storing it): retrying must not act again."""


Outcome = Claim | Replay | Reused | InUse | Lost

# The claim of the request being answered, set by the HTTP edge around it: the services
# mark it in the transaction of their change (storage.changes.made).
current: ContextVar[Claim | None] = ContextVar("lorashelf_idempotency_claim", default=None)


class KeyTakenOver(ServiceError):
    """The request's claim was taken over by a retry (it took longer than the lease):
    its change must not commit, the retry's will."""

    code = "IDEMPOTENCY_KEY_IN_USE"

    def __init__(self) -> None:
        super().__init__(
            "Another request with this Idempotency-Key is being answered; nothing was changed."
        )


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters (a UUID, say)."""
    return 0 < len(key) <= MAX_KEY and all(33 <= ord(c) <= 126 for c in key)


def canonical_request(document: object, variables: object, operation_name: object) -> bytes:
    """What "the same request" means: the document, the variables (as JSON values, keys
    in any order) and the operation name."""
    return json.dumps(
        [document, variables or {}, operation_name], sort_keys=True, separators=(",", ":")
    ).encode()


class Keys:
    """The derivations of one secret (``LORASHELF_SECRET_KEY``)."""

    def __init__(self, secret: str):
        self._master = hmac.new(secret.encode(), b"lorashelf idempotency v1", "sha256").digest()

    def _derive(self, purpose: str, scope: str, key: str) -> bytes:
        message = f"{purpose}\x00{scope}\x00{key}".encode()
        return hmac.new(self._master, message, "sha256").digest()

    def lookup(self, scope: str, key: str) -> str:
        return self._derive("lookup", scope, key).hex()

    def request_mac(self, scope: str, key: str, request: bytes) -> str:
        return hmac.new(self._derive("request", scope, key), request, "sha256").hexdigest()

    def seal(self, scope: str, key: str, body: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        aead = AESGCM(self._derive("answer", scope, key))
        return nonce + aead.encrypt(nonce, body, self.lookup(scope, key).encode())

    def open(self, scope: str, key: str, sealed: bytes) -> bytes | None:
        aead = AESGCM(self._derive("answer", scope, key))
        try:
            return aead.decrypt(sealed[:12], sealed[12:], self.lookup(scope, key).encode())
        except (InvalidTag, ValueError):
            return None


@dataclass(frozen=True)
class Request:
    """A mutation request sent with a key, as :func:`claim` sees it."""

    keys: Keys
    scope: str  # "user:<id>" or "address:<ip>"
    user_id: int | None
    key: str
    request: bytes  # canonical_request(...)

    @property
    def lookup(self) -> str:
        return self.keys.lookup(self.scope, self.key)

    @property
    def mac(self) -> str:
        return self.keys.request_mac(self.scope, self.key, self.request)


async def claim(req: Request, *, now: datetime) -> Outcome:
    """Claim the key for this request, or say what it holds. Raises what the database
    raises (a busy database: nothing was done, the caller answers TRY_AGAIN)."""
    for _ in range(3):  # an expired row is removed, then the key claimed afresh
        token = secrets.token_hex(16)
        try:
            row = await IdempotencyKey.create(
                lookup=req.lookup,
                user_id=req.user_id,
                request_mac=req.mac,
                created_at=now,
                claim_token=token,
                claimed_by=holder(),
                claimed_at=now,
            )
            return Claim(row.id, token)
        except IntegrityError:
            pass
        found = await IdempotencyKey.get_or_none(lookup=req.lookup)
        if found is None:
            continue  # purged meanwhile: claim it
        if found.created_at <= now - WINDOW:
            await IdempotencyKey.filter(id=found.id, created_at=found.created_at).delete()
            continue
        return await _held(req, found, now=now)
    return InUse()


async def _held(req: Request, row: IdempotencyKey, *, now: datetime) -> Outcome:
    if not hmac.compare_digest(row.request_mac, req.mac):
        return Reused()
    if row.answer is not None and row.status is not None:
        body = req.keys.open(req.scope, req.key, bytes(row.answer))
        return Replay(row.status, body) if body is not None else Reused()
    abandoned = holder_gone(row.claimed_by) or row.claimed_at <= now - LEASE
    if not abandoned:
        return InUse()
    if row.acted_at is not None:
        return Lost()
    token = secrets.token_hex(16)
    taken = await IdempotencyKey.filter(
        id=row.id, claim_token=row.claim_token, acted_at=None, answer=None
    ).update(claim_token=token, claimed_by=holder(), claimed_at=now)
    return Claim(row.id, token) if taken else InUse()


async def acted(now: datetime) -> None:
    """Inside the transaction of a change: the request's claim (if it has one) records
    that its change commits with it. Stops the change if a retry took the claim over."""
    held = current.get()
    if held is None:
        return
    marked = await IdempotencyKey.filter(id=held.id, claim_token=held.token).update(acted_at=now)
    if not marked:
        raise KeyTakenOver()


UNKNOWN = b'"OUTCOME_UNKNOWN"'  # storage.db.commit_outcome.CommitOutcomeUnknown.code


def final(status: int, body: bytes) -> bool:
    """Whether an answer is the request's last word: not "try again" (a busy database),
    not "it may have been made" (a commit whose outcome was lost) and not a failure of
    ours. (A crude look at the body is enough: a false "not final" only ever releases
    a claim that did nothing.)"""
    return (
        status < 500
        and b'"TRY_AGAIN"' not in body
        and b'"INTERNAL_ERROR"' not in body
        and UNKNOWN not in body
    )


SETTLE_NOW = (0.0, 0.2, 0.5, 1.0, 2.0)  # pauses before the answer is sent (seconds)
SETTLE_LATER = (2.0,) * 30  # then, in the background, for about a lease
_later: set[asyncio.Task[bool]] = set()  # settles still trying (kept from the collector)


async def settle(req: Request, held: Claim, *, status: int, body: bytes) -> None:
    """Store the answer (sealed) when the request acted or the answer is final, else
    release the key so that a retry acts. Never raises. A busy database is waited out a
    little before the answer is sent; if it is still away, the settle goes on in the
    background for about a lease, so that a retry soon after the database is back gets
    the answer, or acts if nothing was done, instead of "still being answered" until the
    lease ends. (If the server stops meanwhile, the claim is left to the lease: a retry
    is then told the answer was lost if the request acted, or takes the key over.)"""
    sealed = req.keys.seal(req.scope, req.key, body)
    if await _settle_with_pauses(held, SETTLE_NOW, status=status, body=body, sealed=sealed):
        return
    task = asyncio.get_running_loop().create_task(
        _settle_with_pauses(held, SETTLE_LATER, status=status, body=body, sealed=sealed)
    )
    _later.add(task)
    task.add_done_callback(_later.discard)


async def _settle_with_pauses(
    held: Claim, pauses: tuple[float, ...], *, status: int, body: bytes, sealed: bytes
) -> bool:
    """True when done (settled, or a failure that waiting does not mend); False when the
    database was busy or away at every try."""
    for pause in pauses:
        await asyncio.sleep(pause)
        try:
            await _settle(held, status=status, body=body, sealed=sealed)
            return True
        except Exception as exc:  # noqa: BLE001 - never an error answer after the fact
            if not is_busy(exc):
                log.warning("idempotency key %s: answer not stored (%s)", held.id, exc)
                return True
    log.warning("idempotency key %s: the database was away at %d tries", held.id, len(pauses))
    return False


async def _settle(held: Claim, *, status: int, body: bytes, sealed: bytes) -> None:
    mine = IdempotencyKey.filter(id=held.id, claim_token=held.token)
    row = await mine.first()
    if row is None:  # taken over (past the lease), or purged
        return
    if final(status, body):
        await mine.update(status=status, answer=sealed)
    elif row.acted_at is None:  # nothing committed: a retry acts
        await mine.filter(acted_at=None).delete()
    elif UNKNOWN in body:
        # The commit whose outcome was lost did commit: a retry is told that the change
        # was made and its answer lost (once the lease ends), never "it may have been".
        return
    else:
        await mine.update(status=status, answer=sealed)


async def purge(now: datetime, *, limit: int) -> int:
    """Forget keys claimed more than 24 hours ago, oldest first, at most ``limit``."""
    old = await (
        IdempotencyKey.filter(created_at__lte=now - WINDOW)
        .order_by("created_at")
        .limit(limit)
        .values_list("id", flat=True)
    )
    if not old:
        return 0
    return int(await IdempotencyKey.filter(id__in=list(old)).delete())


def describe(outcome: Any) -> str:
    """For logs."""
    return type(outcome).__name__


def fingerprint(body: bytes) -> str:
    """A short digest of an answer, for logs (never the answer)."""
    return hashlib.sha256(body).hexdigest()[:12]
