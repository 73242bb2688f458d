"""CORS for a web app on another origin: the download headers are readable by its code,
and a refused preflight says why and what to set."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import websocket

from tests.conftest import Api
from tests.graph.test_downloads import download_url
from tests.live import PROTOCOL
from tests.processes import Owner, serve

pytestmark = pytest.mark.backend_independent(reason="CORS headers at the edge")

APP = "http://localhost:5173"
EXPOSED = {
    "content-range",
    "content-disposition",
    "etag",
    "accept-ranges",
    "content-length",
    "www-authenticate",
    "idempotent-replayed",
    "retry-after",
}
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, idempotency-key",
}


def exposed(response: httpx.Response) -> set[str]:
    value = response.headers.get("access-control-expose-headers", "")
    return {name.strip().lower() for name in value.split(",") if name.strip()}


@pytest.mark.env(LORASHELF_CORS_ORIGINS=APP)
async def test_the_web_app_may_read_the_download_headers(api: Api) -> None:
    # given a dataset and its download link
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    url = await download_url(api, owner, dataset_id)
    # when the web app fetches part of it from its own origin
    response = await api.http.get(url, headers={"origin": APP, "range": "bytes=0-9"})
    # then the range, name, validator and length headers are exposed to its code
    assert response.status_code == 206
    assert response.headers["access-control-allow-origin"] == APP
    assert exposed(response) == EXPOSED
    assert response.headers["content-range"].startswith("bytes 0-9/")


@pytest.mark.env(LORASHELF_CORS_ORIGINS=APP)
async def test_a_refused_token_can_be_read_across_origins(api: Api) -> None:
    # when the web app sends a token that no longer works
    response = await api.http.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"origin": APP, "authorization": "Bearer expired-token"},
    )
    # then its code can see the 401 and why
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert "www-authenticate" in exposed(response)


@pytest.mark.env(LORASHELF_CORS_ORIGINS=APP)
async def test_a_preflight_from_the_configured_origin_is_allowed(api: Api) -> None:
    # when the browser asks whether the web app may post with a bearer token
    response = await api.http.options("/graphql", headers={"origin": APP, **PREFLIGHT})
    # then it may
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "idempotency-key" in allowed  # a web app may retry its mutations safely


@pytest.mark.env(LORASHELF_CORS_ORIGINS="https://app.example")
async def test_a_preflight_from_another_origin_says_what_to_set(api: Api) -> None:
    # when a dev server on an origin that is not configured sends a preflight
    response = await api.http.options("/graphql", headers={"origin": APP, **PREFLIGHT})
    # then it is refused with a JSON body naming the origin and the variable
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    assert body["error"] == "CORS_REFUSED"
    assert APP in body["message"] and "LORASHELF_CORS_ORIGINS" in body["message"]


@pytest.mark.env(LORASHELF_CORS_ORIGINS=APP)
async def test_a_preflight_for_a_method_not_allowed_says_so(api: Api) -> None:
    # when the configured origin asks for a method the API does not take across origins
    response = await api.http.options(
        "/graphql", headers={"origin": APP, "access-control-request-method": "DELETE"}
    )
    # then the refusal names the method and what is allowed
    assert response.status_code == 403
    message = response.json()["message"]
    assert "DELETE" in message and "GET, POST, PUT" in message


@pytest.mark.parametrize("path", ["/graphql", "/uploads/anything", "/downloads/anything"])
async def test_without_configured_origins_a_preflight_says_how_to_allow_one(
    api: Api, path: str
) -> None:
    # given no LORASHELF_CORS_ORIGINS
    # when a dev server's page sends a preflight
    response = await api.http.options(path, headers={"origin": APP, **PREFLIGHT})
    # then it gets a 4xx whose JSON body tells the developer what to set
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    assert body["error"] == "CORS_REFUSED"
    assert APP in body["message"] and "LORASHELF_CORS_ORIGINS" in body["message"]


async def test_without_configured_origins_nothing_is_exposed(api: Api) -> None:
    # given no LORASHELF_CORS_ORIGINS
    # when a page on another origin posts anyway
    response = await api.http.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={"origin": APP}
    )
    # then the answer carries no CORS headers: the browser keeps it from the page
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-expose-headers" not in response.headers


def test_the_web_apps_origin_may_open_the_subscriptions_websocket(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_CORS_ORIGINS": APP}
    with serve(env, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        url = server.url.replace("http://", "ws://") + "/graphql"
        # when a page on the configured origin opens the WebSocket (a browser sends Origin)
        sock = websocket.create_connection(url, subprotocols=[PROTOCOL], origin=APP, timeout=5)
        try:
            sock.send(json.dumps({"type": "connection_init", "payload": {"token": owner.token}}))
            # then it is accepted and signed in
            assert json.loads(sock.recv())["type"] == "connection_ack"
        finally:
            sock.close()
        # and a page on any other origin is refused at the handshake
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                url, subprotocols=[PROTOCOL], origin="http://elsewhere.example", timeout=5
            )
        assert refused.value.status_code == 403


def test_a_refused_preflight_never_tells_which_origins_are_allowed(tmp_path: Path) -> None:
    # given a server that allows two origins an attacker would like to know (an internal
    # admin app, a staging host)
    allowed = "https://admin.internal.example,https://staging.example"
    preflight = ["-H", "Access-Control-Request-Method: POST", "-X", "OPTIONS"]
    answers = []
    for origins in (allowed, ""):
        env = {"LORASHELF_DATA_DIR": str(tmp_path / f"var{len(origins)}")}
        if origins:
            env["LORASHELF_CORS_ORIGINS"] = origins
        with serve(env, cwd=tmp_path) as server:
            # when any page sends a preflight from its own origin, as curl can
            out = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    *preflight,
                    "-H",
                    "Origin: https://evil.example",
                    f"{server.url}/graphql",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            body, _, status = out.rpartition("\n")
            answers.append((status, body))
    # then it is refused, naming the variable, and none of the allowed origins
    for status, body in answers:
        assert status == "403"
        assert "LORASHELF_CORS_ORIGINS" in body and "evil.example" in body
        assert "admin.internal" not in body and "staging" not in body
    # and the refusal reads the same whether origins are configured or not
    assert answers[0] == answers[1]
