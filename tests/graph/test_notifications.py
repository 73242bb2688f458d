"""In-app notifications through GraphQL: listing, paging, unread count, marking
read, and that nobody but the recipient ever sees them."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.tasks import expire_dataset
from tests.conftest import Api, MutableClock, Person, at, missing_id, raw_id

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="")

Ctx = dict[str, Any]

NOTIFICATIONS = (
    "query($first: Int, $after: String, $unreadOnly: Boolean! = false) { viewer { "
    "unreadNotificationCount notifications(first: $first, after: $after, unreadOnly: $unreadOnly) "
    "{ edges { node { id kind message createdAt readAt dataset { id status deletionReason } } } "
    "pageInfo { hasNextPage endCursor } } } }"
)
MARK_READ = (
    "mutation($i: MarkNotificationsReadInput!) { markNotificationsRead(input: $i) "
    "{ notifications { id readAt } userErrors { field code message } } }"
)


async def notifications(
    api: Api,
    who: Person,
    *,
    first: int | None = None,
    after: str | None = None,
    unread_only: bool = False,
) -> dict[str, Any]:
    variables = {"first": first, "after": after, "unreadOnly": unread_only}
    viewer: dict[str, Any] = (await api.gql(NOTIFICATIONS, variables, who.token))["viewer"]
    return viewer


def nodes(viewer: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in viewer["notifications"]["edges"]]


async def given_expired(
    api: Api, clock: MutableClock, ctx: Ctx, owner: Person, names: list[str]
) -> list[str]:
    """One private dataset per model name, published a second apart, each deleted by
    its expiry job at its own expiry; returns the dataset IDs in that order."""
    dataset_ids = []
    for name in names:
        model_id = await api.create_model(owner, name)
        version_id = await api.create_version(owner, model_id)
        dataset_ids.append(await api.upload(owner, version_id, "PRIVATE"))
        await api.publish(owner, version_id)
        clock.advance(1)
    clock.advance(60 - len(names))  # the first window ends now
    for dataset_id in dataset_ids:
        assert await expire_dataset(ctx, await raw_id(dataset_id)) is True
        clock.advance(1)
    return dataset_ids


async def test_deletion_notices_are_listed_newest_first(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given three private datasets expired one after the other at 12:01:00, :01, :02
    alice = await api.sign_up("alice")
    first, second, third = await given_expired(api, clock, ctx, alice, ["Ant", "Bee", "Cat"])
    # when alice reads her notifications
    viewer = await notifications(api, alice)
    # then the newest comes first, each naming model, version, file and date
    assert viewer["unreadNotificationCount"] == 3
    listed = nodes(viewer)
    assert [n["message"] for n in listed] == [
        f'Your private training dataset "data.zip" for {model} v1 was deleted on '
        f"2026-03-01 12:01:0{second_}" + " UTC: its retention window ended."
        for model, second_ in (("Cat", 2), ("Bee", 1), ("Ant", 0))
    ]
    assert [n["kind"] for n in listed] == ["DATASET_DELETED"] * 3
    assert [n["readAt"] for n in listed] == [None] * 3
    assert [at(n["createdAt"]).second for n in listed] == [2, 1, 0]
    # and each shows its dataset's tombstone to her
    assert [n["dataset"] for n in listed] == [
        {"id": dataset_id, "status": "DELETED", "deletionReason": "EXPIRED"}
        for dataset_id in (third, second, first)
    ]
    assert viewer["notifications"]["pageInfo"]["hasNextPage"] is False


async def test_notifications_page_through_once_each(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given three notifications
    alice = await api.sign_up("alice")
    await given_expired(api, clock, ctx, alice, ["Ant", "Bee", "Cat"])
    everything = [n["id"] for n in nodes(await notifications(api, alice))]
    # when she pages two at a time
    page1 = (await notifications(api, alice, first=2))["notifications"]
    page2 = (await notifications(api, alice, first=2, after=page1["pageInfo"]["endCursor"]))[
        "notifications"
    ]
    # then she sees each once, in order
    assert page1["pageInfo"]["hasNextPage"] is True
    assert page2["pageInfo"]["hasNextPage"] is False
    paged = [e["node"]["id"] for e in page1["edges"] + page2["edges"]]
    assert paged == everything
    assert len(set(paged)) == 3


async def test_marking_read_sets_read_at_and_lowers_the_count(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given alice's three notifications and one of bob's
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    await given_expired(api, clock, ctx, alice, ["Ant", "Bee", "Cat"])
    await given_expired(api, clock, ctx, bob, ["Dog"])
    newest, middle, oldest = [n["id"] for n in nodes(await notifications(api, alice))]
    (bobs,) = [n["id"] for n in nodes(await notifications(api, bob))]
    clock.advance(3600)
    # when alice marks the middle one read, with bob's id, garbage and a wrong-type id
    payload = await api.mutate(
        "markNotificationsRead",
        MARK_READ,
        {"i": {"ids": [middle, bobs, "not-an-id", missing_id("User")]}},
        alice.token,
    )
    # then only hers is marked, at the current time
    assert payload["notifications"] == [{"id": middle, "readAt": clock.now().isoformat()}]
    viewer = await notifications(api, alice)
    assert viewer["unreadNotificationCount"] == 2
    assert [(n["id"], n["readAt"]) for n in nodes(viewer)] == [
        (newest, None),
        (middle, clock.now().isoformat()),
        (oldest, None),
    ]
    # and bob's is untouched
    bob_view = await notifications(api, bob)
    assert bob_view["unreadNotificationCount"] == 1
    assert nodes(bob_view)[0]["readAt"] is None
    # and the unread filter leaves the read one out
    unread = await notifications(api, alice, unread_only=True)
    assert [n["id"] for n in nodes(unread)] == [newest, oldest]
    # when she marks it read again later
    read_at = clock.now()
    clock.advance(60)
    again = await api.mutate(
        "markNotificationsRead", MARK_READ, {"i": {"ids": [middle]}}, alice.token
    )
    # then the first read time stays
    assert again["notifications"] == [{"id": middle, "readAt": read_at.isoformat()}]
    assert (await notifications(api, alice))["unreadNotificationCount"] == 2


async def test_unread_only_pages_too(api: Api, clock: MutableClock, ctx: Ctx) -> None:
    # given three notifications, the newest read
    alice = await api.sign_up("alice")
    await given_expired(api, clock, ctx, alice, ["Ant", "Bee", "Cat"])
    newest, middle, oldest = [n["id"] for n in nodes(await notifications(api, alice))]
    await api.mutate("markNotificationsRead", MARK_READ, {"i": {"ids": [newest]}}, alice.token)
    # when she pages through the unread ones one at a time
    page1 = (await notifications(api, alice, first=1, unread_only=True))["notifications"]
    page2 = (
        await notifications(
            api, alice, first=1, after=page1["pageInfo"]["endCursor"], unread_only=True
        )
    )["notifications"]
    # then
    assert [e["node"]["id"] for e in page1["edges"]] == [middle]
    assert page1["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["id"] for e in page2["edges"]] == [oldest]
    assert page2["pageInfo"]["hasNextPage"] is False


async def test_marking_read_needs_a_signed_in_user(api: Api, clock: MutableClock, ctx: Ctx) -> None:
    # given a notification
    alice = await api.sign_up("alice")
    await given_expired(api, clock, ctx, alice, ["Ant"])
    (notification,) = [n["id"] for n in nodes(await notifications(api, alice))]
    # when an anonymous client marks it read
    payload = (await api.gql(MARK_READ, {"i": {"ids": [notification]}}))["markNotificationsRead"]
    # then it is refused, and nothing changes
    assert payload["notifications"] == []
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(None, "UNAUTHENTICATED")]
    assert (await notifications(api, alice))["unreadNotificationCount"] == 1


@pytest.mark.parametrize("viewer", ["other", "anonymous"])
async def test_nobody_else_sees_a_notification(
    api: Api, clock: MutableClock, ctx: Ctx, viewer: str
) -> None:
    # given alice's notification about her private dataset
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    await given_expired(api, clock, ctx, alice, ["Ant"])
    (notification,) = [n["id"] for n in nodes(await notifications(api, alice))]
    token = bob.token if viewer == "other" else None
    # when somebody else looks it up, or looks at alice's notifications
    data = await api.gql(
        "query($n: ID!, $u: ID!) { node(id: $n) { id } user: node(id: $u) { ... on User { "
        "username notifications { edges { node { id } } } unreadNotificationCount } } }",
        {"n": notification, "u": alice.id},
        token,
    )
    # then it does not exist for them
    assert data == {
        "node": None,
        "user": {"username": "alice", "notifications": None, "unreadNotificationCount": None},
    }
    # while alice finds it by its id
    own = await api.gql(
        "query($n: ID!) { node(id: $n) { id ... on Notification { kind } } }",
        {"n": notification},
        alice.token,
    )
    assert own == {"node": {"id": notification, "kind": "DATASET_DELETED"}}


async def test_another_users_own_notifications_are_separate(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given notifications for alice and for bob
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    await given_expired(api, clock, ctx, alice, ["Ant", "Bee"])
    await given_expired(api, clock, ctx, bob, ["Dog"])
    # when each reads their own
    mine = await notifications(api, alice)
    theirs = await notifications(api, bob)
    # then each sees only their own
    assert mine["unreadNotificationCount"] == 2
    assert ["Bee" in n["message"] for n in nodes(mine)] == [True, False]
    assert theirs["unreadNotificationCount"] == 1
    assert ["Dog" in n["message"] for n in nodes(theirs)] == [True]
