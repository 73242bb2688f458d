"""E-mail addresses through the API (the app in process, a real database): setting one,
the verification link and its clear refusals (expired, used, replaced, not valid), the
preferences, and who sees the address. What is sent, through a real SMTP server, is in
tests/jobs/test_email_e2e.py."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from storage.mail import messages
from tests.conftest import Api, MutableClock, Person, sql_behind_the_back

MAIL = pytest.mark.env(
    LORASHELF_SMTP_URL="smtp://mailer:secret@127.0.0.1:1",  # nothing is sent in process
    LORASHELF_MAIL_FROM="lorashelf <noreply@example.test>",
    LORASHELF_PUBLIC_URL="https://shelf.example.test",
)
SET = (
    "mutation($i: SetEmailInput!) { setEmail(input: $i) "
    "{ user { email emailVerified } userErrors { field code message } } }"
)
VERIFY = (
    "mutation($i: VerifyEmailInput!) { verifyEmail(input: $i) "
    "{ verified userErrors { field code message } } }"
)
ME = "{ viewer { email emailVerified emailPreferences { reminders deletions } } }"


async def set_email(api: Api, who: Person, address: str | None) -> Any:
    return (await api.gql(SET, {"i": {"email": address}}, who.token))["setEmail"]


def latest_link(settings: Any, address: str) -> str:
    """The verification link in the newest message queued for ``address`` (nothing is
    sent in process: the queue is read as the sender would)."""
    rows = sql_behind_the_back(
        settings,
        f"SELECT text_body FROM outgoing_mail WHERE recipient = '{address}' ORDER BY id DESC",
    )
    assert rows, f"nothing queued for {address}"
    found = re.search(r"https://\S+", rows[0][0])
    assert found is not None
    return found.group(0)


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def verify(api: Api, token: str) -> Any:
    return (await api.gql(VERIFY, {"i": {"token": token}}))["verifyEmail"]


async def test_without_smtp_no_address_is_taken(api: Api) -> None:
    alice = await api.sign_up("alice")
    answer = await set_email(api, alice, "alice@example.test")
    assert answer["userErrors"][0]["code"] == "EMAIL_UNAVAILABLE"
    assert (await api.gql(ME, token=alice.token))["viewer"]["email"] is None


@MAIL
async def test_an_address_is_confirmed_through_its_link_once(api: Api, settings: Any) -> None:
    # given Alice sets her address
    alice = await api.sign_up("alice")
    answer = await set_email(api, alice, "Alice@Example.TEST ")
    assert answer == {
        "user": {"email": "Alice@example.test", "emailVerified": False},
        "userErrors": [],
    }
    link = latest_link(settings, "Alice@example.test")
    assert link.startswith("https://shelf.example.test/email/verify?token=")
    # when the link's token is used
    assert await verify(api, token_of(link)) == {"verified": True, "userErrors": []}
    # then the address is confirmed
    me = (await api.gql(ME, token=alice.token))["viewer"]
    assert me == {
        "email": "Alice@example.test",
        "emailVerified": True,
        "emailPreferences": {"reminders": True, "deletions": True},
    }
    # and the same link again says it was used
    again = await verify(api, token_of(link))
    assert again["userErrors"][0]["code"] == "TOKEN_USED"


@MAIL
async def test_expired_replaced_and_forged_links_answer_clearly(
    api: Api, settings: Any, clock: MutableClock
) -> None:
    alice = await api.sign_up("alice")
    await set_email(api, alice, "alice@example.test")
    first = token_of(latest_link(settings, "alice@example.test"))
    await set_email(api, alice, "alice@other.test")
    second = token_of(latest_link(settings, "alice@other.test"))
    # a link replaced by a newer one
    assert (await verify(api, first))["userErrors"][0]["code"] == "TOKEN_SUPERSEDED"
    # a link past its 24 hours
    clock.advance(24 * 3600)
    expired = await verify(api, second)
    assert expired["userErrors"] == [
        {
            "field": "token",
            "code": "TOKEN_EXPIRED",
            "message": "This verification link has expired: set the address again for a new one.",
        }
    ]
    # something that is not a link of ours, or one whose address was removed
    assert (await verify(api, second[:-4] + "AAAA"))["userErrors"][0]["code"] == "TOKEN_INVALID"
    assert (await verify(api, "nonsense"))["userErrors"][0]["code"] == "TOKEN_INVALID"
    await set_email(api, alice, None)
    assert (await verify(api, second))["userErrors"][0]["code"] == "TOKEN_SUPERSEDED"
    assert (await api.gql(ME, token=alice.token))["viewer"]["email"] is None


@MAIL
async def test_an_address_is_only_its_owners(api: Api) -> None:
    # given Alice, with a confirmed... or pending address and a public model
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    await api.model_with_dataset(alice, "PUBLIC")
    await set_email(api, alice, "alice@example.test")
    query = (
        "query($id: ID!) { node(id: $id) { ... on User { username email emailVerified "
        "emailPreferences { reminders } isOperator reports { edges { node { id } } } "
        "auditLog { edges { node { id } } } } } }"
    )
    for token in (None, bob.token):
        seen = (await api.gql(query, {"id": alice.id}, token))["node"]
        assert seen == {
            "username": "alice",
            "email": None,
            "emailVerified": None,
            "emailPreferences": None,
            "isOperator": None,
            "reports": None,
            "auditLog": None,
        }


@MAIL
@pytest.mark.env(LORASHELF_EMAIL_RATE_PER_USER="2/hour")
async def test_setting_an_address_is_rate_limited(api: Api) -> None:
    alice = await api.sign_up("alice")
    codes = []
    for n in range(3):
        answer = await set_email(api, alice, f"alice{n}@example.test")
        codes.append(answer["userErrors"][0]["code"] if answer["userErrors"] else "OK")
    assert codes == ["OK", "OK", "RATE_LIMITED"]
    # removing one's address is never limited
    assert (await set_email(api, alice, ""))["userErrors"] == []


@MAIL
async def test_bad_addresses_are_refused(api: Api) -> None:
    alice = await api.sign_up("alice")
    for bad in ("alice", "alice@localhost", "a b@example.test", "a@example.test\nBcc: x@y.z"):
        answer = await set_email(api, alice, bad)
        assert answer["userErrors"][0]["code"] == "INVALID_EMAIL", bad


@MAIL
async def test_preferences(api: Api) -> None:
    alice = await api.sign_up("alice")
    done = await api.gql(
        "mutation { setEmailPreferences(input: {reminders: false}) "
        "{ user { emailPreferences { reminders deletions } } userErrors { code } } }",
        token=alice.token,
    )
    assert done["setEmailPreferences"]["user"]["emailPreferences"] == {
        "reminders": False,
        "deletions": True,
    }


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(3, "3 seconds"), (90, "2 minutes"), (5 * 3600 + 7, "5 hours"), (432013, "5 days")],
)
def test_a_private_notice_by_email_says_how_long_is_left_only_roughly(
    seconds: float, said: str
) -> None:
    # a late reminder's time left, to the second, added to the e-mail's Date header,
    # would give the instant its window ends (publishedAt + the public retention)
    assert messages.roughly(seconds) == said
