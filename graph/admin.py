"""The command line's administration of a site: the operator role (``lorashelf operator
grant|revoke|list``, the only way to it) and the audit trail's export (``lorashelf audit
--since``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from storage.config.parse import ConfigError
from storage.config.settings import Settings

Prepare = Callable[[Settings], None]  # the CLI's: refuse a newer database, migrate


def _with_database(settings: Settings, prepare: Prepare, work: Any) -> Any:
    """Run ``work()`` (a coroutine function) connected to the database, migrated first
    as serve would."""
    from storage.db import connection as db

    prepare(settings)

    async def run() -> Any:
        await db.connect(settings.database_url, 1)
        try:
            return await work()
        finally:
            await db.disconnect()

    return asyncio.run(run())


def operator(args: argparse.Namespace, settings: Settings, prepare: Prepare) -> None:
    """``lorashelf operator grant|revoke|list [USERNAME]``: the only way to the role."""
    import getpass
    import socket

    from storage import operators
    from storage.errors import NotFound
    from storage.system.clock import SteadyClock

    logging.basicConfig(level=logging.WARNING, format="lorashelf: %(message)s")
    if args.action in ("grant", "revoke") and not args.username:
        print(f"lorashelf: operator {args.action} needs a USERNAME", file=sys.stderr)
        raise SystemExit(2)
    by = f"command line ({getpass.getuser()}@{socket.gethostname()})"

    async def work() -> int:
        if args.action == "list":
            for user in await operators.operators():
                state = " (suspended)" if user.suspended_at is not None else ""
                print(f"{user.username}{state}")
            return 0
        change = operators.grant if args.action == "grant" else operators.revoke
        try:
            user, changed = await change(args.username, now=SteadyClock().now(), by=by)
        except NotFound as exc:
            print(f"lorashelf: {exc.message}", file=sys.stderr)
            return 1
        role = "an operator" if user.is_operator else "not an operator"
        print(f"lorashelf: {user.username} is {role}{'' if changed else ' (unchanged)'}")
        return 0

    raise SystemExit(_with_database(settings, prepare, work))


def parse_since(raw: str) -> Any:
    """``--since``: an ISO date or date-time (UTC unless it says otherwise), or a duration
    back from now (``7d``, ``12h``)."""
    from datetime import UTC, datetime, timedelta

    from storage.config.parse import parse_duration

    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        try:
            return datetime.now(UTC) - timedelta(seconds=parse_duration("--since", raw))
        except ConfigError:
            raise argparse.ArgumentTypeError(
                f"{raw!r} is not a date (2026-03-01, 2026-03-01T12:00:00+00:00) or a "
                "duration back from now (7d, 12h)"
            ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def audit(args: argparse.Namespace, settings: Settings, prepare: Prepare) -> None:
    """``lorashelf audit --since WHEN``: the audit trail, one JSON object per line, oldest
    first."""
    import json

    from graph.schema import ids
    from storage import audit

    logging.basicConfig(level=logging.WARNING, format="lorashelf: %(message)s")

    async def work() -> int:
        async for entry in audit.entries_since(args.since):
            subject = (
                ids.encode(entry.subject_kind, entry.subject_public_id)
                if entry.subject_public_id
                else None
            )
            record = {
                "id": ids.encode("AuditEntry", entry.public_id),
                "at": entry.at.isoformat(),
                "action": entry.action.value,
                "actor": entry.actor_name,
                "subjectKind": entry.subject_kind,
                "subjectId": subject,
                "reason": entry.reason,
                "details": entry.details,
                "destroyPrivateData": entry.destroy_private_data,
                "requestId": entry.request_id,
            }
            print(json.dumps(record, ensure_ascii=False), flush=False)
        sys.stdout.flush()
        return 0

    raise SystemExit(_with_database(settings, prepare, work))
