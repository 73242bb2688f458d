"""With Redis configured, log-in limits are shared by every server process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from graph.http.app import create_app
from storage.config.settings import Settings, load_settings
from storage.runtime import NoScheduler
from tests.conftest import MutableClock
from tests.processes import RedisServer

LOG_IN = "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code message } } }"


@pytest.fixture
def shared_settings(env: dict[str, str], redis: RedisServer) -> Settings:
    env.update(
        LORASHELF_REDIS_URL=redis.url,
        LORASHELF_LOGIN_RATE_PER_USERNAME="3/minute",
    )
    return load_settings(env)


@pytest.fixture
async def two_servers(
    shared_settings: Settings, clock: MutableClock, database: None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    apps = [
        create_app(shared_settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
        for _ in range(2)
    ]
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[1]), base_url="http://b") as b,
    ):
        yield a, b


async def attempt(client: httpx.AsyncClient, username: str) -> dict[str, object]:
    response = await client.post(
        "/graphql",
        json={
            "query": LOG_IN,
            "variables": {"i": {"username": username, "password": "wrong-password"}},
        },
    )
    payload: dict[str, object] = response.json()["data"]["logIn"]
    return payload


async def test_two_servers_count_log_ins_together(
    two_servers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_servers
    # given three failed attempts spread over two servers
    answers = [
        await attempt(first, "alice"),
        await attempt(second, "alice"),
        await attempt(first, "alice"),
    ]
    assert all(a["userErrors"][0]["code"] == "INVALID_CREDENTIALS" for a in answers)  # type: ignore[index]
    # when a fourth arrives at either server
    fourth = await attempt(second, "alice")
    # then it is limited
    assert fourth["userErrors"][0]["code"] == "RATE_LIMITED"  # type: ignore[index]
