"""Transport switches: CORS allowlist, introspection and GraphiQL, health."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import httpx
import pytest

from graph.http import graphiql
from graph.http.app import create_app
from storage.config.settings import Settings
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock

GRAPHIQL_CSP = (
    "default-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; object-src 'none'; frame-ancestors 'none'"
)
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
CDNS = ("unpkg", "jsdelivr", "cdnjs", "esm.sh")


@pytest.fixture(autouse=True)
def graphiql_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GraphiQL's static directory as `lorashelf fetch-graphiql` leaves it, without the
    network: our own committed files, and a placeholder for each pinned npm file (these
    tests are about what the server sends; test_graphiql_browser.py runs the real ones)."""
    static = tmp_path / "graphiql-static"
    static.mkdir()
    for name in (graphiql.OWN_SCRIPT, graphiql.OWN_STYLESHEET):
        shutil.copy(graphiql.STATIC_DIR / name, static / name)
    for package in graphiql.PACKAGES:
        for file in package.files:
            path = static / "vendor" / package.directory / file.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"/* placeholder for {package.name}@{package.version} {file.name} */\n")
    monkeypatch.setattr(graphiql, "STATIC_DIR", static)
    monkeypatch.setattr(graphiql, "VENDOR_DIR", static / "vendor")
    return static


PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type",
}


@pytest.mark.env(LORASHELF_CORS_ORIGINS="https://app.example")
async def test_cors_allows_only_the_configured_origin(client: httpx.AsyncClient) -> None:
    # when
    allowed = await client.options(
        "/graphql", headers={"origin": "https://app.example", **PREFLIGHT}
    )
    refused = await client.options(
        "/graphql", headers={"origin": "https://evil.example", **PREFLIGHT}
    )
    # then
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in refused.headers


async def test_no_cross_origin_access_by_default(client: httpx.AsyncClient) -> None:
    # when
    response = await client.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={"origin": "https://app.example"}
    )
    # then
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_introspection_is_on_by_default(api: Api) -> None:
    data = await api.gql("{ __schema { queryType { name } } }")
    assert data == {"__schema": {"queryType": {"name": "Query"}}}


@pytest.mark.env(LORASHELF_INTROSPECTION="false")
async def test_introspection_can_be_switched_off(api: Api) -> None:
    # when
    body = await api.raw("{ __schema { queryType { name } } }")
    # then
    assert body.get("data") is None
    assert "introspection" in body["errors"][0]["message"].lower()
    # and ordinary queries still work
    assert await api.gql("{ viewer { id } }") == {"viewer": None}


@pytest.mark.env(LORASHELF_GRAPHIQL="false")
async def test_graphiql_can_be_switched_off(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" not in response.text.lower()
    # and its files are not served either
    script = await client.get(f"/graphiql/{graphiql.OWN_SCRIPT}")
    assert script.status_code == 404


async def test_graphiql_opens_on_a_browser_get(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


def page_assets(page: str) -> list[str]:
    return re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', page)


async def test_graphiql_page_loads_only_same_origin_files_under_a_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    # when a browser opens GraphiQL
    response = await client.get("/graphql", headers={"accept": "text/html"})
    page = response.text
    # then the page has the strict policy: nothing from another origin, no inline script
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == GRAPHIQL_CSP
    assert "unsafe" not in GRAPHIQL_CSP and "https:" not in GRAPHIQL_CSP
    assert not any(cdn in page.lower() for cdn in CDNS)
    assert "http://" not in page and "https://" not in page
    # and every script is a file (the CSP would refuse an inline one anyway), no inline style
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S)
    assert len(scripts) == 5 and all(body.strip() == "" for body in scripts)
    assert "<style" not in page and " style=" not in page
    # and each asset is one of ours, pinned with subresource integrity
    assets = page_assets(page)
    assert [a for a in assets if not a.startswith("/graphiql/")] == ["data:,"]  # the favicon
    assert all(
        re.search(rf'(?:src|href)="{re.escape(a)}" integrity="sha256-[A-Za-z0-9+/=]+"', page)
        for a in assets
        if a.startswith("/graphiql/")
    )


async def test_graphiql_files_answer_with_the_strict_csp(
    client: httpx.AsyncClient, graphiql_files: Path
) -> None:
    page = (await client.get("/graphql", headers={"accept": "text/html"})).text
    assets = [a for a in page_assets(page) if a.startswith("/graphiql/")]
    assert len(assets) == 8
    for asset in assets:
        # when the browser loads it
        response = await client.get(asset)
        # then it is served as what it is, and may never run as a page
        assert response.status_code == 200, asset
        assert response.headers["content-security-policy"] == STRICT_CSP, asset
        assert response.headers["x-content-type-options"] == "nosniff"
        kind = "text/css" if asset.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(kind), asset
    # and our own code names no CDN
    for name in (graphiql.OWN_SCRIPT, graphiql.OWN_STYLESHEET):
        text = (graphiql_files / name).read_text().lower()
        assert not any(cdn in text for cdn in CDNS), name
    # and nothing outside the static directory is reachable through it
    escape = await client.get("/graphiql/../app.py")
    assert escape.status_code == 404


async def test_graphiql_without_its_files_explains_how_to_fetch_them(
    settings: Settings,
    clock: MutableClock,
    graphiql_files: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given the npm files were never fetched
    shutil.rmtree(graphiql_files / "vendor")
    caplog.set_level(logging.WARNING, logger="lorashelf")
    # when the server starts
    app = create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
    # then it warns how to get them
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("run `lorashelf fetch-graphiql`" in w for w in warnings), warnings
    # and when a browser opens GraphiQL
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    # then the page says what to run, and loads nothing (never a CDN)
    assert response.status_code == 503
    assert "<code>lorashelf fetch-graphiql</code>" in response.text
    assert "<script" not in response.text and '<link rel="stylesheet"' not in response.text
    assert not any(cdn in response.text.lower() for cdn in CDNS)
    assert response.headers["content-security-policy"] == GRAPHIQL_CSP


async def test_health_answers_when_the_database_does(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
