"""Accounts through GraphQL: sign-up, log-in, log-out, token expiry, what is stored."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from storage.config.settings import Settings
from tests.conftest import Api, MutableClock, database_contents, sql_behind_the_back

SIGN_UP = """
mutation($i: SignUpInput!) {
  signUp(input: $i) { token user { id username } userErrors { field code message } }
}
"""
LOG_IN = """
mutation($i: LogInInput!) {
  logIn(input: $i) { token user { id username } userErrors { field code message } }
}
"""
LOG_OUT = "mutation { logOut { ok userErrors { field code message } } }"
VIEWER = "{ viewer { id username } }"

PASSWORD = "correct horse battery"


async def sign_up(api: Api, username: str, password: str = PASSWORD) -> dict[str, Any]:
    data = await api.gql(SIGN_UP, {"i": {"username": username, "password": password}})
    payload: dict[str, Any] = data["signUp"]
    return payload


async def log_in(api: Api, username: str, password: str) -> dict[str, Any]:
    data = await api.gql(LOG_IN, {"i": {"username": username, "password": password}})
    payload: dict[str, Any] = data["logIn"]
    return payload


async def viewer(api: Api, token: str | None) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await api.gql(VIEWER, token=token))["viewer"]
    return found


async def post_viewer(api: Api, authorization: str) -> httpx.Response:
    return await api.http.post(
        "/graphql", json={"query": VIEWER}, headers={"authorization": authorization}
    )


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def test_sign_up_returns_a_token_that_identifies_the_user(api: Api) -> None:
    # given nobody
    # when alice signs up
    payload = await sign_up(api, "alice")
    # then she gets a token, and with it she is the viewer
    assert payload["userErrors"] == []
    assert payload["user"]["username"] == "alice"
    assert isinstance(payload["token"], str) and len(payload["token"]) >= 40
    assert await viewer(api, payload["token"]) == payload["user"]


async def test_username_is_case_insensitive_and_stored_lowercase(api: Api) -> None:
    # given nobody
    # when "Alice" signs up
    payload = await sign_up(api, "  Alice ")
    # then she is "alice", and logs in with either spelling
    assert payload["user"]["username"] == "alice"
    assert codes(await log_in(api, "ALICE", PASSWORD)) == []


@pytest.mark.parametrize("second", ["alice", "ALICE", "aLiCe"])
async def test_duplicate_username_is_taken(api: Api, second: str) -> None:
    # given alice
    await sign_up(api, "alice")
    # when somebody signs up with the same name, in any case
    payload = await sign_up(api, second, "another password")
    # then it is taken and no token is issued
    assert payload["token"] is None
    assert payload["user"] is None
    assert codes(payload) == [("username", "USERNAME_TAKEN")]


@pytest.mark.parametrize(
    "username",
    ["ab", "has space", "x" * 40, "", "-leading", "émile", "semi;colon"],
    ids=["too-short", "space", "40-chars", "empty", "leading-dash", "non-ascii", "punctuation"],
)
async def test_bad_username_is_invalid(api: Api, username: str) -> None:
    # given nobody
    # when signing up with a bad username
    payload = await sign_up(api, username)
    # then
    assert payload["token"] is None
    assert codes(payload) == [("username", "USERNAME_INVALID")]


@pytest.mark.parametrize("username", ["abc", "x" * 32, "a_b-c9"], ids=["3", "32", "mixed"])
async def test_usernames_at_the_bounds_are_valid(api: Api, username: str) -> None:
    # when signing up with a name just inside the rules
    payload = await sign_up(api, username)
    # then
    assert payload["userErrors"] == []
    assert payload["user"]["username"] == username


async def test_short_password_is_refused(api: Api) -> None:
    # given nobody
    # when signing up with a nine-character password
    payload = await sign_up(api, "alice", "123456789")
    # then it is refused and the name stays free
    assert payload["token"] is None
    assert codes(payload) == [("password", "PASSWORD_TOO_SHORT")]
    assert codes(await sign_up(api, "alice", "1234567890")) == []


async def test_log_in_gives_a_new_working_token(api: Api) -> None:
    # given alice
    signed_up = await sign_up(api, "alice")
    # when she logs in
    payload = await log_in(api, "alice", PASSWORD)
    # then she gets another token for the same account
    assert payload["userErrors"] == []
    assert payload["token"] != signed_up["token"]
    assert await viewer(api, payload["token"]) == signed_up["user"]


async def test_wrong_password_and_unknown_user_fail_identically(api: Api) -> None:
    # given alice
    await sign_up(api, "alice")
    # when logging in with a wrong password, and as somebody who does not exist
    wrong_password = await log_in(api, "alice", "not the password")
    unknown_user = await log_in(api, "mallory", PASSWORD)
    # then both answers are the same, revealing nothing
    assert wrong_password == unknown_user
    assert wrong_password["token"] is None
    assert codes(wrong_password) == [("password", "INVALID_CREDENTIALS")]


async def test_log_out_revokes_only_that_token(api: Api) -> None:
    # given alice signed in twice
    first = (await sign_up(api, "alice"))["token"]
    second = (await log_in(api, "alice", PASSWORD))["token"]
    # when she logs out with the first token
    payload = (await api.gql(LOG_OUT, token=first))["logOut"]
    # then that token is dead (401) and the other still works
    assert payload == {"ok": True, "userErrors": []}
    assert (await post_viewer(api, f"Bearer {first}")).status_code == 401
    still = await viewer(api, second)
    assert still is not None and still["username"] == "alice"


async def test_revoked_token_cannot_do_anything(api: Api) -> None:
    # given alice's token, revoked
    token = (await sign_up(api, "alice"))["token"]
    await api.gql(LOG_OUT, token=token)
    # when she tries to use it for a mutation, or to log out again
    created = await api.http.post(
        "/graphql",
        json={"query": 'mutation { createModel(input: {name: "Cats"}) { model { id } } }'},
        headers={"authorization": f"Bearer {token}"},
    )
    again = await api.http.post(
        "/graphql", json={"query": LOG_OUT}, headers={"authorization": f"Bearer {token}"}
    )
    # then both are refused as unauthenticated (401; tests/graph/test_auth_errors.py)
    for response in (created, again):
        assert response.status_code == 401
        assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["UNAUTHENTICATED"]


async def test_log_out_without_token_is_unauthenticated(api: Api) -> None:
    # given nobody signed in
    # when logging out
    payload = (await api.gql(LOG_OUT))["logOut"]
    # then
    assert payload["ok"] is False
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(None, "UNAUTHENTICATED")]


@pytest.mark.parametrize(
    "header",
    ["Bearer ", "Basic YWxpY2U6cGFzc3dvcmQ="],
    ids=["empty", "other-scheme"],
)
async def test_an_authorization_header_without_a_bearer_token_is_refused(
    api: Api, header: str
) -> None:
    # given a request whose Authorization header holds no bearer token
    response = await post_viewer(api, header)
    # then it is refused, naming the right form (never taken as anonymous: the mistake
    # would go unseen; tests/graph/test_auth_errors.py tries it against a real server)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert response.json()["errors"][0]["extensions"] == {"code": "INVALID_AUTHORIZATION"}


async def test_token_expires_after_thirty_days(api: Api, clock: MutableClock) -> None:
    # given alice's token
    token = (await sign_up(api, "alice"))["token"]
    # when one second is left, it still works
    clock.advance(30 * 86400 - 1)
    assert await viewer(api, token) is not None
    # when 30 days and a second have passed
    clock.advance(2)
    # then it no longer identifies her: it is refused as expired (401)
    assert (await post_viewer(api, f"Bearer {token}")).status_code == 401


async def test_database_keeps_neither_password_nor_token_in_clear(
    api: Api, settings: Settings
) -> None:
    # given alice with a memorable password and two live tokens
    password = "Tr0ub4dor&3-unique-marker"
    signed_up = await sign_up(api, "alice", password)
    logged_in = await log_in(api, "alice", password)
    tokens = [signed_up["token"], logged_in["token"]]
    # when the database is read directly (SQLite: its files; PostgreSQL: every row)
    raw = database_contents(settings)
    users = sql_behind_the_back(settings, "SELECT username, password_hash FROM users")
    token_hashes = [
        h for (h,) in sql_behind_the_back(settings, "SELECT token_hash FROM auth_tokens")
    ]
    # then the password and tokens appear nowhere; only their hashes are kept
    assert b"alice" in raw  # the database does hold the data
    assert password.encode() not in raw
    for token in tokens:
        assert token.encode() not in raw
    assert [u for u, _ in users] == ["alice"]
    assert users[0][1].startswith("$argon2")
    assert password not in users[0][1]
    assert len(token_hashes) == 2
    for token_hash in token_hashes:
        assert re.fullmatch(r"[0-9a-f]{64}", token_hash)
        assert token_hash not in tokens
