"""Signed-in viewers get the anonymous answer when it is provably theirs too, and never
when it is not: an owner sees their own objects at once, a revoked token gets nothing,
a document that cannot be classified takes the full path, and every field says
whether its answer depends on who asks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema, get_named_type

from graph.http.app import create_app
from graph.schema.build import build_schema
from graph.schema.sharing import FIELDS, Classifier
from storage.config.settings import Settings, load_settings
from storage.runtime import NoScheduler
from tests import processes, timing
from tests.conftest import Api, MutableClock, Person, make_safetensors, set_visibility

# The front page as the web app could ask it, with everything an owner sees more of:
# drafts, NSFW models, private datasets and tombstones, withheld header keys.
PAGE = (
    "query Page { models(first: 20) { edges { node { id name nsfw versions { name status "
    "trainingDataset { id visibility status } files { headerMetadata { key } } } } } } }"
)
KOHYA = {"ss_network_dim": "4", "ss_tag_frequency": json.dumps({"10_cats": {"cat": 3}})}


# The declaration ----------------------------------------------------------------------


def reachable_fields(schema: GraphQLSchema) -> list[str]:
    """Every ``Type.field`` a query can reach (interfaces and their types included)."""
    found: list[str] = []
    seen: set[str] = set()
    assert schema.query_type is not None
    todo: list[GraphQLObjectType | GraphQLInterfaceType] = [schema.query_type]
    while todo:
        gql_type = todo.pop()
        if gql_type.name in seen:
            continue
        seen.add(gql_type.name)
        if isinstance(gql_type, GraphQLInterfaceType):
            todo += schema.get_possible_types(gql_type)
        for name, field in gql_type.fields.items():
            found.append(f"{gql_type.name}.{name}")
            inner = get_named_type(field.type)
            if isinstance(inner, GraphQLObjectType | GraphQLInterfaceType):
                todo.append(inner)
    return found


def test_every_field_a_query_reaches_says_whether_its_answer_depends_on_who_asks() -> None:
    schema = build_schema(load_settings({"LORASHELF_DATA_DIR": "/nonexistent"}))._schema
    reachable = reachable_fields(schema)
    # then each one is declared, in graph/schema/sharing.py
    missing = [name for name in reachable if name not in FIELDS]
    assert not missing, "\n".join(
        f"{name} does not say whether its answer depends on who asks. Add one line to "
        f"FIELDS in graph/schema/sharing.py:\n"
        f'    "{name}": PER_VIEWER,  # if it names the viewer, is for the owner only, '
        "or is a link\n"
        f'or  "{name}": SHARED,  # if every viewer who owns nothing unshared gets the '
        "anonymous answer"
        for name in missing
    )
    # and nothing is declared that no query reaches (a field renamed or removed)
    stale = [name for name in FIELDS if name not in reachable]
    assert not stale, "no query reaches these: remove their lines from FIELDS " + str(stale)


@pytest.mark.parametrize(
    ("document", "shared"),
    [
        (PAGE, True),
        ("{ models { edges { cursor node { __typename id } } pageInfo { endCursor } } }", True),
        ("{ retentionPolicy { notice } __schema { queryType { name } } }", True),
        ("query($id: ID!) { model(id: $id) { owner { models { edges { node { id } } } } } }", True),
        ("{ viewer { username } }", False),
        ("{ models { edges { node { id } } } viewer { id } }", False),
        ("{ models { edges { node { versions { files { downloadUrl } } } } } }", False),
        ("{ models { edges { node { versions { trainingDataset { events { kind } } } } } } }", False),
        ("query($id: ID!) { node(id: $id) { id } }", False),
        # a fragment is read wherever it is spread
        ("{ models { edges { node { ...M } } } } fragment M on Model { owner { ...U } } "
         "fragment U on User { unreadNotificationCount }", False),
        # what cannot be classified is not shared
        ("{ models { edges { node { noSuchField } } } }", False),
        ("{ models { edges { node { id } } ", False),
        ("mutation { logOut { ok } }", False),
        ("query A { models { edges { node { id } } } } query B { viewer { id } }", False),
    ],
)  # fmt: skip
def test_a_document_is_shared_only_when_every_field_it_selects_is(
    document: str, shared: bool
) -> None:
    built = build_schema(load_settings({"LORASHELF_DATA_DIR": "/nonexistent"}))
    classifier = Classifier(built._schema, documents=built.documents)
    assert classifier.shape(document, None).shared is shared
    # (an operation name that names nothing: no single operation to run)
    assert classifier.shape(document, "NoSuchOperation").shared is False


# Through a real server ----------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[processes.Server]:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PUBLIC_CACHE": "60s"}
    metrics_port = processes.free_port()
    with processes.serve(env, cwd=tmp_path, args=["--metrics-port", str(metrics_port)]) as running:
        running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
        yield running


@pytest.fixture
async def remote(server: processes.Server) -> AsyncIterator[Api]:
    """The test factories (tests/conftest.py), over TCP to the real server."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield Api(http)


async def ask(api: Api, token: str | None, query: str = PAGE, **headers: str) -> httpx.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await api.http.post("/graphql", json={"query": query}, headers=headers)


def shared(response: httpx.Response) -> bool:
    """Whether an answer came from the response cache (only cached answers carry an
    ETag), checking it is kept private when it was asked for signed in."""
    return "etag" in response.headers


def names(response: httpx.Response) -> list[str]:
    return [e["node"]["name"] for e in response.json()["data"]["models"]["edges"]]


@dataclass
class Catalogue:
    alice: Person  # owns one published model: a public dataset and a plain weights file
    bob: Person  # owns nothing
    model_id: str
    version_id: str
    dataset_id: str


@pytest.fixture
async def catalogue(remote: Api) -> Catalogue:
    alice, bob = await remote.sign_up("alice"), await remote.sign_up("bob")
    model_id = await remote.create_model(alice, "Cats")
    version_id = await remote.create_version(alice, model_id)
    dataset_id = await remote.upload(alice, version_id, "PUBLIC")
    await remote.publish(alice, version_id)
    return Catalogue(alice, bob, model_id, version_id, dataset_id)


async def test_signed_in_viewers_with_nothing_unshared_get_the_anonymous_answer(
    remote: Api, catalogue: Catalogue
) -> None:
    anonymous = await ask(remote, None)
    assert shared(anonymous) and names(anonymous) == ["Cats"]
    # when Bob (owns nothing) and Alice (owns only public objects) ask the same page
    for person in (catalogue.bob, catalogue.alice):
        answer = await ask(remote, person.token)
        # then they get the stored anonymous answer, with its ETag, kept private
        assert answer.status_code == 200 and answer.content == anonymous.content
        assert answer.headers["etag"] == anonymous.headers["etag"]
        assert answer.headers["cache-control"] == "private, no-store"
        # and a conditional request is answered 304, still private
        again = await ask(remote, person.token, **{"if-none-match": anonymous.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["cache-control"] == "private, no-store"
    # but a document that asks who they are is answered for them alone
    mine = await ask(remote, catalogue.bob.token, "{ viewer { username } }")
    assert mine.json()["data"]["viewer"]["username"] == "bob"
    assert not shared(mine) and mine.headers["cache-control"] == "private, no-store"


async def draft_model(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    await api.create_model(c.alice, "Draft")
    return lambda data: "Draft" in [e["node"]["name"] for e in data["models"]["edges"]]


async def draft_version(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    await api.create_version(c.alice, c.model_id, name="v2")
    return lambda data: {"name": "v2", "status": "DRAFT"}.items() <= versions(data)[0].items()


async def private_dataset(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    model_id = await api.create_model(c.alice, "Secret")
    version_id = await api.create_version(c.alice, model_id)
    dataset_id = await api.upload(c.alice, version_id, "PRIVATE")
    await api.publish(c.alice, version_id)
    return lambda data: dataset_id in json.dumps(data)


async def made_private(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    await set_visibility(api, c.alice, c.dataset_id, "PRIVATE")
    return lambda data: (versions(data)[-1]["trainingDataset"] or {}).get("visibility") == "PRIVATE"


async def keys_withheld(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    model_id = await api.create_model(c.alice, "Kohya")
    version_id = await api.create_version(c.alice, model_id)
    await api.upload_file(c.alice, version_id, make_safetensors(metadata=KOHYA))
    await api.publish(c.alice, version_id)  # no dataset: the keys are withheld
    return lambda data: "ss_tag_frequency" in json.dumps(data)


async def tombstone(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    await api.mutate(
        "deleteDataset",
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) { userErrors { code } } }",
        {"i": {"datasetId": c.dataset_id}},
        c.alice.token,
    )
    return lambda data: (
        versions(data)[-1]["trainingDataset"]
        == {
            "id": c.dataset_id,
            "visibility": "PUBLIC",
            "status": "DELETED",
        }
    )


async def nsfw_model(api: Api, c: Catalogue) -> Callable[[dict[str, Any]], bool]:
    await api.mutate(
        "updateModel",
        "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { code } } }",
        {"i": {"modelId": c.model_id, "nsfw": True}},
        c.alice.token,
    )
    return lambda data: [e["node"]["nsfw"] for e in data["models"]["edges"]] == [True]


def versions(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The versions of the models on the page, model by model."""
    found: list[dict[str, Any]] = []
    for edge in data["models"]["edges"]:
        found += edge["node"]["versions"]
    return found


Change = Callable[[Api, Catalogue], Awaitable[Callable[[dict[str, Any]], bool]]]
CHANGES: dict[str, Change] = {
    "a fresh draft model": draft_model,
    "a fresh draft version": draft_version,
    "a private dataset": private_dataset,
    "a dataset made private": made_private,
    "withheld header keys": keys_withheld,
    "a tombstone": tombstone,
    "an NSFW model": nsfw_model,
}


@pytest.mark.parametrize("case", list(CHANGES))
async def test_an_owner_sees_their_own_objects_at_once(
    remote: Api, catalogue: Catalogue, case: str
) -> None:
    alice = catalogue.alice
    # given the page stored for everybody, and served to Alice from the store
    assert shared(await ask(remote, None))
    assert shared(await ask(remote, alice.token))
    # when she makes something only she sees
    sees = await CHANGES[case](remote, catalogue)
    # then her very next answer shows it: the full path, not the anonymous answer
    mine = await ask(remote, alice.token)
    assert mine.status_code == 200 and "errors" not in mine.json(), mine.text
    assert sees(mine.json()["data"]), (case, mine.json())
    assert not shared(mine) and mine.headers["cache-control"] == "private, no-store"
    # and nobody else sees it, signed in or not
    for token in (None, catalogue.bob.token):
        theirs = await ask(remote, token)
        assert not sees(theirs.json()["data"]), (case, theirs.json())
        assert shared(theirs)


async def test_an_owner_shares_again_once_nothing_of_theirs_is_unshared(
    remote: Api, catalogue: Catalogue
) -> None:
    alice = catalogue.alice
    version_id = await remote.create_version(alice, catalogue.model_id, name="v2")
    assert not shared(await ask(remote, alice.token))
    # when she publishes her draft (a public change)
    await remote.publish(alice, version_id)
    # then she gets the anonymous answer again, which shows it
    answer = await ask(remote, alice.token)
    assert shared(answer)
    assert [v["name"] for v in versions(answer.json()["data"])] == ["v2", "v1"]


async def test_a_revoked_token_never_gets_a_shared_answer_after_the_revocation(
    remote: Api, catalogue: Catalogue
) -> None:
    token = catalogue.bob.token
    assert shared(await ask(remote, token))
    seen: list[tuple[float, int, bool]] = []  # (sent at, status, shared)
    revoked_at: float | None = None
    stop = asyncio.Event()

    async def burst() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            answer = await ask(remote, token)
            seen.append((sent, answer.status_code, shared(answer)))

    # when Bob's token is revoked while 16 connections ask the page with it
    tasks = [asyncio.create_task(burst()) for _ in range(16)]
    await asyncio.sleep(0.5)
    logged_out = await remote.gql("mutation { logOut { ok } }", token=token)
    revoked_at = time.monotonic()
    assert logged_out["logOut"]["ok"] is True
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    # then before it the answers were shared, and every request sent after it is 401
    before = [s for s in seen if s[0] < revoked_at]
    after = [s for s in seen if s[0] > revoked_at]
    assert before and after, (len(before), len(after))
    assert all(status == 200 and was_shared for _, status, was_shared in before[:5])
    assert {status for _, status, _ in after} == {401}, after


async def test_a_document_that_cannot_be_classified_takes_the_full_path(
    remote: Api, catalogue: Catalogue
) -> None:
    bob = catalogue.bob.token
    # a document the schema does not know, and one whose operation name names nothing
    unknown = "{ models { edges { node { noSuchField } } } }"
    for document, operation in ((unknown, None), (PAGE, "Nothing")):
        body = {"query": document, "operationName": operation}
        answer = await remote.http.post(
            "/graphql", json=body, headers={"authorization": f"Bearer {bob}"}
        )
        # then it is answered as for Bob himself, never from the store
        assert not shared(answer), document[:40]
        assert answer.headers["cache-control"] == "private, no-store"
    answer = await remote.http.post(
        "/graphql", json={"query": PAGE}, headers={"authorization": f"Bearer {bob}"}
    )
    assert names(answer) == ["Cats"]


def metric(server: processes.Server, name: str, **labels: str) -> float:
    text = httpx.get(server.metrics_url, timeout=10).text  # type: ignore[attr-defined]
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{wanted}}} (\S+)$", text, re.M)
    assert match, f"{name}{{{wanted}}} not in /metrics"
    return float(match.group(1))


async def test_32_concurrent_misses_cost_one_computation(
    server: processes.Server, remote: Api, catalogue: Catalogue
) -> None:
    document = "query Burst { models(first: 20) { edges { node { id name owner { username } } } } }"

    def computed() -> float:
        return metric(server, "lorashelf_response_cache_answers_total", outcome="computed")

    before = computed()
    # when 32 requests (anonymous and signed in) miss the same answer at the same moment
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
        tokens = [None, catalogue.bob.token] * 16
        answers = await asyncio.gather(
            *(
                http.post(
                    "/graphql",
                    json={"query": document},
                    headers={"authorization": f"Bearer {t}"} if t else {},
                )
                for t in tokens
            )
        )
    # then all get the same answer, and it was computed once
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert computed() - before == 1
    waited = metric(server, "lorashelf_response_cache_answers_total", outcome="coalesced")
    hits = metric(server, "lorashelf_response_cache_answers_total", outcome="hit")
    assert waited >= 1 and waited + hits >= 31


# In process: the shared answer is the full path's -------------------------------------


@pytest.fixture
async def uncached(
    settings: Settings, clock: MutableClock, client: httpx.AsyncClient
) -> AsyncIterator[Api]:
    """A second app over the same database with the response cache off: every answer
    is the full path's."""
    off = dataclasses.replace(settings, public_cache=0)
    app = create_app(off, clock=clock, scheduler=NoScheduler(), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Api(http)


SHARED_DOCUMENTS = [
    PAGE,
    "query($id: ID!) { model(id: $id) { name tags owner { username models { edges { node "
    "{ name } } } trainingDatasets { edges { node { filename status } } } } versions { "
    "baseModel trainedWords files { filename sizeBytes sha256 autoV2 autoV3 headerMetadata "
    "{ key value } architecture { networkDim } } trainingDataset { filename sha256 "
    "expiresAt } } } }",
    "{ models(first: 5, includeNsfw: true) { edges { cursor node { name nsfw } } "
    "pageInfo { hasNextPage } } retentionPolicy { notice withheldHeaderKeys } }",
]


async def test_the_shared_answer_is_the_one_the_full_path_gives(api: Api, uncached: Api) -> None:
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    model_id = await api.create_model(alice, "Cats")
    version_id = await api.create_version(alice, model_id)
    await api.upload_file(alice, version_id, make_safetensors(metadata=KOHYA))
    await api.upload(alice, version_id, "PUBLIC")  # public dataset: the keys are public
    await api.publish(alice, version_id)
    for person in (alice, bob):
        for document in SHARED_DOCUMENTS:
            variables = {"id": model_id}
            cached = await api.raw(document, variables, person.token)
            full = await uncached.raw(document, variables, person.token)
            # (cursors are sealed anew each time: compared by what they open to)
            assert strip_cursors(cached) == strip_cursors(full), document
            assert "errors" not in cached, cached


def strip_cursors(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_cursors(v) for k, v in value.items() if k not in ("cursor",)}
    if isinstance(value, list):
        return [strip_cursors(v) for v in value]
    return value


# Timing: a shared answer is no signal of anybody's private work -----------------------


async def test_shared_answers_take_the_same_time_over_hidden_work_and_none(api: Api) -> None:
    # given Alice's published models, each with a private dataset (hidden from others),
    # and Bob's, the same but with no dataset at all: the same answer for anybody else
    mallory, alice, bob = [await api.sign_up(n) for n in ("mallory", "alice", "bob")]
    for owner, private in ((alice, True), (bob, False)):
        for n in range(5):
            model_id = await api.create_model(owner, f"Model {n}")
            version_id = await api.create_version(owner, model_id)
            if private:
                await api.upload(owner, version_id, "PRIVATE")
            await api.publish(owner, version_id)
    page = (
        "query($owner: ID!) { models(ownerId: $owner, first: 10) { edges { node "
        "{ name versions { name trainingDataset { id } } } } } }"
    )

    async def timed(owner: Person, n: int) -> float:
        started = time.perf_counter()
        answer = await api.http.post(
            "/graphql",
            json={"query": page, "variables": {"owner": owner.id, "nonce": n}},
            headers={"authorization": f"Bearer {mallory.token}"},
        )
        elapsed = time.perf_counter() - started
        assert shared(answer), answer.headers  # Mallory owns nothing: always shared
        return elapsed

    for cached in (False, True):
        # when Mallory times the two pages, interleaved, each computed anew (a variable
        # the document ignores makes each request a miss) or served from the store
        def page_of(owner: Person) -> Callable[[int], Awaitable[float]]:
            return lambda n: timed(owner, 0 if cached else n)  # noqa: B023 - used at once

        ratio, medians = await timing.same_time(page_of(alice), page_of(bob))
        # then the medians are within noise of each other
        assert ratio < timing.TOLERANCE, (cached, medians)
