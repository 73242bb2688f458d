"""Transport switches: CORS allowlist, introspection and GraphiQL, health."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Api

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


async def test_graphiql_opens_on_a_browser_get(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_answers_when_the_database_does(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
