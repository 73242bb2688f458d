"""The header firewall, byte by byte: the training-data keys kohya's sd-scripts writes into
a safetensors header (``ss_tag_frequency``, ``ss_dataset_dirs``...) follow the version's
training dataset. Public while the dataset is PUBLIC; otherwise the owner's alone (in
``headerMetadata`` and in the bytes their ``downloadUrl`` serves) until the private window
ends, then erased from every stored byte. Everybody else gets the same tensors under a
header without them, and the hashes and size describe that public file."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load

from jobs.tasks import erase_header, sweep
from storage.config.settings import Settings
from storage.db import connection as db
from storage.retention.header_firewall import TRAINING_DATA_KEYS
from tests.conftest import (
    START,
    Api,
    MutableClock,
    Person,
    at,
    blob_files,
    blob_plaintext,
    database_contents,
    make_safetensors,
    make_zip,
    raw_id,
    set_visibility,
)

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")

RETENTION = 60

# Distinctive values that only the training-data keys hold: searched for as bytes.
SECRETS = (
    "zebra_secret_tag_93847",
    "hidden_caption_word_55120",
    "secret_dir_qx7741_zebracat",
    "reg_secret_dir_88214",
    "private_album_4471",
    "class_token_zq6610",
    "bucket_marker_31337",
    "9173048251",
    "6620931874",
    "5518203967",
    "4587123690",
    "cousin_zq88121",
)
SECRET_BYTES = tuple(s.encode() for s in SECRETS)

PUBLIC_METADATA = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "16",
    "ss_network_alpha": "8.0",
    "ss_base_model_version": "sdxl_base_v1-0",
    "ss_output_name": "zebracat_lora",
    "ss_learning_rate": "0.0001",
}

TRAINING_METADATA = {
    "ss_tag_frequency": json.dumps(
        {
            "10_secret_dir_qx7741_zebracat": {
                "zebra_secret_tag_93847": 12,
                "hidden_caption_word_55120": 3,
            }
        }
    ),
    "ss_dataset_dirs": json.dumps(
        {"10_secret_dir_qx7741_zebracat": {"n_repeats": 10, "img_count": 12}}
    ),
    "ss_reg_dataset_dirs": json.dumps(
        {"1_reg_secret_dir_88214": {"n_repeats": 1, "img_count": 40}}
    ),
    "ss_datasets": json.dumps(
        [
            {
                "is_dreambooth": True,
                "subsets": [
                    {
                        "image_dir": "/home/alice/private_album_4471",
                        "class_tokens": "class_token_zq6610",
                        "num_repeats": 10,
                    }
                ],
            }
        ]
    ),
    "ss_bucket_info": json.dumps(
        {"buckets": {"0": {"resolution": [1024, 1024], "count": 12}}, "note": "bucket_marker_31337"}
    ),
    "ss_num_train_images": "9173048251",
    "ss_num_reg_images": "6620931874",
    "ss_num_validation_images": "5518203967",
    "ss_num_batches_per_epoch": "4587123690",
    "ss_training_comment": "photos of cousin_zq88121 from the family album",
}

TENSORS = {
    "lora_unet_down.lora_down.weight": np.arange(64, dtype=np.float16).reshape(8, 8),
    "lora_unet_down.lora_up.weight": np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4),
    "lora_unet_down.alpha": np.array(8.0, dtype=np.float32),
}

LORA = make_safetensors({**PUBLIC_METADATA, **TRAINING_METADATA}, TENSORS)

FILE = """
query($id: ID!) {
  node(id: $id) {
    ... on ModelFile {
      id status sha256 autoV2 autoV3 sizeBytes publicSha256 publicSizeBytes
      headerMetadata { key value }
      withheldKeys headerExpiresAt headerErasedAt originalSha256 downloadUrl
    }
  }
}
"""

DATASET = """
query($id: ID!) {
  node(id: $id) { ... on TrainingDataset { id status visibility expiresAt events { kind at detail } } }
}
"""

BY_HASH = "query($h: String!) { modelVersionByHash(hash: $h) { id } }"


# Helpers -----------------------------------------------------------------------


def header_end(blob: bytes) -> int:
    """Where a safetensors file's data section starts."""
    return 8 + int.from_bytes(blob[:8], "little")


def metadata_in(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` written in a safetensors file's header."""
    header = json.loads(blob[8 : header_end(blob)])
    found: dict[str, str] = header.get("__metadata__", {})
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def secrets_in(data: bytes) -> list[str]:
    return [s for s, b in zip(SECRETS, SECRET_BYTES, strict=True) if b in data]


def files_holding_secrets(settings: Settings) -> dict[Path, list[str]]:
    """Every file under the data directory (database, -wal/-shm, blobs, temp files...)
    that holds a secret value as bytes, and on PostgreSQL the database's rows (keyed
    ``Path("<postgresql>")``)."""
    found: dict[Path, list[str]] = {}
    for path in sorted(settings.data_dir.rglob("*")):
        if path.is_file():
            held = secrets_in(path.read_bytes())
            if held:
                found[path] = held
    if db.is_postgres(settings.database_url):
        held = secrets_in(database_contents(settings))
        if held:
            found[Path("<postgresql>")] = held
    return found


def database_bytes(settings: Settings) -> list[bytes]:
    """What the database keeps: each SQLite file, or PostgreSQL's rows as text."""
    if db.is_postgres(settings.database_url):
        return [database_contents(settings)]
    files = [p for p in settings.data_dir.rglob("*") if p.is_file() and ".sqlite" in p.name]
    assert files, f"no SQLite file under {settings.data_dir}"
    return [path.read_bytes() for path in files]


def assert_same_tensors(a: bytes, b: bytes) -> None:
    first, second = load(a), load(b)
    assert first.keys() == second.keys() == TENSORS.keys()
    for name, expected in TENSORS.items():
        assert first[name].dtype == second[name].dtype == expected.dtype
        np.testing.assert_array_equal(first[name], expected)
        np.testing.assert_array_equal(second[name], expected)


async def file_view(api: Api, file_id: str, who: Person | None) -> dict[str, Any]:
    node: dict[str, Any] | None = (
        await api.gql(FILE, {"id": file_id}, who.token if who else None)
    )["node"]
    assert node is not None, "the file is not visible"
    return node


def metadata_of(view: dict[str, Any]) -> dict[str, str]:
    entries = view["headerMetadata"]
    return {e["key"]: e["value"] for e in entries}


async def download(api: Api, file_id: str, who: Person | None) -> bytes:
    """The bytes ``who`` gets through a fresh downloadUrl of the file."""
    view = await file_view(api, file_id, who)
    assert view["downloadUrl"], "no download URL"
    response = await api.http.get(view["downloadUrl"])
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{sha(response.content)}"'
    return response.content


async def dataset_view(api: Api, dataset_id: str, owner: Person) -> dict[str, Any]:
    node: dict[str, Any] = (await api.gql(DATASET, {"id": dataset_id}, owner.token))["node"]
    return node


async def by_hash(api: Api, value: str, who: Person | None) -> str | None:
    data = await api.gql(BY_HASH, {"h": value}, who.token if who else None)
    found = data["modelVersionByHash"]
    return found["id"] if found else None


async def version_with_file(
    api: Api,
    owner: Person,
    *,
    dataset: str | None = "PRIVATE",
    body: bytes = LORA,
    publish: bool = True,
) -> tuple[str, str | None, str]:
    """Given a version with this weights file and (unless None) a dataset of this
    visibility, published unless told not to: (version, dataset, file) IDs."""
    model_id = await api.create_model(owner)
    version_id = await api.create_version(owner, model_id)
    file_id = await api.upload_file(owner, version_id, body)
    dataset_id = None
    if dataset is not None:
        dataset_id = await api.upload(owner, version_id, dataset, body=make_zip())
    if publish:
        await api.publish(owner, version_id)
    return version_id, dataset_id, file_id


def public_file_of(original: bytes, public: bytes) -> None:
    """``public`` is ``original`` without the training-data keys: every other key, the
    same tensor bytes, and no secret value anywhere."""
    assert secrets_in(public) == []
    assert metadata_in(public) == PUBLIC_METADATA
    assert public[header_end(public) :] == original[header_end(original) :]
    assert header_end(public) % 8 == 0  # padded as the safetensors package pads
    assert_same_tensors(original, public)


# 1. A private dataset ---------------------------------------------------------


async def test_private_dataset_keys_are_the_owners_alone(api: Api) -> None:
    # given alice's published version, trained on a private dataset, whose weights file
    # holds kohya's training-data keys
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, dataset_id, file_id = await version_with_file(api, alice)
    assert secrets_in(LORA) == list(SECRETS)
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    assert expires_at == START + timedelta(seconds=RETENTION)

    # when anonymous, bob and alice look at the file and download it
    anonymous_view = await file_view(api, file_id, None)
    bob_view = await file_view(api, file_id, bob)
    owner_view = await file_view(api, file_id, alice)
    anonymous_bytes = await download(api, file_id, None)
    bob_bytes = await download(api, file_id, bob)
    owner_bytes = await download(api, file_id, alice)

    # then the others see every key but the training-data ones, and download a file
    # without any of their values: same tensors, the other keys kept
    for view in (anonymous_view, bob_view):
        assert metadata_of(view) == PUBLIC_METADATA
        assert metadata_of(view)["ss_network_dim"] == "16"
        assert view["withheldKeys"] is None
        assert view["headerExpiresAt"] is None
        assert view["headerErasedAt"] is None
        assert view["originalSha256"] is None
    assert anonymous_bytes == bob_bytes
    public_file_of(LORA, anonymous_bytes)
    assert len(anonymous_bytes) < len(LORA)

    # and the owner sees them all and downloads exactly what she uploaded
    assert metadata_of(owner_view) == {**PUBLIC_METADATA, **TRAINING_METADATA}
    assert owner_bytes == LORA
    assert sorted(owner_view["withheldKeys"]) == sorted(TRAINING_DATA_KEYS)
    assert at(owner_view["headerExpiresAt"]) == expires_at
    assert owner_view["headerErasedAt"] is None
    assert owner_view["originalSha256"] == sha(LORA)

    # and each sees the keys in the order of the header they download, the public
    # header keeping the original order
    original_order = list(metadata_in(LORA))
    public_order = list(metadata_in(anonymous_bytes))
    assert public_order == [k for k in original_order if k not in TRAINING_METADATA]
    assert [e["key"] for e in anonymous_view["headerMetadata"]] == public_order
    assert [e["key"] for e in owner_view["headerMetadata"]] == original_order

    # and each viewer's hashes and size describe the file that viewer downloads (the
    # owner's the original), with the public file's beside them for everybody
    public_sha = sha(anonymous_bytes)
    assert public_sha != sha(LORA)
    assert (owner_view["sha256"], owner_view["sizeBytes"]) == (sha(LORA), len(LORA))
    assert owner_view["autoV2"] == sha(LORA)[:10]
    for view in (anonymous_view, bob_view):
        assert view["sha256"] == public_sha
        assert view["autoV2"] == public_sha[:10]
        assert view["sizeBytes"] == len(anonymous_bytes)
    for view in (anonymous_view, bob_view, owner_view):
        assert view["publicSha256"] == public_sha
        assert view["publicSizeBytes"] == len(anonymous_bytes)
        assert view["autoV3"] == sha(LORA[header_end(LORA) :])
        assert view["autoV3"] == sha(anonymous_bytes[header_end(anonymous_bytes) :])


async def test_the_files_of_a_version_show_the_same_firewall(api: Api) -> None:
    # given alice's published version with a private dataset
    alice = await api.sign_up("alice")
    version_id, _, _ = await version_with_file(api, alice)
    # (keys only: keys and values of every file's metadata exceed the document cost limit)
    query = (
        "query($id: ID!) { node(id: $id) { ... on ModelVersion "
        "{ files { sha256 headerMetadata { key } } } } }"
    )
    # when the version's files are listed, anonymously and by the owner
    anonymous = (await api.gql(query, {"id": version_id}))["node"]["files"]
    owner = (await api.gql(query, {"id": version_id}, alice.token))["node"]["files"]
    # then the listing hides the keys exactly as the file's node does
    assert [sorted(e["key"] for e in f["headerMetadata"]) for f in anonymous] == [
        sorted(PUBLIC_METADATA)
    ]
    assert [sorted(e["key"] for e in f["headerMetadata"]) for f in owner] == [
        sorted({**PUBLIC_METADATA, **TRAINING_METADATA})
    ]
    assert anonymous[0]["sha256"] != owner[0]["sha256"] == sha(LORA)


# 2. The end of the window ------------------------------------------------------


async def test_secret_values_live_only_in_the_owners_two_blobs(
    api: Api, settings: Settings
) -> None:
    # given alice's published version with a private dataset, looked at and downloaded
    # by everybody (so that whatever the requests write has been written)
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, _, file_id = await version_with_file(api, alice)
    for who in (None, bob, alice):
        await file_view(api, file_id, who)
        await download(api, file_id, who)
    # when every file under the data directory is searched for the secret values
    holding = files_holding_secrets(settings)
    # then none holds them as stored: every blob is sealed (not the database, its
    # journal, a blob or a temp file)
    assert holding == {}, holding
    for held in database_bytes(settings):
        assert secrets_in(held) == []
    # and decrypted, exactly two blobs hold them: the original header and the owner's
    # copy of the metadata, nothing more (not the public header or the tensor data)
    plain = {path: blob_plaintext(path) or b"" for path in blob_files(settings.blob_dir)}
    decrypted = [path for path, data in plain.items() if secrets_in(data)]
    assert len(decrypted) == 2, decrypted
    contents = sorted((plain[path] for path in decrypted), key=len, reverse=True)
    assert contents[0] == LORA[: header_end(LORA)]
    assert json.loads(contents[1]) == metadata_in(LORA)


async def test_access_to_the_keys_ends_at_the_window_not_when_the_job_runs(
    api: Api, clock: MutableClock
) -> None:
    # given alice's published version with a private dataset
    alice = await api.sign_up("alice")
    _, dataset_id, file_id = await version_with_file(api, alice)
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    public = await download(api, file_id, None)
    clock.set(expires_at - timedelta(seconds=1))
    assert await download(api, file_id, alice) == LORA
    earlier_url = (await file_view(api, file_id, alice))["downloadUrl"]
    # when the clock reaches the end of the window and no job has run yet
    clock.set(expires_at)
    # then the owner is already served the public file and metadata only, also
    # through a download URL she was given before
    view = await file_view(api, file_id, alice)
    assert metadata_of(view) == PUBLIC_METADATA
    assert await download(api, file_id, alice) == public
    response = await api.http.get(earlier_url)
    assert response.status_code == 200
    assert response.content == public


async def test_sweep_erases_the_keys_from_every_byte(
    api: Api, clock: MutableClock, ctx: dict[str, Any], settings: Settings
) -> None:
    # given alice's published version with a private dataset, downloaded by her and
    # by the public
    alice = await api.sign_up("alice")
    _, dataset_id, file_id = await version_with_file(api, alice)
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    public = await download(api, file_id, None)
    assert await download(api, file_id, alice) == LORA
    # when the window has passed and the sweep runs
    clock.set(expires_at + timedelta(seconds=1))
    counts = await sweep(ctx)
    # then the keys were erased
    assert counts.get("headers_erased") == 1, counts
    view = await file_view(api, file_id, alice)
    assert at(view["headerErasedAt"]) == expires_at + timedelta(seconds=1)
    assert view["headerExpiresAt"] is None
    assert view["originalSha256"] is None
    assert sorted(view["withheldKeys"]) == sorted(TRAINING_DATA_KEYS)  # named, still
    # and the owner too sees and downloads only the public file
    assert metadata_of(view) == PUBLIC_METADATA
    owner_bytes = await download(api, file_id, alice)
    assert owner_bytes == public == await download(api, file_id, None)
    public_file_of(LORA, owner_bytes)
    assert view["sha256"] == sha(public)
    assert view["sizeBytes"] == len(public)
    # and the dataset's history records it
    events = (await dataset_view(api, dataset_id, alice))["events"]
    erased = [e for e in events if e["kind"] == "HEADER_ERASED"]
    assert len(erased) == 1, events
    assert "ss_tag_frequency" in erased[0]["detail"]
    assert secrets_in(erased[0]["detail"].encode()) == []
    # and no file under the data directory holds any secret value any more
    assert files_holding_secrets(settings) == {}
    assert all(secrets_in(held) == [] for held in database_bytes(settings))
    # and running the job again changes nothing
    assert await erase_header(ctx, await raw_id(file_id, "ModelFile")) is False
    assert (await sweep(ctx)).get("headers_erased") is None
    assert await download(api, file_id, alice) == public


async def test_erase_header_job_waits_for_the_window(
    api: Api, clock: MutableClock, ctx: dict[str, Any], settings: Settings
) -> None:
    # given alice's published version with a private dataset
    alice = await api.sign_up("alice")
    _, dataset_id, file_id = await version_with_file(api, alice)
    pk = await raw_id(file_id, "ModelFile")
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    # when the erase job runs early
    clock.set(expires_at - timedelta(seconds=5))
    # then it leaves the keys alone
    assert await erase_header(ctx, pk) is False
    assert await download(api, file_id, alice) == LORA
    assert (await file_view(api, file_id, alice))["headerErasedAt"] is None
    # when it runs once the window has ended
    clock.set(expires_at)
    assert await erase_header(ctx, pk) is True
    # then the stored file is the public one, for the owner too, and no byte is left
    view = await file_view(api, file_id, alice)
    assert at(view["headerErasedAt"]) == expires_at
    public_file_of(LORA, await download(api, file_id, alice))
    assert files_holding_secrets(settings) == {}
    kinds = [e["kind"] for e in (await dataset_view(api, dataset_id, alice))["events"]]
    assert kinds.count("HEADER_ERASED") == 1


# 3. A public dataset -----------------------------------------------------------


@pytest.mark.env(LORASHELF_TOKEN_LIFETIME="400d")  # alice still looks a year later
async def test_public_dataset_shares_the_keys_with_everybody(
    api: Api, clock: MutableClock, ctx: dict[str, Any]
) -> None:
    # given alice's published version trained on a public dataset
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, _, file_id = await version_with_file(api, alice, dataset="PUBLIC")
    # when anybody looks at the file and downloads it
    for who in (None, bob, alice):
        view = await file_view(api, file_id, who)
        # then they see every key and get the original bytes, which the hashes describe
        assert metadata_of(view) == {**PUBLIC_METADATA, **TRAINING_METADATA}
        assert await download(api, file_id, who) == LORA
        assert view["sha256"] == sha(LORA)
        assert view["autoV2"] == sha(LORA)[:10]
        assert view["sizeBytes"] == len(LORA)
        assert view["autoV3"] == sha(LORA[header_end(LORA) :])
    # and the keys are never erased
    owner = await file_view(api, file_id, alice)
    assert owner["headerExpiresAt"] is None
    clock.advance(365 * 86400)
    await sweep(ctx)
    assert await erase_header(ctx, await raw_id(file_id, "ModelFile")) is False
    assert await download(api, file_id, None) == LORA
    assert (await file_view(api, file_id, alice))["headerErasedAt"] is None


async def test_dataset_made_private_then_public_again(
    api: Api, clock: MutableClock, ctx: dict[str, Any]
) -> None:
    # given alice's published version trained on a public dataset
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, dataset_id, file_id = await version_with_file(api, alice, dataset="PUBLIC")
    assert dataset_id is not None
    assert await download(api, file_id, bob) == LORA
    clock.advance(10)

    # when she makes it private
    await set_visibility(api, alice, dataset_id, "PRIVATE")
    # then the keys are hidden from everybody else at once
    public = await download(api, file_id, None)
    public_file_of(LORA, public)
    assert await download(api, file_id, bob) == public
    assert metadata_of(await file_view(api, file_id, bob)) == PUBLIC_METADATA
    assert (await file_view(api, file_id, None))["sha256"] == sha(public)
    # and the owner keeps them until the dataset's new window ends
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    assert expires_at == START + timedelta(seconds=10 + RETENTION)
    owner = await file_view(api, file_id, alice)
    assert at(owner["headerExpiresAt"]) == expires_at
    assert await download(api, file_id, alice) == LORA

    # when she makes it public again before the window ends
    clock.set(expires_at - timedelta(seconds=1))
    await set_visibility(api, alice, dataset_id, "PUBLIC")
    # then the keys are public again, for good
    for who in (None, bob):
        assert metadata_of(await file_view(api, file_id, who)) == {
            **PUBLIC_METADATA,
            **TRAINING_METADATA,
        }
        assert await download(api, file_id, who) == LORA
    assert (await file_view(api, file_id, alice))["headerExpiresAt"] is None
    clock.set(expires_at + timedelta(seconds=RETENTION))
    await sweep(ctx)
    assert await download(api, file_id, None) == LORA


# 4. No dataset -----------------------------------------------------------------


async def test_no_dataset_keys_withheld_until_publish_plus_retention(
    api: Api, clock: MutableClock, ctx: dict[str, Any], settings: Settings
) -> None:
    # given alice's version with a weights file but no dataset, published a bit later
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    file_id = await api.upload_file(alice, version_id, LORA)
    clock.advance(7)
    published_at = at((await api.publish(alice, version_id))["publishedAt"])
    window_end = published_at + timedelta(seconds=RETENTION)
    # then others never see the keys, the owner does until publishedAt + retention
    for who in (None, bob):
        assert metadata_of(await file_view(api, file_id, who)) == PUBLIC_METADATA
        public_file_of(LORA, await download(api, file_id, who))
    owner = await file_view(api, file_id, alice)
    assert metadata_of(owner) == {**PUBLIC_METADATA, **TRAINING_METADATA}
    assert at(owner["headerExpiresAt"]) == window_end
    assert await download(api, file_id, alice) == LORA
    # when the window ends and the sweep runs
    clock.set(window_end)
    assert (await sweep(ctx)).get("headers_erased") == 1
    # then the keys are gone for the owner too, and from every byte
    owner = await file_view(api, file_id, alice)
    assert at(owner["headerErasedAt"]) == window_end
    assert metadata_of(owner) == PUBLIC_METADATA
    public_file_of(LORA, await download(api, file_id, alice))
    assert files_holding_secrets(settings) == {}


# 5. A draft --------------------------------------------------------------------


@pytest.mark.env(LORASHELF_DRAFT_RETENTION="120s")
async def test_draft_with_private_dataset_erased_at_the_draft_window(
    api: Api, clock: MutableClock, ctx: dict[str, Any], settings: Settings
) -> None:
    # given alice's draft (never published) with a private dataset and a weights file
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, dataset_id, file_id = await version_with_file(api, alice, publish=False)
    dataset = await dataset_view(api, dataset_id, alice)
    draft_end = at(dataset["expiresAt"])
    assert draft_end == START + timedelta(seconds=120)
    # then nobody else sees the file at all; the owner sees the keys until the draft
    # window ends
    assert (await api.gql(FILE, {"id": file_id}, bob.token))["node"] is None
    assert (await api.gql(FILE, {"id": file_id}))["node"] is None
    owner = await file_view(api, file_id, alice)
    assert at(owner["headerExpiresAt"]) == draft_end
    assert metadata_of(owner) == {**PUBLIC_METADATA, **TRAINING_METADATA}
    assert await download(api, file_id, alice) == LORA
    # when the draft window ends and the sweep runs
    clock.set(draft_end + timedelta(seconds=1))
    counts = await sweep(ctx)
    # then the dataset is gone and the keys are erased from the file
    assert counts.get("expired") == 1, counts
    assert counts.get("headers_erased") == 1, counts
    owner = await file_view(api, file_id, alice)
    assert owner["headerErasedAt"] is not None
    assert metadata_of(owner) == PUBLIC_METADATA
    public_file_of(LORA, await download(api, file_id, alice))
    assert files_holding_secrets(settings) == {}
    kinds = [e["kind"] for e in (await dataset_view(api, dataset_id, alice))["events"]]
    assert "HEADER_ERASED" in kinds


# 6. More withheld keys ---------------------------------------------------------


@pytest.mark.env(LORASHELF_PRIVATE_HEADER_KEYS="my_secret_key")
async def test_configured_keys_are_withheld_too(api: Api) -> None:
    # given the instance withholds my_secret_key as well
    policy = (await api.gql("{ retentionPolicy { withheldHeaderKeys } }"))["retentionPolicy"]
    assert policy["withheldHeaderKeys"] == [*TRAINING_DATA_KEYS, "my_secret_key"]
    # and alice's published version (private dataset) whose file holds only that key
    alice = await api.sign_up("alice")
    body = make_safetensors({**PUBLIC_METADATA, "my_secret_key": "zebra_secret_tag_93847"}, TENSORS)
    _, _, file_id = await version_with_file(api, alice, body=body)
    # then it is withheld from the public and shown to the owner
    view = await file_view(api, file_id, None)
    assert metadata_of(view) == PUBLIC_METADATA
    public = await download(api, file_id, None)
    assert secrets_in(public) == []
    assert metadata_in(public) == PUBLIC_METADATA
    assert view["sha256"] == sha(public) != sha(body)
    owner = await file_view(api, file_id, alice)
    assert owner["withheldKeys"] == ["my_secret_key"]
    assert metadata_of(owner)["my_secret_key"] == "zebra_secret_tag_93847"
    assert await download(api, file_id, alice) == body


async def test_default_policy_lists_the_training_data_keys(api: Api) -> None:
    policy = (await api.gql("{ retentionPolicy { withheldHeaderKeys } }"))["retentionPolicy"]
    assert policy["withheldHeaderKeys"] == list(TRAINING_DATA_KEYS)


# 7. Nothing to withhold --------------------------------------------------------


async def test_file_without_training_keys_is_served_as_uploaded(
    api: Api, clock: MutableClock, ctx: dict[str, Any]
) -> None:
    # given alice's published version (private dataset) whose file has no training keys
    alice = await api.sign_up("alice")
    body = make_safetensors(PUBLIC_METADATA, TENSORS)
    _, _, file_id = await version_with_file(api, alice, body=body)
    # then everybody downloads the uploaded file, which the hashes describe
    assert await download(api, file_id, None) == body
    assert await download(api, file_id, alice) == body
    view = await file_view(api, file_id, None)
    assert metadata_of(view) == PUBLIC_METADATA
    assert view["sha256"] == sha(body)
    assert view["sizeBytes"] == len(body)
    # and nothing is withheld, nothing will be erased
    owner = await file_view(api, file_id, alice)
    assert owner["withheldKeys"] == []
    assert owner["headerExpiresAt"] is None
    assert owner["originalSha256"] is None
    assert owner["sha256"] == sha(body)
    clock.advance(10 * RETENTION)
    assert (await sweep(ctx)).get("headers_erased") is None
    assert await download(api, file_id, None) == body
    assert (await file_view(api, file_id, alice))["headerErasedAt"] is None


# 8. Finding a version by hash ------------------------------------------------------


async def test_public_hashes_find_the_version_for_anybody(api: Api) -> None:
    # given alice's published version with a private dataset
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    version_id, _, file_id = await version_with_file(api, alice)
    public = await download(api, file_id, None)
    hashes = [sha(public), sha(public)[:10], sha(public[header_end(public) :])]
    # when anybody looks it up by a hash of the public file, in either case
    for value in hashes:
        for spelled in (value, value.upper()):
            for who in (None, bob, alice):
                # then they find it
                assert await by_hash(api, spelled, who) == version_id, (spelled, who)


async def test_original_hashes_find_the_version_for_the_owner_only(
    api: Api, clock: MutableClock, ctx: dict[str, Any]
) -> None:
    # given alice's published version with a private dataset
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    version_id, dataset_id, file_id = await version_with_file(api, alice)
    original = [sha(LORA), sha(LORA)[:10]]
    # when somebody looks it up by a hash of the original file (withheld keys included)
    for value in original:
        for spelled in (value, value.upper()):
            # then only the owner finds it: for anybody else a match would confirm a
            # guess of the training data
            assert await by_hash(api, spelled, None) is None
            assert await by_hash(api, spelled, bob) is None
            assert await by_hash(api, spelled, alice) == version_id
    # and once the keys are erased, the original hashes identify nothing
    clock.set(at((await dataset_view(api, dataset_id, alice))["expiresAt"]))
    await sweep(ctx)
    for value in original:
        for who in (None, bob, alice):
            assert await by_hash(api, value, who) is None
    public = await download(api, file_id, alice)
    assert await by_hash(api, sha(public), None) == version_id


async def test_original_hashes_of_a_public_dataset_file_find_it(api: Api) -> None:
    # given alice's published version trained on a public dataset
    alice = await api.sign_up("alice")
    version_id, _, _ = await version_with_file(api, alice, dataset="PUBLIC")
    # then its file as uploaded (what everybody downloads) finds it for anybody
    assert await by_hash(api, sha(LORA), None) == version_id
    assert await by_hash(api, sha(LORA)[:10].upper(), None) == version_id


async def test_a_drafts_hashes_find_nothing_for_others(api: Api) -> None:
    # given alice's draft with a weights file
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, _, file_id = await version_with_file(api, alice, publish=False)
    view = await file_view(api, file_id, alice)
    hashes = [view["sha256"], view["autoV2"], view["autoV3"], sha(LORA), sha(LORA)[:10]]
    # then nobody else finds it by any of its hashes
    for value in hashes:
        assert await by_hash(api, value, None) is None
        assert await by_hash(api, value, bob) is None


# 9. Ranges ---------------------------------------------------------------------


async def test_range_across_the_header_boundary(api: Api) -> None:
    # given alice's published version with a private dataset
    alice = await api.sign_up("alice")
    _, _, file_id = await version_with_file(api, alice)
    public = await download(api, file_id, None)
    for who, whole in ((None, public), (alice, LORA)):
        boundary = header_end(whole)
        start, end = boundary - 5, boundary + 7
        url = (await file_view(api, file_id, who))["downloadUrl"]
        # when a range spanning the end of the header and the start of the data is asked
        response = await api.http.get(url, headers={"Range": f"bytes={start}-{end}"})
        # then exactly those bytes of the file this viewer is served come back
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(whole)}"
        assert response.content == whole[start : end + 1]
        # and a range of the header alone holds no secret for the public
        head = await api.http.get(url, headers={"Range": f"bytes=0-{boundary - 1}"})
        assert head.content == whole[:boundary]
        if who is None:
            assert secrets_in(head.content) == []
        # and a suffix range is the end of the same file
        tail = await api.http.get(url, headers={"Range": "bytes=-9"})
        assert tail.content == whole[-9:]


async def test_resuming_across_the_end_of_the_window_never_mixes_two_files(
    api: Api, clock: MutableClock
) -> None:
    # given alice downloading the first bytes of her file (the original) just before
    # the window ends
    alice = await api.sign_up("alice")
    _, dataset_id, file_id = await version_with_file(api, alice)
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    clock.set(expires_at - timedelta(seconds=1))
    url = (await file_view(api, file_id, alice))["downloadUrl"]
    first = await api.http.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.content == LORA[:100]
    etag = first.headers["etag"]
    assert etag == f'"{sha(LORA)}"'
    # when she resumes after the window ended, as browsers do (If-Range: the ETag)
    clock.set(expires_at)
    rest = await api.http.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
    # then, the file having changed, she gets the whole new file (RFC 9110 13.1.5), not
    # the tail of the public file to append to the head of the original
    public = await download(api, file_id, None)
    assert rest.headers["etag"] == f'"{sha(public)}"'
    assert rest.status_code == 200, rest.headers.get("content-range")
    assert rest.content == public


@pytest.mark.env(LORASHELF_DRAFT_RETENTION="120s")
async def test_abandoned_public_dataset_upload_does_not_keep_a_drafts_keys_forever(
    api: Api, clock: MutableClock, ctx: dict[str, Any], settings: Settings
) -> None:
    # given alice's draft where she started uploading a public dataset but never sent
    # its bytes, and then uploaded her weights file
    alice = await api.sign_up("alice")
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    started = await api.start_upload(alice, version_id, 1000, "PUBLIC")
    assert started["userErrors"] == []
    file_id = await api.upload_file(alice, version_id, LORA)
    # when the abandoned upload is discarded by the sweep, and time goes on
    clock.advance(settings.upload_url_lifetime + 1)
    await sweep(ctx)
    assert (await api.gql(DATASET, {"id": started["dataset"]["id"]}, alice.token))["node"] is None
    clock.advance(1)
    await sweep(ctx)
    # then the draft has no dataset: its keys lasted the draft lifetime from the file's
    # upload, and are erased
    owner = await file_view(api, file_id, alice)
    assert owner["headerErasedAt"] is not None, owner["headerExpiresAt"]
    assert metadata_of(owner) == PUBLIC_METADATA
    assert files_holding_secrets(settings) == {}
