"""Auth errors a client can act on: a bearer token that no longer works (unknown,
expired, revoked by logOut or changePassword) answers 401 with
``WWW-Authenticate: Bearer error="invalid_token"`` and a GraphQL error coded
``UNAUTHENTICATED``; a header that is not ``Bearer <token>`` answers 401 with
``error="invalid_request"``; a request without the header stays anonymous."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api, MutableClock
from tests.processes import serve

VIEWER = "{ viewer { username } }"
PASSWORD = "correct horse battery"
LOG_IN = "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code } } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { code } } }"


async def post(
    api: Api, query: str, token: str, variables: dict[str, Any] | None = None
) -> httpx.Response:
    return await api.http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
    )


def assert_invalid_token(response: httpx.Response) -> None:
    """The one answer for a token that does not work."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "sign in again" in error["message"]


@pytest.mark.parametrize(
    "token", ["not-a-real-token", "x" * 500], ids=["unknown", "longer-than-any-token"]
)
async def test_an_unknown_token_is_refused_with_401(api: Api, token: str) -> None:
    # given a bearer token nobody was given
    # when it is sent with a query
    response = await post(api, VIEWER, token)
    # then the answer says the token is not valid, instead of treating it as anonymous
    assert_invalid_token(response)


async def test_a_get_query_with_a_bad_token_is_refused_too(api: Api) -> None:
    # when a query comes by GET with a token nobody was given
    response = await api.http.get(
        "/graphql",
        params={"query": VIEWER},
        headers={"authorization": "Bearer not-a-real-token"},
    )
    # then it is the same 401
    assert_invalid_token(response)


async def test_an_expired_token_is_refused_with_401(api: Api, clock: MutableClock) -> None:
    # given alice's token, used once
    alice = await api.sign_up("alice")
    assert (await api.gql(VIEWER, token=alice.token))["viewer"] == {"username": "alice"}
    # when its 30 days have passed
    clock.advance(30 * 86400 + 1)
    # then it gets a 401 the client can act on
    assert_invalid_token(await post(api, VIEWER, alice.token))


async def test_a_token_revoked_by_log_out_is_refused_and_others_still_work(api: Api) -> None:
    # given alice signed in twice
    alice = await api.sign_up("alice")
    second = (await api.gql(LOG_IN, {"i": {"username": "alice", "password": PASSWORD}}))["logIn"][
        "token"
    ]
    # when she logs out with the first token
    logged_out = await api.gql("mutation { logOut { ok } }", token=alice.token)
    assert logged_out == {"logOut": {"ok": True}}
    # then the first token gets a 401, for queries and mutations alike
    assert_invalid_token(await post(api, VIEWER, alice.token))
    assert_invalid_token(await post(api, "mutation { logOut { ok } }", alice.token))
    # and the other sign-in is untouched
    assert (await api.gql(VIEWER, token=second))["viewer"] == {"username": "alice"}


async def test_tokens_revoked_by_a_password_change_are_refused(api: Api) -> None:
    # given alice's token
    alice = await api.sign_up("alice")
    # when she changes her password
    changed = (
        await api.gql(
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) "
            "{ token userErrors { code } } }",
            {"i": {"currentPassword": PASSWORD, "newPassword": "a brand new passphrase"}},
            alice.token,
        )
    )["changePassword"]
    assert changed["userErrors"] == []
    # then the old token gets a 401 and the new one works
    assert_invalid_token(await post(api, VIEWER, alice.token))
    assert (await api.gql(VIEWER, token=changed["token"]))["viewer"] == {"username": "alice"}


async def test_an_operation_sent_with_a_bad_token_does_not_run(api: Api) -> None:
    # given a stale token
    # when a sign-up is sent with it
    response = await post(
        api, SIGN_UP, "stale-token", {"i": {"username": "bob", "password": PASSWORD}}
    )
    # then it is refused before running: the username is still free
    assert_invalid_token(response)
    signed_up = (await api.gql(SIGN_UP, {"i": {"username": "bob", "password": PASSWORD}}))["signUp"]
    assert signed_up["userErrors"] == [] and signed_up["token"]


async def test_no_authorization_header_stays_anonymous(api: Api) -> None:
    # when a request carries no Authorization header at all
    response = await api.http.post("/graphql", json={"query": VIEWER})
    # then it is simply anonymous
    assert response.status_code == 200
    assert "www-authenticate" not in response.headers
    assert response.json() == {"data": {"viewer": None}}


def curl(url: str, query: str, authorization: str) -> tuple[int, dict[str, str], Any]:
    """POST a GraphQL document with curl, sending ``Authorization`` exactly as given."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-i",
            "-X",
            "POST",
            url,
            "-H",
            "Content-Type: application/json",
            "-H",
            # (curl drops a header given as "Name:" with no value; "Name;" sends it empty)
            f"Authorization: {authorization}" if authorization else "Authorization;",
            "--data",
            json.dumps({"query": query}),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


MALFORMED = {
    "token-alone": "{token}",
    "token-scheme": "Token {token}",
    "basic": "Basic YWxpY2U6cGFzc3dvcmQ=",
    "bearer-without-token": "Bearer ",
    "empty": "",
}
CREATE = 'mutation { createModel(input: {name: "x"}) { model { id } userErrors { code } } }'


@pytest.mark.parametrize("shape", list(MALFORMED), ids=list(MALFORMED))
def test_an_authorization_header_without_the_bearer_scheme_is_refused(
    tmp_path: Path, shape: str
) -> None:
    # given a real server and alice's valid token
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        url = f"{server.url}/graphql"
        signed = httpx.post(
            url,
            json={
                "query": SIGN_UP,
                "variables": {"i": {"username": "alice", "password": PASSWORD}},
            },
        ).json()["data"]["signUp"]
        header = MALFORMED[shape].format(token=signed["token"])
        # when the token is sent as GraphiQL's Headers tab makes it easy to: no scheme,
        # another scheme, or nothing after the scheme (a query, and a mutation)
        for document in (VIEWER, CREATE):
            status, headers, body = curl(url, document, header)
            # then it is refused with a message that names the right form, never anonymous
            assert status == 401, body
            assert headers["www-authenticate"] == 'Bearer error="invalid_request"'
            (error,) = body["errors"]
            assert error["extensions"] == {"code": "INVALID_AUTHORIZATION"}
            assert "`Bearer <token>`" in error["message"] and "data" not in body
        # and nothing was made; the same token sent properly works
        status, _, body = curl(
            url, "{ viewer { username models { edges { cursor } } } }", f"Bearer {signed['token']}"
        )
        assert body == {"data": {"viewer": {"username": "alice", "models": {"edges": []}}}}
