"""Per-user quotas: how many datasets an account keeps and how many bytes they take.

Every dataset that is not DELETED counts (pending, uploading, available, being
deleted) with its declared size; a refusal is a userError stating the limit and the
current usage, and records nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, Person, make_zip
from tests.graph.test_uploads import DELETE_DATASET, MY_DATASETS, draft_version

MY_USAGE = "{ viewer { trainingDatasets { edges { node { id status sizeBytes } } } } }"


def errors(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def live_datasets(api: Api, owner: Person) -> list[dict[str, Any]]:
    edges = (await api.gql(MY_USAGE, token=owner.token))["viewer"]["trainingDatasets"]["edges"]
    return [e["node"] for e in edges if e["node"]["status"] != "DELETED"]


async def start(api: Api, owner: Person, size: int, version_id: str | None = None) -> Any:
    """startDatasetUpload for ``version_id`` (a new draft version when omitted)."""
    return await api.start_upload(owner, version_id or await draft_version(api, owner), size)


# Number of datasets ---------------------------------------------------------------


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="2")
async def test_dataset_count_quota(api: Api) -> None:
    # given alice at the limit of 2: one dataset uploaded, one still pending
    alice = await api.sign_up("alice")
    await api.upload(alice, await draft_version(api, alice))
    assert (await start(api, alice, 100))["userErrors"] == []
    # when she starts a third
    payload = await start(api, alice, 100)
    # then it is refused for the whole input, saying the limit and her usage
    assert payload["dataset"] is None
    assert payload["uploadUrl"] is None
    assert errors(payload) == [(None, "QUOTA_DATASETS")]
    message = payload["userErrors"][0]["message"]
    assert message == "You have 2 datasets; an account may keep at most 2. Delete one to make room."
    # and nothing new is recorded
    assert len(await live_datasets(api, alice)) == 2


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="2")
async def test_published_and_public_datasets_count_too(api: Api) -> None:
    # given alice's two published datasets, one public and one private
    alice = await api.sign_up("alice")
    await api.model_with_dataset(alice, visibility="PUBLIC")
    await api.model_with_dataset(alice, visibility="PRIVATE")
    # when she starts a third
    payload = await start(api, alice, 100)
    # then
    assert errors(payload) == [(None, "QUOTA_DATASETS")]


# Bytes --------------------------------------------------------------------------------


@pytest.mark.env(LORASHELF_MAX_BYTES_PER_USER="1000")
async def test_byte_quota(api: Api) -> None:
    # given alice storing 600 of her 1000 bytes
    alice = await api.sign_up("alice")
    assert (await start(api, alice, 600))["userErrors"] == []
    # when she declares 401 more
    payload = await start(api, alice, 401)
    # then it is refused on sizeBytes, saying the limit and her usage
    assert payload["dataset"] is None
    assert errors(payload) == [("sizeBytes", "QUOTA_BYTES")]
    message = payload["userErrors"][0]["message"]
    assert message == (
        "Your datasets and files use 600 bytes of your 1,000 bytes; 401 bytes more would not fit "
        "(400 bytes left)."
    )
    assert [d["sizeBytes"] for d in await live_datasets(api, alice)] == [600]


@pytest.mark.env(LORASHELF_MAX_BYTES_PER_USER="1000")
async def test_byte_quota_exactly_reached_is_accepted_and_then_full(api: Api) -> None:
    # given alice storing 600 of her 1000 bytes
    alice = await api.sign_up("alice")
    assert (await start(api, alice, 600))["userErrors"] == []
    # when she declares exactly the 400 left
    payload = await start(api, alice, 400)
    # then it is accepted
    assert payload["userErrors"] == []
    # and after that not a single byte more fits
    full = await start(api, alice, 1)
    assert errors(full) == [("sizeBytes", "QUOTA_BYTES")]
    assert "0 bytes left" in full["userErrors"][0]["message"]


@pytest.mark.env(LORASHELF_MAX_BYTES_PER_USER="1000", LORASHELF_MAX_DATASET_BYTES="5000")
async def test_one_dataset_larger_than_the_byte_quota_is_refused(api: Api) -> None:
    # given a server allowing 5000-byte datasets but 1000 bytes per user
    alice = await api.sign_up("alice")
    # when alice declares 1001 bytes on an empty account
    payload = await start(api, alice, 1001)
    # then the quota refuses it
    assert errors(payload) == [("sizeBytes", "QUOTA_BYTES")]
    assert await live_datasets(api, alice) == []


# What frees quota, what does not count twice --------------------------------------------


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="1", LORASHELF_MAX_BYTES_PER_USER="1000")
async def test_deleted_dataset_frees_quota(api: Api) -> None:
    # given alice's only allowed dataset, uploaded and then deleted (a tombstone remains)
    alice = await api.sign_up("alice")
    body = make_zip()
    old = await api.upload(alice, await draft_version(api, alice), body=body)
    deleted = await api.mutate(
        "deleteDataset", DELETE_DATASET, {"i": {"datasetId": old}}, alice.token
    )
    assert deleted["dataset"]["status"] == "DELETED"
    # when she starts a new one that takes the whole byte quota
    payload = await start(api, alice, 1000)
    # then the tombstone counts for nothing
    assert payload["userErrors"] == []
    statuses = {
        e["node"]["id"]: e["node"]["status"]
        for e in (await api.gql(MY_DATASETS, token=alice.token))["viewer"]["trainingDatasets"][
            "edges"
        ]
    }
    assert statuses == {old: "DELETED", payload["dataset"]["id"]: "PENDING_UPLOAD"}


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="1", LORASHELF_MAX_BYTES_PER_USER="1000")
async def test_restarting_a_pending_upload_does_not_count_twice(api: Api) -> None:
    # given alice's only allowed dataset, pending with 800 bytes declared
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    first = await start(api, alice, 800, version_id)
    assert first["userErrors"] == []
    # when she restarts the same version's upload with 1000 bytes
    again = await start(api, alice, 1000, version_id)
    # then it replaces the pending one: one dataset, 1000 bytes
    assert again["userErrors"] == []
    assert again["dataset"]["id"] == first["dataset"]["id"]
    assert [d["sizeBytes"] for d in await live_datasets(api, alice)] == [1000]
    # and the quota now sees exactly that one
    other = await start(api, alice, 1)
    assert errors(other) == [(None, "QUOTA_DATASETS")]
    assert "You have 1 dataset;" in other["userErrors"][0]["message"]


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="1")
async def test_version_with_a_dataset_answers_dataset_exists_not_quota(api: Api) -> None:
    # given alice's only allowed dataset, uploaded
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    await api.upload(alice, version_id)
    # when she starts another upload on the same version
    payload = await start(api, alice, 100, version_id)
    # then the real obstacle is named
    assert errors(payload) == [("versionId", "DATASET_EXISTS")]


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="1", LORASHELF_MAX_BYTES_PER_USER="1000")
async def test_another_user_is_unaffected(api: Api) -> None:
    # given alice at both limits
    alice = await api.sign_up("alice")
    assert (await start(api, alice, 1000))["userErrors"] == []
    assert errors(await start(api, alice, 1)) == [(None, "QUOTA_DATASETS")]
    # when bob starts his first upload, as large as allowed
    bob = await api.sign_up("bob")
    body = make_zip()
    payload = await start(api, bob, len(body))
    # then he gets his URL and it takes the bytes
    assert payload["userErrors"] == []
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200


@pytest.mark.env(LORASHELF_MAX_DATASETS_PER_USER="1")
async def test_refused_bytes_give_the_quota_back(api: Api) -> None:
    # given alice's only allowed dataset, whose PUT was refused (not a zip)
    alice = await api.sign_up("alice")
    payload = await start(api, alice, 10)
    assert (await api.put(payload["uploadUrl"], b"not a zip!")).status_code == 415
    # when she starts an upload for another version
    other = await start(api, alice, 10)
    # then the refused one counts no more (it was not kept)
    assert errors(other) == []
    # while a dataset still waiting for its bytes does count
    assert errors(await start(api, alice, 10)) == [(None, "QUOTA_DATASETS")]


@pytest.mark.env(LORASHELF_MAX_BYTES_PER_USER="3GiB")
async def test_byte_quota_beyond_32_bits_reads_in_binary_units(api: Api) -> None:
    # given alice storing 2 GiB of her 3 GiB (sizes past the 32-bit range)
    alice = await api.sign_up("alice")
    assert (await start(api, alice, 2 * 2**30))["userErrors"] == []
    # when she declares another 2 GiB
    payload = await start(api, alice, 2 * 2**30)
    # then the refusal counts exactly and reads in GiB
    assert errors(payload) == [("sizeBytes", "QUOTA_BYTES")]
    assert payload["userErrors"][0]["message"] == (
        "Your datasets and files use 2,147,483,648 bytes (2 GiB) of your 3,221,225,472 bytes (3 GiB); "
        "2,147,483,648 bytes (2 GiB) more would not fit (1,073,741,824 bytes (1 GiB) left)."
    )
