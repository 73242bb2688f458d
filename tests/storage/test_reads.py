"""Prepared reads (storage/db/reads.py) answer exactly what the Tortoise query they
are built from answers: the same rows, in the same order, the same values, for every
kind of object, viewer and shape of arguments."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tortoise.expressions import RawSQL
from tortoise.models import Model

from storage import accounts, catalog, datasets, files, search
from storage.db import reads
from storage.db.enums import BaseModel, LoraType
from storage.db.models import (
    AuthToken,
    DatasetEvent,
    LoraModel,
    ModelFile,
    ModelTag,
    ModelVersion,
    TrainingDataset,
    User,
)
from storage.privacy import access, lookups
from storage.retention import history
from tests.conftest import Api, MutableClock, make_safetensors, set_visibility

KOHYA = {"ss_network_dim": "4", "ss_tag_frequency": json.dumps({"10_cats": {"cat": 3}})}


def state(rows: list[Any]) -> list[dict[str, Any]]:
    """Every attribute of each instance, as Tortoise set it (no relation caches)."""
    return [
        {k: v for k, v in row.__dict__.items() if not k.startswith("_") or k in INTERNAL}
        for row in rows
    ]


INTERNAL = ("_partial", "_saved_in_db", "_custom_generated_pk", "_await_when_save")


async def catalogue(api: Api) -> tuple[list[int], list[int | None]]:
    """Objects in every state a page shows; (user keys, viewers)."""
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    for owner, n in ((alice, 0), (bob, 1)):
        public = await api.create_model(owner, f"Public {n}")
        version = await api.create_version(owner, public)
        await api.upload_file(owner, version, make_safetensors(metadata=KOHYA))
        dataset = await api.upload(owner, version, "PUBLIC")
        await api.publish(owner, version)
        await api.create_version(owner, public, name="draft")
        private = await api.create_model(owner, f"Private {n}")
        version = await api.create_version(owner, private, base_model="PONY")
        await api.upload(owner, version, "PRIVATE")
        await api.publish(owner, version)
        await set_visibility(api, owner, dataset, "PRIVATE")
        await api.create_model(owner, f"Draft {n}")
        await api.mutate(
            "updateModel",
            "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { code } } }",
            {"i": {"modelId": private, "nsfw": True, "tags": ["cats", "style"]}},
            owner.token,
        )
    users = [u.id for u in await User.all().order_by("id")]
    return users, [None, *users]


async def test_every_kind_is_read_as_tortoise_reads_it(api: Api) -> None:
    _, viewers = await catalogue(api)
    for kind in lookups.KINDS:
        model: type[Model] = kind.model
        ids = [row.pk for row in await model.all()] + [10**9]
        public_ids = [row.public_id for row in await model.all()] + ["nothing", ""]  # type: ignore[attr-defined]
        for viewer in viewers:
            for some in (ids, ids[:1], []):
                expected = await model.filter(kind.visible(viewer), id__in=some)
                assert state(await kind.by_ids(viewer, some)) == state(expected), kind.name
            expected = await model.filter(kind.visible(viewer), public_id__in=public_ids)
            got = await kind.by_public_ids(viewer, public_ids)
            assert state(got) == state(expected), kind.name


async def test_the_batches_a_page_loads_are_read_as_tortoise_reads_them(api: Api) -> None:
    _, viewers = await catalogue(api)
    model_ids = [m.id for m in await LoraModel.all()]
    version_ids = [v.id for v in await ModelVersion.all()]
    dataset_ids = [e.dataset_id for e in await DatasetEvent.all()]
    for viewer in viewers:
        versions = await catalog.versions_by_model_ids(model_ids, viewer=viewer)
        expected = await ModelVersion.filter(
            access.visible_versions_q(viewer), model_id__in=model_ids
        ).order_by("-created_at", "-id")
        grouped: dict[int, list[ModelVersion]] = {}
        for version in expected:
            grouped.setdefault(version.model_id, []).append(version)
        assert {k: state(v) for k, v in versions.items()} == {
            k: state(v) for k, v in grouped.items()
        }
        found = await datasets.datasets_by_version_ids(version_ids, viewer=viewer)
        expected_datasets = await TrainingDataset.filter(
            access.visible_datasets_q(viewer), version_id__in=version_ids
        )
        assert {d.version_id: state([d])[0] for d in expected_datasets} == {
            k: state([d])[0] for k, d in found.items()
        }
        by_version = await files.files_by_version_ids(version_ids, viewer=viewer)
        expected_files = await ModelFile.filter(
            access.visible_files_q(viewer), version_id__in=version_ids
        ).order_by("-primary", "id")
        assert state([f for rows in by_version.values() for f in rows]) == state(
            [f for v in by_version for f in expected_files if f.version_id == v]
        )
        events = await history.events_by_dataset_ids(dataset_ids, viewer=viewer)
        expected_events = await DatasetEvent.filter(
            access.visible_events_q(viewer), dataset_id__in=dataset_ids
        ).order_by("at", "id")
        assert state([e for rows in events.values() for e in rows]) == state(
            [e for d in events for e in expected_events if e.dataset_id == d]
        )
    tags = await search.tags_by_model_ids(model_ids)
    expected_tags = await ModelTag.filter(model_id__in=model_ids).order_by("model_id", "position")
    assert tags == {
        m: [t.tag for t in expected_tags if t.model_id == m]
        for m in dict.fromkeys(t.model_id for t in expected_tags)
    }


async def test_catalogue_pages_are_the_same_prepared_or_built(api: Api) -> None:
    users, viewers = await catalogue(api)
    owners = [u.public_id for u in await User.all()] + ["u_nobody"]
    narrowings = [catalog.CatalogueFilter()]
    narrowings += [catalog.CatalogueFilter(owner_id=o) for o in owners]
    narrowings += [
        catalog.CatalogueFilter(tag="cats"),
        catalog.CatalogueFilter(tag="cats", include_nsfw=True),
        catalog.CatalogueFilter(type=LoraType.LORA, base_model=BaseModel.PONY),
        catalog.CatalogueFilter(base_model=BaseModel.SDXL_1_0, include_nsfw=True),
    ]
    for viewer in viewers:
        for narrow in narrowings:
            built = catalog._catalogue(viewer, narrow.owner_id, narrow.tag, *catalog._fixed(narrow))
            everything = await built.order_by("-id")
            after = None
            seen: list[Any] = []
            while True:  # page through two at a time
                page = await catalog.models_page(viewer=viewer, narrow=narrow, first=2, after=after)
                seen += page.items
                if not page.has_next:
                    break
                after = page.position(page.items[-1])
            assert state(seen) == state(everything), (viewer, narrow)


async def test_a_query_whose_arguments_cannot_be_placed_is_built_every_time(api: Api) -> None:
    await catalogue(api)
    # (a value Tortoise converts, here a name turned into its lower case, cannot be
    # found among the parameters: such a read is not prepared, and still answers)
    read = reads.Read(User, lambda name: User.filter(username=str(name).lower() if name else ""))
    assert [u.username for u in await read("ALICE")] == ["alice"]
    assert [u.username for u in await read("BOB")] == ["bob"]


async def test_signing_in_reads_the_token_its_user_and_the_fact_as_tortoise_does(
    api: Api, clock: MutableClock
) -> None:
    await catalogue(api)
    carol = await api.sign_up("carol")
    tokens = [p.token for p in (carol,)] + ["unknown-token"]
    tokens += [t.token_hash for t in await AuthToken.all()]  # (hashes: never tokens)
    for moment in (clock.now(), clock.now() + timedelta(days=3650)):
        for token in tokens:
            found = await accounts.authenticate(token, now=moment)
            expected = (
                await AuthToken.filter(
                    token_hash=accounts._token_hash(token), revoked_at=None, expires_at__gt=moment
                )
                .select_related("user")
                .annotate(owns_unshared=RawSQL(access.owns_unshared_sql('"auth_tokens"."user_id"')))
                .first()
            )
            if expected is None:
                assert found is None
                continue
            assert found is not None
            user, token_row = found
            assert state([user]) == state([expected.user])
            assert {k: v for k, v in state([token_row])[0].items()} == {
                k: v for k, v in state([expected])[0].items()
            }
            assert token_row.owns_unshared is bool(expected.owns_unshared)
