"""The start-up banner of ``lorashelf serve``: one block saying where everything is."""

from __future__ import annotations

import dataclasses
from importlib.metadata import PackageNotFoundError, version

from graph.http import graphiql
from storage.config.masks import mask_url
from storage.config.parse import describe_duration
from storage.config.settings import Settings


def lorashelf_version() -> str:
    try:
        return version("lorashelf")
    except PackageNotFoundError:
        return "unknown"


WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}


def base_url(settings: Settings, host: str, port: int) -> str:
    """Where clients reach us: LORASHELF_PUBLIC_URL, else the address we listen on (its
    loopback address when that is every interface)."""
    if settings.public_url:
        return settings.public_url
    shown = WILDCARDS.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def with_public_url(settings: Settings, *, host: str, port: int) -> Settings:
    """The settings ``serve`` runs with: links are built from LORASHELF_PUBLIC_URL, by
    default the address it listens on (never from a request's ``Host``)."""
    if settings.public_url:
        return settings
    return dataclasses.replace(settings, public_url=base_url(settings, host, port))


def _links(settings: Settings, host: str, port: int) -> str:
    url = base_url(settings, host, port)
    if settings.public_url:
        return f"{url} (LORASHELF_PUBLIC_URL)"
    if host in WILDCARDS:
        return f"{url} (listening on every interface: set LORASHELF_PUBLIC_URL for clients)"
    return f"{url} (the address serve listens on; LORASHELF_PUBLIC_URL changes it)"


def _on(value: bool) -> str:
    return "on" if value else "off"


def banner(
    settings: Settings, *, host: str, port: int, metrics: tuple[str, int] | None = None
) -> str:
    """The block ``serve`` prints on stderr as it starts (secrets masked); ``settings`` as
    configured (before :func:`with_public_url`); ``metrics``: where ``/metrics`` is
    served, if anywhere."""
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
    if metrics is None:
        exposed = "off (serve --metrics-port P serves them on 127.0.0.1:P)"
    else:
        metrics_host, metrics_port = metrics
        where = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
        exposed = f"http://{where}:{metrics_port}/metrics (not on the API's port)"
    rows = [
        ("GraphQL", graphql),
        ("GraphiQL", ide),
        ("links", _links(settings, host, port)),
        ("data dir", str(settings.data_dir)),
        ("database", mask_url(settings.database_url)),
        ("blob store", mask_url(settings.blob_url)),
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
        ("metrics", exposed),
        ("settings", "'lorashelf config' lists every one and where it came from"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    lines = [f"lorashelf {lorashelf_version()} starting"]
    lines += [f"  {name + ':':<{width}} {value}" for name, value in rows]
    return "\n".join(lines)
