"""The executor that takes common fields straight (graph/schema/execution.py) answers
every query exactly as graphql-core's own does: the same data and the same errors,
with the same messages, paths and locations, anonymously and signed in, for the
product's pages, for errors raised at every depth, and for generated documents."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis_graphql import queries
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.http.app import create_app
from graph.schema.build import export_sdl
from graph.schema.execution import Executor
from storage.config.settings import Settings
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock, Person, make_safetensors, set_visibility
from tests.graph.test_front_page import (
    FRONT_PAGE_WITH_FILES,
    MODEL_PAGE,
    README_MODEL,
    README_VIEWER,
)

KOHYA = {"ss_network_dim": "4", "ss_tag_frequency": json.dumps({"10_cats": {"cat": 3}})}
SEALED = re.compile(r'"(cursor|endCursor|downloadUrl|uploadUrl)":"[^"]*"')


@pytest.fixture
async def plain(
    settings: Settings, clock: MutableClock, client: httpx.AsyncClient
) -> AsyncIterator[Api]:
    """The same app over the same database, run by graphql-core's own executor."""
    app = create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
    graphql_app = next(r for r in app.routes if getattr(r, "path", "") == "/graphql").app  # type: ignore[attr-defined]
    assert graphql_app.schema.execution_context_class is Executor
    graphql_app.schema.execution_context_class = StrawberryGraphQLCoreExecutionContext
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Api(http)


def comparable(response: httpx.Response) -> str:
    """The answer with sealed values (random each time) reduced to whether they are set."""
    assert response.status_code == 200, response.text
    return SEALED.sub(r'"\1":"<sealed>"', response.text)


async def both(
    api: Api, plain: Api, query: str, variables: dict[str, Any], token: str | None
) -> str:
    headers = {"authorization": f"Bearer {token}", "cache-control": "no-cache"} if token else {}
    body = {"query": query, "variables": variables}
    ours = comparable(await api.http.post("/graphql", json=body, headers=headers))
    theirs = comparable(await plain.http.post("/graphql", json=body, headers=headers))
    assert ours == theirs, query
    return ours


async def catalogue(api: Api) -> tuple[Person, Person, dict[str, str]]:
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    ids: dict[str, str] = {}
    model = ids["model"] = await api.create_model(alice, "Cats")
    version = ids["version"] = await api.create_version(alice, model)
    ids["file"] = await api.upload_file(alice, version, make_safetensors(metadata=KOHYA))
    ids["dataset"] = await api.upload(alice, version, "PRIVATE")
    await api.publish(alice, version)
    ids["draft"] = await api.create_version(alice, model, name="v2")
    other = await api.create_model(bob, "Dogs")
    public = await api.create_version(bob, other)
    shared = await api.upload(bob, public, "PUBLIC")
    await api.publish(bob, public)
    await set_visibility(api, bob, shared, "PUBLIC")
    ids["user"] = alice.id
    return alice, bob, ids


DOCUMENTS: list[tuple[str, dict[str, Any]]] = [
    (FRONT_PAGE_WITH_FILES, {"first": 50}),
    (MODEL_PAGE, {}),
    (README_MODEL, {}),
    (README_VIEWER, {}),
    ("{ models { edges { cursor node { __typename id tags owner { __typename username } } } "
     "pageInfo { hasNextPage endCursor } } }", {}),
    # errors raised at every depth, in nullable and non-null positions
    ("{ models { edges { node { name versions(first: 999) { id } } } } }", {}),
    ("query($id: ID!) { model(id: $id) { versions { files(first: -1) { id } } } }", {}),
    ("{ models(first: 1000) { edges { node { id } } } }", {}),
    ("{ models(after: \"forged\") { edges { node { id } } } }", {}),
    ("{ viewer { trainingDatasets(after: \"forged\") { edges { node { id } } } } }", {}),
    ("{ viewer { models(first: 2) { edges { node { owner { models { edges { node { "
     "versions { model { owner { username } } } } } } } } } } } }", {}),
    ("query($id: ID!) { node(id: $id) { __typename id ... on Model { name } "
     "... on User { username unreadNotificationCount } } }", {}),
    ("query($v: ID!) { node(id: $v) { ... on ModelVersion { trainingDataset { id status "
     "events { kind } version { files { headerMetadata { key } withheldKeys } } } } } }", {}),
    ("{ a: models(first: 1) { edges { node { name } } } b: models(first: 2) { edges { node "
     "{ name n: name } } } }", {}),
    ("{ models { edges { node { name @skip(if: true) versions @include(if: false) { id } } } } }", {}),
]  # fmt: skip


async def test_the_pages_and_their_errors_are_answered_as_graphql_core_answers_them(
    api: Api, plain: Api
) -> None:
    alice, bob, ids = await catalogue(api)
    for token in (None, alice.token, bob.token):
        for query, variables in DOCUMENTS:
            values = {**variables}
            if "$id" in query:
                values["id"] = ids["model"] if "model(" in query else ids["user"]
            if "$v" in query:
                values["v"] = ids["version"]
            answer = await both(api, plain, query, values, token)
            assert '"data"' in answer


@pytest.mark.parametrize("signed_in", [False, True])
async def test_generated_queries_are_answered_as_graphql_core_answers_them(
    api: Api, plain: Api, settings: Settings, signed_in: bool
) -> None:
    alice, _, ids = await catalogue(api)
    token = alice.token if signed_in else None
    strategy = queries(export_sdl(settings))
    documents: list[str] = []

    @settings_for_collection
    @given(strategy)
    def collect(document: str) -> None:
        documents.append(document)

    collect()
    assert len(documents) >= 50
    for document in documents:
        await both(api, plain, document, {}, token)


settings_for_collection = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
