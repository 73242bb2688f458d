"""The web app as `lorashelf serve` serves it at /app/: the page under its own CSP, the
app's routes answered with the page, hashed assets cached for good, nothing outside
the build reachable; and, with no build, a page that says how to make one."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from graph.http import webapp
from tests.processes import serve
from tests.web import built_app

pytestmark = pytest.mark.sqlite_only(
    reason="static files and headers only; no database is involved beyond start-up"
)


def raw_get(url: str, path: str) -> bytes:
    """A GET of a path exactly as written (no client normalises ``..`` away)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_serve_answers_the_app_and_its_routes_under_a_strict_csp(tmp_path: Path) -> None:
    dist = built_app()
    script = next((dist / "assets").glob("*.js")).name
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        base = server.url
        # when a browser opens the app, or one of its own routes (a shared link)
        for path in ("/app/", "/app/models/m_abc", "/app/upload?model=m_x", "/app/index.html"):
            page = httpx.get(f"{base}{path}")
            # then it gets the page, revalidated every time, under one CSP: this origin only
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert page.content == (dist / "index.html").read_bytes()
            assert page.headers["cache-control"] == "no-cache"
            assert page.headers.get_list("content-security-policy") == [webapp.CSP]
            assert page.headers["x-frame-options"] == "DENY"
            assert "'unsafe-inline'" not in webapp.CSP and "'unsafe-eval'" not in webapp.CSP
        # and /app goes to /app/
        moved = httpx.get(f"{base}/app")
        assert moved.status_code == 307 and moved.headers["location"].endswith("/app/")

        # when it loads its script: cached for good (the name carries the hash), no page CSP
        asset = httpx.get(f"{base}/app/assets/{script}")
        assert asset.status_code == 200
        assert asset.content == (dist / "assets" / script).read_bytes()
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-type"].startswith("text/javascript")
        assert (
            asset.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        )
        # and asked again with its ETag: not modified
        again = httpx.get(
            f"{base}/app/assets/{script}", headers={"if-none-match": asset.headers["etag"]}
        )
        assert again.status_code == 304

        # a missing file is not a route: 404, never the page
        for path in ("/app/assets/missing.js", "/app/favicon.ico", "/app/robots.txt"):
            missing = httpx.get(f"{base}{path}")
            assert missing.status_code == 404, path
            assert missing.json()["error"] == "NOT_FOUND"
        # nothing outside the build can be reached, however the path is spelled
        for path in (
            "/app/../pyproject.toml",
            "/app/%2e%2e/%2e%2e/pyproject.toml",
            "/app/..%2f..%2fpyproject.toml",
            "/app/assets/../../../schema.graphql",
        ):
            answer = raw_get(base, path)
            assert b"[project]" not in answer and b"type Query" not in answer, path
        # and only reads are answered
        assert httpx.post(f"{base}/app/", json={}).status_code == 405


async def test_without_a_build_the_app_says_how_to_build_it(tmp_path: Path) -> None:
    # given no build (an empty directory where the build would be)
    app = webapp.WebApp(tmp_path / "dist")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        # when a browser opens it
        page = await client.get("/anything")
    # then it learns what is missing and the command to run, and nothing is cached
    assert page.status_code == 503
    assert webapp.BUILD_COMMAND in page.text.replace("&amp;", "&")
    assert "The API itself works without it" in page.text
    assert page.headers["cache-control"] == "no-store"
