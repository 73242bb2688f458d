"""The start-up banner of ``lorashelf serve``: one block saying where everything is."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from graph.http import graphiql
from storage.config.parse import describe_duration, mask_url
from storage.config.settings import Settings


def lorashelf_version() -> str:
    try:
        return version("lorashelf")
    except PackageNotFoundError:
        return "unknown"


def base_url(settings: Settings, host: str, port: int) -> str:
    """Where clients reach us: LORASHELF_PUBLIC_URL, else the address we listen on."""
    if settings.public_url:
        return settings.public_url
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _on(value: bool) -> str:
    return "on" if value else "off"


def banner(settings: Settings, *, host: str, port: int) -> str:
    """The block ``serve`` prints on stderr as it starts (secrets masked)."""
    graphql = f"{base_url(settings, host, port)}/graphql"
    if not settings.graphiql:
        ide = "off (LORASHELF_GRAPHIQL=false)"
    elif graphiql.missing():
        ide = f"on, but its files are missing: run `{graphiql.FETCH_COMMAND}`"
    else:
        ide = f"on: open {graphql} in a browser"
    if settings.redis_url:
        runner = f"ARQ through {mask_url(settings.redis_url)} (run `lorashelf worker`)"
    else:
        runner = "embedded (retention work runs in this process)"
    reminders = (
        ", ".join(describe_duration(r) for r in settings.reminders) + " before deletion"
        if settings.reminders
        else "none"
    )
    rows = [
        ("GraphQL", graphql),
        ("GraphiQL", ide),
        ("data dir", str(settings.data_dir)),
        ("database", mask_url(settings.database_url)),
        ("blob store", settings.blob_url),
        ("runner", runner),
        (
            "retention",
            f"private datasets {describe_duration(settings.private_retention)} after their "
            f"version is published ({describe_duration(settings.draft_retention)} after "
            "upload if never published)",
        ),
        ("reminders", reminders),
        ("CORS origins", ", ".join(settings.cors_origins) or "none (same origin only)"),
        ("introspection", _on(settings.introspection)),
        ("settings", "'lorashelf config' lists every one and where it came from"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    lines = [f"lorashelf {lorashelf_version()} starting"]
    lines += [f"  {name + ':':<{width}} {value}" for name, value in rows]
    return "\n".join(lines)
