"""The ``lorashelf`` command: serve, worker, migrate, export-schema, fetch-graphiql."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from graph import graphiql
from storage.config import ConfigError, Settings, load_settings


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
    from storage.blobs import open_blob_store

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


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from graph.app import create_app

    settings = _settings()
    _check_blob_store(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    trusted = ",".join(settings.trusted_proxies)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        # Client addresses come from X-Forwarded-For only through the configured proxies.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        timeout_keep_alive=5,
    )


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        code = worker.run(settings, exit_on_redis_loss=args.exit_on_redis_loss)
    except ConfigError as exc:  # e.g. a versioned bucket, found when the worker connects
        _refuse(exc)
    raise SystemExit(code)


def _migrate(args: argparse.Namespace) -> None:
    from storage import db

    settings = _settings()
    asyncio.run(db.migrate(settings.database_url))
    print("lorashelf: database is up to date")


def _export_schema(args: argparse.Namespace) -> None:
    from graph.schema import export_sdl

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
    parser = argparse.ArgumentParser(prog="lorashelf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)
    work = sub.add_parser("worker", help="run the ARQ retention worker (needs Redis)")
    work.add_argument("--check", action="store_true", help="exit 0 if a worker is alive, 1 if not")
    work.add_argument(
        "--exit-on-redis-loss",
        action="store_true",
        help="exit 1 when Redis is lost, for a supervisor to restart the worker (by default "
        "it deletes from the database while it reconnects)",
    )
    work.set_defaults(func=_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=_migrate)
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
