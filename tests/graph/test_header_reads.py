"""Reading a weights file's header metadata: read once per request however many fields
and aliases ask for it, counted in the document cost, and bounded per request in bytes
(a document may name many files, each with megabytes of metadata)."""

from __future__ import annotations

from typing import Any

import pytest

from graph.schema.limits import HEADER_READS
from storage.headers import METADATA_BYTES_PER_REQUEST
from tests.conftest import Api, make_safetensors
from tests.graph.test_front_page import counting
from tests.graph.test_header_firewall import (
    LORA,
    PUBLIC_METADATA,
    TRAINING_METADATA,
    version_with_file,
)

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")

READ = (
    "f{n}: node(id: $id) {{ ... on ModelFile {{ headerMetadata {{ key value }} "
    "architecture {{ networkDim suggestedType }} }} }}"
)


def reads(aliases: int) -> str:
    return "query($id: ID!) { " + " ".join(READ.format(n=n) for n in range(aliases)) + " }"


async def statements(api: Api, query: str, variables: dict[str, Any], token: str | None) -> int:
    with counting() as counted:
        body = await api.raw(query, variables, token)
    assert "errors" not in body, body["errors"]
    return counted.count


async def test_a_header_is_read_once_however_many_aliases_ask(api: Api) -> None:
    # given alice's published file, its dataset private: the owner reads every key,
    # anybody else the public ones
    alice = await api.sign_up("alice")
    _, _, file_id = await version_with_file(api, alice, body=LORA)
    for token, keys in (
        (None, PUBLIC_METADATA),
        (alice.token, {**PUBLIC_METADATA, **TRAINING_METADATA}),
    ):
        # when one document reads the header's metadata and architecture once, then
        # thirty times over (after one request that takes the process's own reads, such
        # as the public generation after the scene's changes, which belong to no page)
        await api.raw("{ __typename }", {}, token)
        once = await statements(api, reads(1), {"id": file_id}, token)
        thirty = await statements(api, reads(30), {"id": file_id}, token)
        # then both cost the same statements
        assert thirty == once, (token is not None, once, thirty)
        body = await api.gql(reads(30), {"id": file_id}, token)
        assert all(
            {e["key"] for e in read["headerMetadata"]} == set(keys) for read in body.values()
        )


async def test_a_request_reads_at_most_its_budget_of_metadata(api: Api) -> None:
    # given a published file (no dataset) whose public metadata is 6 MiB
    alice = await api.sign_up("alice")
    big = "x" * (6 * 1024 * 1024)
    body = make_safetensors({"ss_output_name": "zebra", "notes": big})
    _, _, file_id = await version_with_file(api, alice, dataset=None, body=body)
    # when a document reads it twice (12 MiB), then three times (18 MiB)
    two = await api.raw(reads(2), {"id": file_id})
    three = await api.raw(reads(3), {"id": file_id})
    # then the first is answered in full, the second refused as too costly
    assert "errors" not in two and len(two["data"]["f1"]["headerMetadata"]) == 2
    assert 2 * len(big) <= METADATA_BYTES_PER_REQUEST < 3 * len(big)
    codes = {error["extensions"]["code"] for error in three["errors"]}
    assert codes == {"TOO_COSTLY"}, three["errors"]


async def test_header_reads_count_in_the_document_cost(api: Api) -> None:
    # given a document refused for its cost (two listings of files), then the same with
    # a header read per file in one of them
    listing = "models(first: 100) { edges { node { versions { files { %s } } } } }"
    plain = f"a: {listing % 'id'}"
    without = await api.raw(f"{{ {plain} b: {listing % 'id'} }}")
    reading = listing % "id headerMetadata { key } architecture { algo }"
    with_reads = await api.raw(f"{{ {plain} b: {reading} }}")
    # then each read costs its weight
    actual = [body["errors"][0]["extensions"]["actual"] for body in (without, with_reads)]
    files = 100 * 10 * 10  # models, versions each, files each
    assert actual[1] - actual[0] == files * sum(HEADER_READS.values())
