"""The deletion's steps (storage/retention/deletion.py) and the key store's lifecycle on
the injected clock: a process that died between destroying a key and deleting the bytes
is finished by the sweep, receipt and all; header erasure signs its receipt; the master
key rotates by configuration; blobs stored before encryption are sealed by the sweep."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from jobs.assembly import assemble
from jobs.tasks import runtime_of, sweep
from storage.blobs.base import read_all
from storage.blobs.local import LocalBlobStore
from storage.config.settings import Settings, load_settings
from storage.crypto import keystore, receipts, rotation
from storage.crypto.master import key_id
from storage.db.enums import DatasetStatus, DeletionReason
from storage.db.key_tables import BlobKey, PlaintextBlob
from storage.db.models import ModelFile, TrainingDataset
from storage.retention import deletion
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock, at, blob_files, make_safetensors, raw_id
from tests.erasure import unseal_everything
from tests.jobs.conftest import owner_view

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="")

Ctx = dict[str, Any]
RECEIPT = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { status keyDestroyedAt "
    "deletedAt deletionReceipt { payload signature keyId } } } }"
)


async def test_a_crash_between_the_key_and_the_bytes_is_finished_by_the_sweep(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private dataset whose window has ended, claimed and its key destroyed by a
    # process that died then (its bytes still stored)
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    pk = await raw_id(dataset_id)
    row = await TrainingDataset.get(id=pk)
    assert row.blob_key is not None and blob_files(settings.blob_dir)
    clock.advance(60)
    ended = clock.now()
    assert await deletion.claim_deletion(
        deletion.expiry_condition(pk, ended), reason=DeletionReason.EXPIRED, now=ended
    )
    clock.advance(1)
    destroyed = await deletion.destroy_key(runtime_of(ctx), await TrainingDataset.get(id=pk))
    assert destroyed == clock.now()
    store: LocalBlobStore = runtime_of(ctx).blobs.raw  # type: ignore[attr-defined]
    assert store.path_for(row.blob_key).exists()
    seen = (await api.gql(RECEIPT, {"id": dataset_id}, owner.token))["node"]
    assert seen["status"] == "DELETED" and seen["deletionReceipt"] is None  # access ended

    # when the next process starts and sweeps
    clock.advance(5)
    counts = await sweep(ctx, startup=True)

    # then the bytes are gone and the tombstone carries the receipt, with the instant
    # the key was really destroyed (not the sweep's)
    assert counts.get("unstuck") == 1, counts
    assert not store.path_for(row.blob_key).exists()
    seen = (await api.gql(RECEIPT, {"id": dataset_id}, owner.token))["node"]
    assert at(seen["keyDestroyedAt"]) == destroyed
    payload = json.loads(seen["deletionReceipt"]["payload"])
    assert payload["keyDestroyedAt"] == seen["keyDestroyedAt"]
    assert payload["windowEndedAt"] == receipts.instant(ended)
    assert payload["lastCopyRemovedAt"] == receipts.instant(clock.now())
    [key] = await receipts.published(runtime_of(ctx).master, now=clock.now())
    receipts.verify(seen["deletionReceipt"], key.public_key)


async def test_header_erasure_destroys_the_key_first_and_signs_a_receipt(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a published version with a private dataset and a file with withheld keys
    owner = await api.sign_up()
    model_id = await api.create_model(owner)
    version_id = await api.create_version(owner, model_id)
    body = make_safetensors({"ss_tag_frequency": '{"x": {"cat": 1}}', "ss_network_dim": "4"})
    file_id = await api.upload_file(owner, version_id, body)
    await api.upload(owner, version_id, "PRIVATE")
    await api.publish(owner, version_id)
    file = await ModelFile.get(id=await raw_id(file_id, "ModelFile"))
    original = file.header_key
    assert original is not None and original != file.public_header_key

    # when the window ends and the sweep runs
    clock.advance(61)
    assert (await sweep(ctx)).get("headers_erased") == 1

    # then the original header's key and bytes are gone, and the owner holds a receipt
    assert await keystore.load(runtime_of(ctx).master, original) is None
    view = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelFile { headerErasedAt "
        "headerErasureReceipt { payload signature keyId } } } }",
        {"id": file_id},
        owner.token,
    )
    receipt = view["node"]["headerErasureReceipt"]
    [key] = await receipts.published(runtime_of(ctx).master, now=clock.now())
    payload = receipts.verify(receipt, key.public_key)
    assert payload["kind"] == "WEIGHTS_HEADER_KEYS_ERASED"
    assert payload["file"]["erasedKeys"] == ["ss_tag_frequency"]
    assert payload["file"]["sha256"] == file.sha256
    # and nobody else sees it
    other = await api.sign_up()
    hidden = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelFile { headerErasureReceipt "
        "{ payload } } } }",
        {"id": file_id},
        other.token,
    )
    assert hidden["node"]["headerErasureReceipt"] is None


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


async def test_the_master_key_rotates_by_configuration_without_touching_a_blob(
    api: Api, clock: MutableClock, env: dict[str, str], database: None
) -> None:
    # given a deployment configured with a master key, holding a blob
    old, new = bytes(range(32)), bytes(range(1, 33))
    first = load_settings({**env, "LORASHELF_MASTER_KEY": b64(old)})
    rt = assemble(first, clock=clock, scheduler=NoScheduler()).runtime
    writer = rt.blobs.writer()
    await writer.write(b"kept as it is")
    key = await writer.commit()
    store: LocalBlobStore = rt.blobs.raw  # type: ignore[attr-defined]
    stored = store.path_for(key).read_bytes()
    assert (await BlobKey.get(object_id=key)).master_key_id == key_id(old)

    # when the new key is put first (the old one after it) and the rotation runs
    both = load_settings({**env, "LORASHELF_MASTER_KEY": f"{b64(new)},{b64(old)}"})
    rotated = assemble(both, clock=clock, scheduler=NoScheduler()).runtime
    result = await rotation.rotate(rotated.master)

    # then every key is wrapped by the new one, the blob is untouched, and the new key
    # alone reads it
    assert result.master_key_id == key_id(new) and result.data_keys == 1
    assert result.retired == [key_id(old)]
    assert (await BlobKey.get(object_id=key)).master_key_id == key_id(new)
    assert store.path_for(key).read_bytes() == stored
    alone = load_settings({**env, "LORASHELF_MASTER_KEY": b64(new)})
    after = assemble(alone, clock=clock, scheduler=NoScheduler()).runtime
    assert await read_all(after.blobs, key) == b"kept as it is"
    # and a process with the old key alone refuses to start, naming the key it lacks
    stale = assemble(first, clock=clock, scheduler=NoScheduler()).runtime
    with pytest.raises(Exception, match=key_id(new)):
        await stale.blobs.connect()


async def test_blobs_stored_before_encryption_are_sealed_by_the_sweep(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a dataset and a weights file stored as an earlier release stored them: in
    # plaintext, without keys, listed by the migration
    owner = await api.sign_up()
    _, version_id, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    rt = runtime_of(ctx)
    originals = await unseal_everything(rt)
    assert len(originals) >= 3
    for path in blob_files(settings.blob_dir):
        assert path.read_bytes() == originals[path.name]  # plaintext now
    dataset = await TrainingDataset.get(id=await raw_id(dataset_id))
    archive = originals[str(dataset.blob_key)]
    url = (await owner_view(api, owner, dataset_id))["downloadUrl"]
    assert (await api.http.get(url)).content == archive

    # when the sweep runs
    counts = await sweep(ctx)

    # then every blob is sealed under a new key, the plaintext ones are gone, and the
    # owner downloads the same bytes
    assert counts.get("blobs_encrypted") == len(originals), counts
    assert await PlaintextBlob.all().count() == 0
    for path in blob_files(settings.blob_dir):
        assert path.name not in originals
        assert await keystore.load(rt.master, path.name) is not None
        assert not any(o[:64] in path.read_bytes() for o in originals.values() if len(o) >= 64)
    dataset = await TrainingDataset.get(id=dataset.id)
    assert dataset.status == DatasetStatus.AVAILABLE and dataset.blob_key not in originals
    url = (await owner_view(api, owner, dataset_id))["downloadUrl"]
    assert (await api.http.get(url)).content == archive
