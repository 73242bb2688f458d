"""The per-user fact the shared answers rest on: whether an account owns anything only
it sees, read with its token in one statement, is exactly what the privacy rule says
its owner sees more of, at every step of a creator's work."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from storage import accounts
from storage.db.models import LoraModel, ModelFile, ModelVersion, TrainingDataset
from storage.privacy import access
from tests.conftest import Api, MutableClock, Person, make_safetensors, set_visibility

KOHYA = {"ss_network_dim": "4", "ss_tag_frequency": json.dumps({"10_cats": {"cat": 3}})}


async def fact(person: Person, now: datetime) -> bool:
    found = await accounts.authenticate(person.token, now=now)
    assert found is not None
    return found[1].owns_unshared


async def sees_more(person: Person, now: datetime) -> bool:
    """The privacy rule's own answer: does the owner see a row nobody else does (or a
    model anonymous listings leave out, or withheld header keys)?"""
    user, _ = await accounts.authenticate(person.token, now=now) or (None, None)
    assert user is not None
    kinds: tuple[tuple[Any, Any], ...] = (
        (LoraModel, access.visible_models_q),
        (ModelVersion, access.visible_versions_q),
        (TrainingDataset, access.visible_datasets_q),
        (ModelFile, access.visible_files_q),
    )
    for model, visible in kinds:
        mine = set(await model.filter(visible(user.id)).values_list("id", flat=True))
        public = set(await model.filter(visible(None)).values_list("id", flat=True))
        if mine - public:
            return True
    if await LoraModel.filter(access.visible_models_q(None), owner_id=user.id, nsfw=True).exists():
        return True
    for file in await ModelFile.filter(owner_id=user.id):
        dataset = await TrainingDataset.get_or_none(version_id=file.version_id)
        public_dataset = dataset if access.dataset_is_public(dataset) else None
        owner = access.sees_withheld_keys(user.id, file, dataset, now)
        if owner and not access.sees_withheld_keys(None, file, public_dataset, now):
            return True
    return False


async def test_the_fact_is_what_the_rule_says_the_owner_sees_more_of(
    api: Api, clock: MutableClock
) -> None:
    alice, bystander = await api.sign_up("alice"), await api.sign_up("bob")
    steps: list[tuple[str, bool]] = []

    async def check(step: str, expected: bool) -> None:
        now = clock.now()
        assert await sees_more(alice, now) is expected, f"{step}: the rule"
        assert await fact(alice, now) is expected, f"{step}: the fact read with the token"
        assert await fact(bystander, now) is False, f"{step}: somebody else's fact"
        steps.append((step, expected))

    await check("a new account", False)
    model_id = await api.create_model(alice)
    await check("a draft model", True)
    version_id = await api.create_version(alice, model_id)
    await check("a draft version", True)
    started = await api.start_upload(alice, version_id, 100, "PUBLIC")
    await check("a public dataset waiting for its bytes", True)
    await api.mutate(
        "deleteDataset",
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) { userErrors { code } } }",
        {"i": {"datasetId": started["dataset"]["id"]}},
        alice.token,
    )
    dataset_id = await api.upload(alice, version_id, "PRIVATE")
    await api.publish(alice, version_id)
    await check("a published version with a private dataset", True)
    await set_visibility(api, alice, dataset_id, "PUBLIC")
    await check("everything public", False)
    update = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { code } } }"
    await api.mutate("updateModel", update, {"i": {"modelId": model_id, "nsfw": True}}, alice.token)
    await check("an NSFW model", True)
    await api.mutate(
        "updateModel", update, {"i": {"modelId": model_id, "nsfw": False}}, alice.token
    )
    await check("not NSFW any more", False)
    kohya_model = await api.create_model(alice, "Kohya")
    kohya_version = await api.create_version(alice, kohya_model)
    await api.upload_file(alice, kohya_version, make_safetensors(metadata=KOHYA))
    await api.upload(alice, kohya_version, "PUBLIC")
    await api.publish(alice, kohya_version)
    await check("withheld keys made public by a public dataset", False)
    other = await api.create_model(alice, "Kohya alone")
    other_version = await api.create_version(alice, other)
    await api.upload_file(alice, other_version, make_safetensors(metadata=KOHYA))
    await api.publish(alice, other_version)
    await check("withheld keys without a dataset", True)
    await api.mutate(
        "deleteModel",
        "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { userErrors { code } } }",
        {"i": {"modelId": other}},
        alice.token,
    )
    await check("their model deleted (its file a tombstone)", True)
    assert [expected for _, expected in steps].count(False) >= 4


@pytest.mark.sqlite_only(
    reason="the plan is SQLite's (PostgreSQL plans tiny tables as scans); the statement "
    "itself runs on PostgreSQL in the tests above"
)
async def test_nothing_unshared_is_found_without_reading_the_others_rows(api: Api) -> None:
    # each part of the question is a probe of its own partial index (SQLite's plan)
    from tortoise import connections

    client = connections.get("default")
    _, rows = await client.execute_query(
        "EXPLAIN QUERY PLAN SELECT " + access.owns_unshared_sql("1")
    )
    plan = [str(row[-1]) for row in rows]
    probes = [step for step in plan if step.startswith("SEARCH t USING")]
    assert len(probes) == len(access.UNSHARED), plan
    assert all("INDEX" in step and "(owner_id=" in step for step in probes), plan
    assert not [step for step in plan if step.startswith("SCAN") and "CONSTANT" not in step]
    for name in ("unshared_models", "unshared_versions", "unshared_datasets"):
        assert any(f"INDEX {name} " in step for step in probes), plan
