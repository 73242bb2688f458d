"""The lorashelf command: serve, worker, migrate, config, operator, audit, export-schema,
fetch-graphiql, and the erasure commands (graph/erasure_cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from graph import admin, erasure_cli, startup
from graph.banner import lorashelf_version
from graph.http import graphiql
from storage.config.parse import ConfigError
from storage.config.settings import Settings, effective, load_settings, value_of
from storage.db.connection import DatabaseNewer
from storage.system.patience import StillUnavailable, patiently


def _log_setup() -> str:
    """Logging for serve and worker, as ``LORASHELF_LOG_FORMAT`` says; returns the format."""
    from graph.http import logs

    try:
        log_format: str = value_of("LORASHELF_LOG_FORMAT")
    except ConfigError as exc:
        startup.refuse(exc)
    logs.setup(log_format)
    return log_format


SETTINGS_HINT = (
    "Configured by LORASHELF_* environment variables: see docs/configuration.md, "
    "or run 'lorashelf config' for the effective values."
)


def _settings(*, create: bool = True) -> Settings:
    try:
        return load_settings(create=create)
    except ConfigError as exc:
        startup.refuse(exc)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from graph.banner import banner, with_public_url
    from graph.http.app import create_app
    from graph.http.connections import Connections, Deadlines, bounded_protocols

    startup.private_files()
    json_lines = _log_setup() == "json"
    configured = _settings()
    # Links in answers are absolute: LORASHELF_PUBLIC_URL, else the address we listen on.
    settings = with_public_url(configured, host=args.host, port=args.port)
    startup.check_blob_store(settings)
    startup.prepare_database(settings)
    startup.check_master_key(settings)
    metrics_socket = None
    if args.metrics_port is not None:
        from graph.http.metrics import listen

        try:
            metrics_socket = listen(args.metrics_host, args.metrics_port)
        except OSError as exc:
            startup.refuse(
                ConfigError(
                    f"--metrics-port {args.metrics_port}: cannot listen on "
                    f"{args.metrics_host}:{args.metrics_port} ({exc.strerror})"
                )
            )
    app = create_app(settings, metrics_socket=metrics_socket)
    metrics = (args.metrics_host, args.metrics_port) if metrics_socket is not None else None
    shown = banner(configured, host=args.host, port=args.port, metrics=metrics)
    if json_lines:  # stderr holds JSON lines only: the banner is one record
        logging.getLogger("lorashelf").info(shown)
    else:
        print(shown, file=sys.stderr, flush=True)
    trusted = ",".join(settings.trusted_proxies)
    limits = settings.limits
    http_protocol, ws_protocol = bounded_protocols(
        deadlines=Deadlines(
            head=limits.head_timeout, keep_alive=limits.keep_alive, send=limits.send_timeout
        ),
        connections=Connections(
            per_address=limits.max_connections_per_address,
            trusted_proxies=settings.trusted_proxies,
            linger=limits.send_timeout,
        ),
    )
    if "*" in settings.trusted_proxies:
        logging.getLogger("lorashelf").warning(
            "LORASHELF_TRUSTED_PROXIES=*: every client's X-Forwarded-For is believed, so "
            "per-address limits count whatever address a client claims; name the proxies"
        )
    # JSON: uvicorn's loggers (the access log too) go through ours, request ids included.
    own_logging: dict[str, Any] = {"log_config": None} if json_lines else {}
    try:
        uvicorn.run(
            app,
            **own_logging,
            host=args.host,
            port=args.port,
            log_level="info",
            # Client addresses come from X-Forwarded-For only through the configured proxies.
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or None,
            timeout_keep_alive=settings.limits.keep_alive,
            http=http_protocol,
            ws=ws_protocol,
            # a client that keeps an answer waiting is dropped at LORASHELF_SEND_TIMEOUT;
            # a shutdown waits for the answers in flight no longer than that
            timeout_graceful_shutdown=settings.limits.send_timeout,
            # A subscription's messages are small GraphQL documents, bounded like request
            # bodies.
            ws_max_size=settings.limits.max_body_bytes,
        )
    except SystemExit as exc:  # uvicorn's way of saying the start failed (e.g. port taken)
        if exc.code not in (None, 0):
            startup.exit_at_once(exc.code if isinstance(exc.code, int) else 1)
        raise


def _worker(args: argparse.Namespace) -> None:
    from jobs import worker

    startup.private_files()
    settings = _settings()
    if not settings.redis_url:
        print(
            "lorashelf: configuration error: LORASHELF_REDIS_URL must be set for the worker "
            "(without Redis, `lorashelf serve` does the retention work itself)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if args.check:
        raise SystemExit(0 if worker.healthy(settings) else 1)
    _log_setup()
    startup.prepare_database(settings)
    try:
        code = worker.run(
            settings,
            exit_on_redis_loss=args.exit_on_redis_loss,
            metrics=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
        )
    except ConfigError as exc:  # e.g. a missing master key file, found when it connects
        print(f"lorashelf: configuration error: {exc}", file=sys.stderr)
        startup.exit_at_once(2)
    except StillUnavailable as exc:  # the object store stayed away from the start
        startup.unavailable(exc, then="the worker stopped")
    except Exception:  # noqa: BLE001 - the worker cannot go on: say why, exit at once
        logging.getLogger("lorashelf.worker").exception("the worker stopped")
        startup.exit_at_once(1)
    raise SystemExit(code)


def _migrate(args: argparse.Namespace) -> None:
    from storage.db import connection as db

    startup.private_files()
    if args.check:
        _migrate_check(_settings(create=False).database_url)
    logging.basicConfig(level=logging.INFO, format="lorashelf: %(message)s")
    settings = _settings()
    try:
        applied = asyncio.run(
            patiently(
                "the database",
                lambda: db.migrate(settings.database_url),
                transient=db.is_busy,
                patience=settings.start_patience,
            )
        )
    except DatabaseNewer as exc:
        startup.newer_database(exc)
    except StillUnavailable as exc:
        startup.unavailable(exc)
    except Exception:  # noqa: BLE001 - reported with its cause; the failed one rolled back
        logging.getLogger("lorashelf.migrations").exception("the database could not be migrated")
        startup.exit_at_once(1)
    count = f"{len(applied)} migration{'' if len(applied) == 1 else 's'} applied"
    print(f"lorashelf: database is up to date ({count})")


def _migrate_check(database_url: str) -> NoReturn:
    """Say what ``migrate`` would do, changing nothing: exit 0 when nothing is pending,
    1 when migrations would run, 2 when the database is newer than this code, 3 when
    the database cannot be read."""
    from storage.config.masks import mask_url
    from storage.db import connection as db

    where = mask_url(database_url)
    try:
        state = asyncio.run(db.migration_state(database_url))
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, not a database
        print(f"lorashelf: cannot read the migrations of {where}: {exc}", file=sys.stderr)
        startup.exit_at_once(3)
    if state.newer:
        startup.newer_database(DatabaseNewer(state.unknown))
    if not state.pending:
        print(f"lorashelf: {where} is up to date ({len(state.applied)} migrations applied)")
        raise SystemExit(0)
    count = len(state.pending)
    print(
        f"lorashelf: {count} migration{'' if count == 1 else 's'} would run on {where} "
        f"({len(state.applied)} applied):"
    )
    width = max(len(p.name) for p in state.pending)
    for pending in state.pending:
        print(f"  {pending.name:<{width}}  {pending.summary}")
    print("Run 'lorashelf migrate' to apply them (serve and worker also do at start).")
    raise SystemExit(1)


def _config(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="lorashelf: warning: %(message)s")
    settings = _settings(create=False)
    rows = effective(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {source:<7}  {value or '(empty)'}")


def _export_schema(args: argparse.Namespace) -> None:
    from graph.schema.build import export_sdl

    # The committed schema is the one for the default configuration.
    sys.stdout.write(export_sdl(load_settings({}, create=False)))


def _fetch_graphiql(args: argparse.Namespace) -> None:
    try:
        graphiql.fetch(registry=args.registry, say=lambda line: print(f"lorashelf: {line}"))
    except (graphiql.FetchError, OSError) as exc:
        print(f"lorashelf: fetch-graphiql failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"lorashelf: GraphiQL's files are in {graphiql.VENDOR_DIR}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lorashelf",
        description="lorashelf: share LoRA models and their training datasets over GraphQL.",
        epilog=SETTINGS_HINT,
    )
    parser.add_argument("--version", action="version", version=f"lorashelf {lorashelf_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the API server",
        description="Run the API server: GraphQL (and GraphiQL in a browser) at /graphql, "
        "upload and download links, /healthz and /readyz. Without LORASHELF_REDIS_URL it "
        "also does the retention work (reminders, deletions) itself.",
        epilog=SETTINGS_HINT,
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics (requests, errors, uploads, the retention backlog) at "
        "/metrics on this port, never on the API's (default: off)",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics port listens on (default: %(default)s; keep it internal)",
    )
    serve.set_defaults(func=_serve)
    work = sub.add_parser("worker", help="run the ARQ retention worker (needs Redis)")
    work.add_argument("--check", action="store_true", help="exit 0 if a worker is alive, 1 if not")
    work.add_argument(
        "--exit-on-redis-loss",
        action="store_true",
        help="exit 1 when Redis is lost, for a supervisor to restart the worker (by default "
        "it deletes from the database while it reconnects)",
    )
    work.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this worker's Prometheus metrics (deletions, reminders, sweeps) on this "
        "port (default: off)",
    )
    work.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics port listens on (default: %(default)s; keep it internal)",
    )
    work.set_defaults(func=_worker)
    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply the pending database migrations (serve and worker also do at "
        "start). Refuses (exit 2) a database a newer lorashelf migrated.",
        epilog=SETTINGS_HINT,
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: list the migrations that would run; exit 0 if none, 1 if "
        "some would, 2 if the database is newer than this lorashelf, 3 if it cannot be read",
    )
    migrate.set_defaults(func=_migrate)
    sub.add_parser(
        "config",
        help="print the effective configuration (every LORASHELF_* variable, secrets masked)",
        description="Print every LORASHELF_* variable with its effective value and where "
        "it came from (env or default), secrets masked; exit 2 if the configuration is "
        "not valid.",
        epilog=SETTINGS_HINT,
    ).set_defaults(func=_config)
    operator = sub.add_parser(
        "operator",
        help="grant, revoke or list the operator role (the only way to it: never the API)",
        description="Operators handle reports, take content down and suspend accounts; they "
        "never see private data. Each grant and revocation is in the audit trail.",
        epilog=SETTINGS_HINT,
    )
    operator.add_argument("action", choices=("grant", "revoke", "list"))
    operator.add_argument("username", nargs="?", help="the account (grant and revoke)")
    operator.set_defaults(func=lambda a: admin.operator(a, _settings(), startup.prepare_database))
    audit_cmd = sub.add_parser(
        "audit",
        help="export the audit trail (JSON lines, oldest first)",
        description="Print every audit entry at or after --since, one JSON object per line, "
        "oldest first: who did what to which subject, why, when, in which request.",
        epilog=SETTINGS_HINT,
    )
    audit_cmd.add_argument(
        "--since",
        type=admin.parse_since,
        required=True,
        help="an ISO date or date-time (UTC unless given), or a duration back from now (7d)",
    )
    audit_cmd.set_defaults(func=lambda a: admin.audit(a, _settings(), startup.prepare_database))
    sub.add_parser("export-schema", help="print the GraphQL SDL").set_defaults(func=_export_schema)
    fetch = sub.add_parser(
        "fetch-graphiql",
        help="download GraphiQL's pinned files from npm, verify them, install them (idempotent)",
    )
    fetch.add_argument(
        "--registry",
        default=graphiql.DEFAULT_REGISTRY,
        help="npm registry or mirror to download from (default: %(default)s); "
        "the pinned integrity hashes are checked whatever the source",
    )
    fetch.set_defaults(func=_fetch_graphiql)
    erasure_cli.register(sub, _settings)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
