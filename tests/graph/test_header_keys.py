"""The withheld-key list applies to files already stored: at start, a key listed since a
file was uploaded is withheld from it (``header_firewall.settle_stored_files``), with
the same firewall as for a new upload. (tests/graph/test_header_keys_e2e.py restarts a
real ``lorashelf serve`` with a longer list.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.assembly import assemble
from jobs.tasks import erase_header
from storage.blobs.local import LocalBlobStore
from storage.config.settings import load_settings
from storage.retention.header_firewall import TRAINING_DATA_KEYS, settle_stored_files
from storage.runtime import NoScheduler, Runtime
from tests.conftest import Api, MutableClock, blob_files, blob_plaintext, make_safetensors, raw_id
from tests.graph.test_header_firewall import (
    PUBLIC_METADATA,
    RETENTION,
    TENSORS,
    TRAINING_METADATA,
    assert_same_tensors,
    download,
    file_view,
    metadata_in,
    metadata_of,
    sha,
    version_with_file,
)

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")

NEW_KEY = "modelspec.description"
NEW_VALUE = "newly_private_note_6620"
BODY = make_safetensors({**PUBLIC_METADATA, **TRAINING_METADATA, NEW_KEY: NEW_VALUE}, TENSORS)


def restarted(
    env: dict[str, str], clock: MutableClock, store: LocalBlobStore, keys: str
) -> Runtime:
    """The runtime of a process started with ``LORASHELF_PRIVATE_HEADER_KEYS=keys``."""
    settings = load_settings({**env, "LORASHELF_PRIVATE_HEADER_KEYS": keys})
    return assemble(settings, clock=clock, blobs=store, scheduler=NoScheduler()).runtime


def blobs_holding(root: Path, value: str) -> list[Path]:
    """The blobs whose plaintext holds ``value`` (none holds it as stored: sealed)."""
    assert not [path for path in blob_files(root) if value.encode() in path.read_bytes()]
    return [path for path in blob_files(root) if value.encode() in (blob_plaintext(path) or b"")]


async def test_a_newly_listed_key_joins_the_keys_already_withheld(
    api: Api, env: dict[str, str], clock: MutableClock, store: LocalBlobStore
) -> None:
    # given a published file (private dataset) whose header holds a key nobody listed
    alice = await api.sign_up("alice")
    _, _, file_id = await version_with_file(api, alice, body=BODY)
    assert metadata_of(await file_view(api, file_id, None))[NEW_KEY] == NEW_VALUE

    # when a process starts with that key listed
    changed = await settle_stored_files(restarted(env, clock, store, NEW_KEY))

    # then the file is the only one changed, and anybody else gets it without the key
    assert changed == 1
    anonymous = await file_view(api, file_id, None)
    assert metadata_of(anonymous) == PUBLIC_METADATA
    public = await download(api, file_id, None)
    assert NEW_VALUE.encode() not in public
    assert metadata_in(public) == PUBLIC_METADATA
    assert anonymous["sha256"] == sha(public) and anonymous["sizeBytes"] == len(public)
    assert_same_tensors(BODY, public)
    # and the owner sees every withheld key, and downloads the file as uploaded
    owner = await file_view(api, file_id, alice)
    assert owner["withheldKeys"] == sorted([*TRAINING_DATA_KEYS, NEW_KEY])
    assert metadata_of(owner)[NEW_KEY] == NEW_VALUE
    assert await download(api, file_id, alice) == BODY
    # and only the original header and the owner's copy of the metadata still hold the
    # value (the old public header is gone)
    assert len(blobs_holding(store.root, NEW_VALUE)) == 2
    # and a second start finds nothing left to do
    assert await settle_stored_files(restarted(env, clock, store, NEW_KEY)) == 0


async def test_a_file_with_nothing_withheld_gets_a_window_for_the_new_key(
    api: Api, env: dict[str, str], clock: MutableClock, store: LocalBlobStore
) -> None:
    # given a published file whose header had nothing to withhold (served as uploaded)
    alice = await api.sign_up("alice")
    body = make_safetensors({**PUBLIC_METADATA, NEW_KEY: NEW_VALUE}, TENSORS)
    _, _, file_id = await version_with_file(api, alice, body=body)
    assert await download(api, file_id, None) == body
    assert (await file_view(api, file_id, alice))["headerExpiresAt"] is None

    # when the key is listed
    await settle_stored_files(restarted(env, clock, store, f"{NEW_KEY},unused_key"))

    # then it is withheld from everybody else, and erased when the window ends
    public = await download(api, file_id, None)
    assert metadata_in(public) == PUBLIC_METADATA
    owner = await file_view(api, file_id, alice)
    assert owner["withheldKeys"] == [NEW_KEY]
    assert owner["headerExpiresAt"] is not None
    clock.advance(RETENTION)
    assert await erase_header(
        {"runtime": restarted(env, clock, store, NEW_KEY)}, await raw_id(file_id, "ModelFile")
    )
    assert NEW_KEY not in metadata_of(await file_view(api, file_id, alice))
    assert blobs_holding(store.root, NEW_VALUE) == []


async def test_a_file_erased_already_loses_the_new_key_for_everybody(
    api: Api, env: dict[str, str], clock: MutableClock, store: LocalBlobStore
) -> None:
    # given a file whose withheld keys were erased at the end of its window
    alice = await api.sign_up("alice")
    _, _, file_id = await version_with_file(api, alice, body=BODY)
    clock.advance(RETENTION)
    runtime = restarted(env, clock, store, "")
    assert await erase_header({"runtime": runtime}, await raw_id(file_id, "ModelFile"))
    assert metadata_of(await file_view(api, file_id, alice))[NEW_KEY] == NEW_VALUE

    # when the key is listed afterwards
    assert await settle_stored_files(restarted(env, clock, store, NEW_KEY)) == 1

    # then nobody sees it any more, the owner included, and no byte of it is left
    for who in (None, alice):
        assert metadata_of(await file_view(api, file_id, who)) == PUBLIC_METADATA
        assert metadata_in(await download(api, file_id, who)) == PUBLIC_METADATA
    view = await file_view(api, file_id, alice)
    assert view["sha256"] == sha(await download(api, file_id, alice))
    assert blobs_holding(store.root, NEW_VALUE) == []
