"""The lorashelf command: serve, worker, migrate, config, export-schema, fetch-graphiql."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from graph.banner import lorashelf_version
from graph.http import graphiql
from storage.config.parse import ConfigError
from storage.config.settings import Settings, effective, load_settings, value_of
from storage.db.connection import DatabaseNewer


def _log_setup() -> str:
    """Logging for serve and worker, as ``LORASHELF_LOG_FORMAT`` says; returns the format."""
    from graph.http import logs

    try:
        log_format: str = value_of("LORASHELF_LOG_FORMAT")
    except ConfigError as exc:
        _refuse(exc)
    logs.setup(log_format)
    return log_format


SETTINGS_HINT = (
    "Configured by LORASHELF_* environment variables: see 'Configuration' in README.md, "
    "or run 'lorashelf config' for the effective values."
)


def _settings(*, create: bool = True) -> Settings:
    try:
        return load_settings(create=create)
    except ConfigError as exc:
        _refuse(exc)


def _refuse(exc: ConfigError) -> NoReturn:
    print(f"lorashelf: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def _check_blob_store(settings: Settings) -> None:
    """Stop with one line if the blob store cannot be used (a missing or versioned
    bucket, no credentials), before the server starts."""
    from storage.blobs.store import open_blob_store

    async def check() -> None:
        store = open_blob_store(settings)
        try:
            await store.connect()
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except ConfigError as exc:
        _refuse(exc)


def _exit_at_once(code: int) -> NoReturn:
    """Exit now, with ``code``: after a failed start nothing is worth waiting for, and a
    thread a half-started component left behind (a database connection, a runner)
    would otherwise keep the process alive without serving."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _newer_database(exc: DatabaseNewer) -> NoReturn:
    print(
        f"lorashelf: the database was migrated by a newer lorashelf: "
        f"{'migration' if len(exc.unknown) == 1 else 'migrations'} {', '.join(exc.unknown)} "
        f"{'is' if len(exc.unknown) == 1 else 'are'} unknown to lorashelf {lorashelf_version()}. "
        "Run that newer version (going back to an older one is not supported; see "
        "'Upgrading' in README.md).",
        file=sys.stderr,
    )
    _exit_at_once(2)


def _prepare_database(settings: Settings) -> None:
    """Before serve or worker starts: refuse a database newer than this code (exit 2),
    apply pending migrations (a failed one: exit 1 with its error; it was rolled back)."""
    from storage.db import connection as db

    try:
        asyncio.run(db.migrate(settings.database_url))
    except db.DatabaseNewer as exc:
        _newer_database(exc)
    except Exception:  # noqa: BLE001 - reported, then the start is over
        logging.getLogger("lorashelf.migrations").exception(
            "the database could not be migrated; nothing was started"
        )
        _exit_at_once(1)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from graph.banner import banner
    from graph.http.app import create_app

    json_lines = _log_setup() == "json"
    settings = _settings()
    _check_blob_store(settings)
    _prepare_database(settings)
    app = create_app(settings)
    if json_lines:  # stderr holds JSON lines only: the banner is one record
        logging.getLogger("lorashelf").info(banner(settings, host=args.host, port=args.port))
    else:
        print(banner(settings, host=args.host, port=args.port), file=sys.stderr, flush=True)
    trusted = ",".join(settings.trusted_proxies)
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
            timeout_keep_alive=5,
            # A subscription's messages are small GraphQL documents, bounded like request
            # bodies.
            ws_max_size=settings.limits.max_body_bytes,
        )
    except SystemExit as exc:  # uvicorn's way of saying the start failed (e.g. port taken)
        if exc.code not in (None, 0):
            _exit_at_once(exc.code if isinstance(exc.code, int) else 1)
        raise


def _worker(args: argparse.Namespace) -> None:
    from jobs import worker

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
    _prepare_database(settings)
    try:
        code = worker.run(
            settings,
            exit_on_redis_loss=args.exit_on_redis_loss,
            metrics=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
        )
    except ConfigError as exc:  # e.g. a versioned bucket, found when the worker connects
        print(f"lorashelf: configuration error: {exc}", file=sys.stderr)
        _exit_at_once(2)
    except Exception:  # noqa: BLE001 - the worker cannot go on: say why, exit at once
        logging.getLogger("lorashelf.worker").exception("the worker stopped")
        _exit_at_once(1)
    raise SystemExit(code)


def _migrate(args: argparse.Namespace) -> None:
    from storage.db import connection as db

    if args.check:
        _migrate_check(_settings(create=False).database_url)
    logging.basicConfig(level=logging.INFO, format="lorashelf: %(message)s")
    settings = _settings()
    try:
        applied = asyncio.run(db.migrate(settings.database_url))
    except DatabaseNewer as exc:
        _newer_database(exc)
    except Exception:  # noqa: BLE001 - reported with its cause; the failed one rolled back
        logging.getLogger("lorashelf.migrations").exception("the database could not be migrated")
        _exit_at_once(1)
    count = f"{len(applied)} migration{'' if len(applied) == 1 else 's'} applied"
    print(f"lorashelf: database is up to date ({count})")


def _migrate_check(database_url: str) -> NoReturn:
    """Say what ``migrate`` would do, changing nothing: exit 0 when nothing is pending,
    1 when migrations would run, 2 when the database is newer than this code, 3 when
    the database cannot be read."""
    from storage.config.parse import mask_url
    from storage.db import connection as db

    where = mask_url(database_url)
    try:
        state = asyncio.run(db.migration_state(database_url))
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, not a database
        print(f"lorashelf: cannot read the migrations of {where}: {exc}", file=sys.stderr)
        _exit_at_once(3)
    if state.newer:
        _newer_database(DatabaseNewer(state.unknown))
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
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
