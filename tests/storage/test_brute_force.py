"""Log-in brute force and sign-up flooding, through GraphQL over HTTP.

Log-in attempts are limited per username and per client address; sign-ups per
address. A limited attempt answers ``RATE_LIMITED`` before any password is checked,
and the answer never depends on whether the username exists.

Several client addresses talk to one app here: each ``from_address(address)`` is an httpx
client whose ASGI transport reports that address as the peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from graph.http.app import create_app
from storage.config.settings import Settings
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock

LOG_IN = """
mutation($i: LogInInput!) {
  logIn(input: $i) { token user { id username } userErrors { field code message } }
}
"""
SIGN_UP = """
mutation($i: SignUpInput!) {
  signUp(input: $i) { token user { id username } userErrors { field code message } }
}
"""
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"

LOGIN_LIMITS = pytest.mark.env(
    LORASHELF_LOGIN_RATE_PER_USERNAME="3/minute", LORASHELF_LOGIN_RATE_PER_ADDRESS="5/minute"
)
RATE_LIMITED = {
    "token": None,
    "user": None,
    "userErrors": [
        {
            "field": None,
            "code": "RATE_LIMITED",
            "message": "Too many attempts; wait a little and try again.",
        }
    ],
}
WRONG_CREDENTIALS = {
    "token": None,
    "user": None,
    "userErrors": [
        {
            "field": "password",
            "code": "INVALID_CREDENTIALS",
            "message": "Wrong username or password.",
        }
    ],
}

Client = Callable[[str], Api]


@pytest.fixture
async def app(settings: Settings, clock: MutableClock, database: None) -> Starlette:
    return create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)


@pytest.fixture
async def from_address(app: Starlette) -> AsyncIterator[Client]:
    """``from_address("203.0.113.7")``: an Api whose requests come from that address."""
    opened: dict[str, Api] = {}

    def at(address: str) -> Api:
        if address not in opened:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            opened[address] = Api(
                httpx.AsyncClient(transport=transport, base_url="http://lorashelf")
            )
        return opened[address]

    yield at
    for api in opened.values():
        await api.http.aclose()


async def log_in(api: Api, username: str, password: str) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(LOG_IN, {"i": {"username": username, "password": password}})
    )["logIn"]
    return payload


async def sign_up(api: Api, username: str, password: str = PASSWORD) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(SIGN_UP, {"i": {"username": username, "password": password}})
    )["signUp"]
    return payload


# Per username ---------------------------------------------------------------------------


@LOGIN_LIMITS
async def test_fourth_attempt_for_a_username_is_limited_even_with_the_right_password(
    from_address: Client,
) -> None:
    # given alice, and three wrong passwords tried for her
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    attacker = from_address("203.0.113.1")
    for _ in range(3):
        assert await log_in(attacker, "alice", WRONG) == WRONG_CREDENTIALS
    # when the fourth attempt carries the right password
    fourth = await log_in(attacker, "alice", PASSWORD)
    # then it is limited: no token, however right the password
    assert fourth == RATE_LIMITED


@LOGIN_LIMITS
async def test_an_attacker_hammering_from_one_address_cannot_lock_the_owner_out(
    from_address: Client,
) -> None:
    # given alice, and an attacker whose wrong passwords for her (any spelling) from one
    # address are now refused
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    attacker = from_address("203.0.113.1")
    for _ in range(3):
        assert await log_in(attacker, "alice", WRONG) == WRONG_CREDENTIALS
    assert await log_in(attacker, "  ALICE ", WRONG) == RATE_LIMITED
    # when alice herself logs in from another address
    answer = await log_in(from_address("192.0.2.50"), "alice", PASSWORD)
    # then she gets in
    assert answer["userErrors"] == [] and answer["token"]


@pytest.mark.env(
    LORASHELF_LOGIN_RATE_PER_USERNAME="3/minute",
    LORASHELF_LOGIN_RATE_PER_ADDRESS="5/minute",
    LORASHELF_LOGIN_SLOWDOWN_PER_USERNAME="4/minute",
)
async def test_many_addresses_past_the_username_threshold_are_slowed_not_locked_out(
    from_address: Client,
) -> None:
    # given alice, and wrong passwords for her from six addresses, past the all-addresses
    # threshold of four (from the fifth on, each attempt is slowed down)
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    answers = [await log_in(from_address(f"203.0.113.{n}"), "alice", WRONG) for n in range(6)]
    # then every one was still answered on its merits
    assert answers == [WRONG_CREDENTIALS] * 6
    # and alice, from her own address, gets in (slowed, never refused)
    answer = await log_in(from_address("192.0.2.50"), "alice", PASSWORD)
    assert answer["userErrors"] == [] and answer["token"]


async def test_the_whole_password_is_compared(from_address: Client) -> None:
    # given alice, whose password is the longest allowed (1,024 characters)
    longest = "p" * 1024
    assert (await sign_up(from_address("198.51.100.1"), "alice", longest))["userErrors"] == []
    client = from_address("198.51.100.2")
    # when somebody logs in with it followed by anything, or with a prefix of it
    longer = await log_in(client, "alice", longest + "anything")
    prefix = await log_in(client, "alice", longest[:1000])
    # then neither gets in; only the exact password does
    assert longer == WRONG_CREDENTIALS
    assert prefix == WRONG_CREDENTIALS
    assert (await log_in(client, "alice", longest))["token"]


async def test_sign_up_refuses_what_log_in_could_never_accept(from_address: Client) -> None:
    # a password over the maximum is refused at sign-up (so no account has one)
    answer = await sign_up(from_address("198.51.100.1"), "alice", "p" * 1025)
    assert [e["code"] for e in answer["userErrors"]] == ["PASSWORD_TOO_LONG"]


@LOGIN_LIMITS
async def test_unknown_username_is_limited_exactly_like_a_real_one(from_address: Client) -> None:
    # given alice, and three wrong attempts each for alice and for "mallory" (no such
    # user), from two addresses
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    for_alice, for_mallory = from_address("203.0.113.1"), from_address("203.0.113.2")
    real = [await log_in(for_alice, "alice", WRONG) for _ in range(3)]
    unknown = [await log_in(for_mallory, "mallory", WRONG) for _ in range(3)]
    # when each is tried a fourth time
    real.append(await log_in(for_alice, "alice", WRONG))
    unknown.append(await log_in(for_mallory, "mallory", WRONG))
    # then both sequences of answers are identical, down to every field
    assert real == unknown
    assert real == [WRONG_CREDENTIALS] * 3 + [RATE_LIMITED]


@LOGIN_LIMITS
async def test_other_usernames_are_not_limited_by_alices(from_address: Client) -> None:
    # given alice limited after three wrong passwords from one address
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    await from_address("198.51.100.1").sign_up("bob", PASSWORD)
    for _ in range(3):
        await log_in(from_address("203.0.113.1"), "alice", WRONG)
    assert await log_in(from_address("203.0.113.1"), "alice", PASSWORD) == RATE_LIMITED
    # when bob logs in from his own address
    answer = await log_in(from_address("192.0.2.9"), "bob", PASSWORD)
    # then he gets his token
    assert answer["userErrors"] == []
    assert answer["token"]
    assert answer["user"]["username"] == "bob"


# Per address -----------------------------------------------------------------------------


@LOGIN_LIMITS
async def test_address_is_limited_after_five_attempts_across_usernames(
    from_address: Client,
) -> None:
    # given alice, and one address that tried five different usernames once each
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    sprayer = from_address("203.0.113.66")
    answers = [await log_in(sprayer, f"user{n}", WRONG) for n in range(5)]
    assert answers == [WRONG_CREDENTIALS] * 5
    # when that address tries any username, even alice with her right password
    for_alice = await log_in(sprayer, "alice", PASSWORD)
    for_nobody = await log_in(sprayer, "nobody-at-all", WRONG)
    # then every attempt is limited, and the answers are the same
    assert for_alice == RATE_LIMITED
    assert for_nobody == RATE_LIMITED
    # while alice from her own address still logs in
    own = await log_in(from_address("198.51.100.1"), "alice", PASSWORD)
    assert own["userErrors"] == []
    assert own["token"]


# Sign-up --------------------------------------------------------------------------------


@pytest.mark.env(LORASHELF_SIGNUP_RATE_PER_ADDRESS="2/hour")
async def test_sign_up_is_limited_per_address(from_address: Client) -> None:
    # given an address that created two accounts
    flooder = from_address("203.0.113.99")
    assert (await sign_up(flooder, "alice"))["userErrors"] == []
    assert (await sign_up(flooder, "bob"))["userErrors"] == []
    # when it tries a third
    third = await sign_up(flooder, "carol")
    # then it is limited and no account is created
    assert third == RATE_LIMITED
    # while another address signs up carol
    elsewhere = await sign_up(from_address("198.51.100.3"), "carol")
    assert elsewhere["userErrors"] == []
    assert elsewhere["user"]["username"] == "carol"


@pytest.mark.env(LORASHELF_SIGNUP_RATE_PER_ADDRESS="2/hour")
async def test_limited_sign_up_does_not_tell_whether_a_username_is_taken(
    from_address: Client,
) -> None:
    # given alice, and an address that used up its two sign-ups
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    prober = from_address("203.0.113.5")
    assert (await sign_up(prober, "dave"))["userErrors"] == []
    assert (await sign_up(prober, "erin"))["userErrors"] == []
    # when it signs up as the taken "alice", the free "zed", and an invalid name
    taken = await sign_up(prober, "alice")
    free = await sign_up(prober, "zed")
    invalid = await sign_up(prober, "!")
    # then the three answers are identical
    assert taken == free == invalid == RATE_LIMITED


@pytest.mark.env(LORASHELF_SIGNUP_RATE_PER_ADDRESS="2/hour")
async def test_failed_sign_ups_count_towards_the_limit(from_address: Client) -> None:
    # given alice, and an address probing for taken names with sign-up
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    prober = from_address("203.0.113.5")
    first = await sign_up(prober, "alice")
    second = await sign_up(prober, "alice")
    assert [e["code"] for e in first["userErrors"] + second["userErrors"]] == [
        "USERNAME_TAKEN",
        "USERNAME_TAKEN",
    ]
    # when it probes a third name
    third = await sign_up(prober, "bob")
    # then the probing has been cut off: no answer about bob
    assert third == RATE_LIMITED
