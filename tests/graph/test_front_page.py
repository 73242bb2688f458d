"""The product's ordinary pages pass the default limits, and a page costs a constant
number of SQL statements whatever its size."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import Api, Person
from tests.test_readme import walk_through

FRONT_PAGE = (
    "{ models(first: 50) { edges { node { id name description owner { id username } "
    "versions { id name status publishedAt trainingDataset { id filename sizeBytes sha256 "
    "visibility status expiresAt } } } } } }"
)
FRONT_PAGE_WITH_FILES = (
    "query($first: Int) { models(first: $first) { edges { node { id name description "
    "owner { id username } versions { id name status publishedAt "
    "files { id filename sizeBytes sha256 } trainingDataset { id filename sizeBytes sha256 "
    "visibility status expiresAt } } } } pageInfo { hasNextPage endCursor } } }"
)
MODEL_PAGE = (
    "query($id: ID!) { model(id: $id) { id name description type tags nsfw downloadCount "
    "owner { id username } versions(first: 50) { id name status publishedAt baseModel "
    "trainedWords downloadCount files { id filename sizeBytes sha256 autoV2 autoV3 primary "
    "headerMetadata { key value } downloadUrl architecture { networkModule networkDim "
    "networkAlpha suggestedBaseModel } } trainingDataset { id filename sizeBytes sha256 "
    "visibility status expiresAt deletedAt deletionReason downloadUrl "
    "events { kind at detail } } } } }"
)


def _readme_query(root: str) -> str:
    """The README walk-through's query on ``root`` (steps 6 and 7), as written; its model
    id placeholder made a variable."""
    for block in walk_through():
        if block.language == "graphql" and block.code.lstrip().startswith(f"query {{ {root}"):
            code = block.code.replace('model(id: "<model id>")', "model(id: $id)")
            return code.replace("query {", "query($id: ID!) {", 1) if "$id" in code else code
    raise AssertionError(f"the README's walk-through has no query on {root}")


README_MODEL = _readme_query("model")
README_VIEWER = _readme_query("viewer")


class Statements(logging.Handler):
    """Counts the SQL statements Tortoise sends (it logs each at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lstrip().upper()
        if message.startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.count += 1


@contextmanager
def counting() -> Iterator[Statements]:
    logger = logging.getLogger("tortoise.db_client")
    handler = Statements()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def published_models(api: Api, owner: Person, count: int) -> list[str]:
    """``count`` published models, each with a weights file; every third also with a
    private dataset, every fifth with a public one."""
    ids = []
    for n in range(count):
        model_id = await api.create_model(owner, f"Model {n}")
        version_id = await api.create_version(owner, model_id)
        if n % 3 == 0:
            await api.upload(owner, version_id, "PRIVATE")
        elif n % 5 == 0:
            await api.upload(owner, version_id, "PUBLIC")
        await api.publish(owner, version_id)
        ids.append(model_id)
    return ids


def refusal(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"].get("code") if errors else None


@pytest.fixture
async def catalogue(api: Api) -> tuple[Person, list[str]]:
    owner = await api.sign_up("alice")
    return owner, await published_models(api, owner, 52)


async def test_the_products_pages_pass_the_default_limits(
    api: Api, catalogue: tuple[Person, list[str]]
) -> None:
    owner, model_ids = catalogue
    # when the front page (with and without files), the model page and the README's
    # walk-through are asked for, anonymously and by the owner
    for token in (None, owner.token):
        front = await api.raw(FRONT_PAGE, token=token)
        with_files = await api.raw(FRONT_PAGE_WITH_FILES, {"first": 50}, token)
        model = await api.raw(MODEL_PAGE, {"id": model_ids[0]}, token)
        readme = await api.raw(README_MODEL, {"id": model_ids[0]}, token)
        # then none is refused by a limit, and each answers in full
        for body in (front, with_files, model, readme):
            assert refusal(body) is None, body.get("errors")
        assert len(front["data"]["models"]["edges"]) == 50
        assert len(with_files["data"]["models"]["edges"]) == 50
        assert model["data"]["model"]["versions"][0]["files"]
    assert refusal(await api.raw(README_VIEWER, token=owner.token)) is None


async def test_a_page_costs_the_same_statements_whatever_its_size(
    api: Api, catalogue: tuple[Person, list[str]]
) -> None:
    owner, _ = catalogue
    for token in (None, owner.token):
        # (one request first takes the process's own reads, such as the public
        # generation after the catalogue was made: they belong to no page)
        await api.raw("{ __typename }", {}, token)
        # when the front page is read with 5 models, then with 50
        with counting() as small:
            five = await api.raw(FRONT_PAGE_WITH_FILES, {"first": 5}, token)
        with counting() as large:
            fifty = await api.raw(FRONT_PAGE_WITH_FILES, {"first": 50}, token)
        assert len(five["data"]["models"]["edges"]) == 5
        assert len(fifty["data"]["models"]["edges"]) == 50
        # then both cost the same, small, number of SQL statements (no N+1)
        assert small.count == large.count, (small.count, large.count)
        assert large.count <= 8, large.count
