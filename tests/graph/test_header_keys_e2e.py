"""A key newly listed in ``LORASHELF_PRIVATE_HEADER_KEYS`` applies to the weights files
already stored, not only to new uploads: a real ``lorashelf serve`` restarted with the
longer list withholds it from everybody but the owner, in ``headerMetadata`` and in the
bytes of the anonymous download (and the hashes and size describe those bytes). And,
against a real serve too, nothing a listed key implies (``architecture``) nor a key
spelled as a person would still read a withheld one reaches anyone but the owner, and
none of it enters the database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from safetensors.numpy import load

from storage.config.settings import Settings
from tests.conftest import blob_files, blob_plaintext, contents_now, make_safetensors
from tests.graph.test_header_firewall import database_bytes
from tests.processes import Owner, gql, serve

SECRET = "zebra_secret_value_2207"
PUBLIC_METADATA = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "16",
    "ss_output_name": "zebracat_lora",
}
TENSORS = {
    "lora_unet_down.lora_down.weight": np.arange(64, dtype=np.float16).reshape(8, 8),
    "lora_unet_down.lora_up.weight": np.ones((8, 4), dtype=np.float32),
}
FILE = (
    "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { id sizeBytes sha256 "
    "withheldKeys headerExpiresAt headerMetadata { key value } downloadUrl } } } }"
)


def header_metadata(blob: bytes) -> dict[str, str]:
    length = int.from_bytes(blob[:8], "little")
    metadata: dict[str, str] = json.loads(blob[8 : 8 + length]).get("__metadata__", {})
    return metadata


def file_of(url: str, version_id: str, token: str | None) -> dict[str, Any]:
    node = gql(url, FILE, {"id": version_id}, token)["node"]
    assert node is not None
    [file] = node["files"]
    found: dict[str, Any] = file
    return found


def shown(view: dict[str, Any]) -> dict[str, str]:
    return {entry["key"]: entry["value"] for entry in view["headerMetadata"]}


def published_version_with(owner: Owner, body: bytes) -> str:
    """A published version whose one weights file is ``body``; its ID."""
    version_id: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": owner.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    owner.upload_weights(version_id, body)
    owner.mutate(
        "publishModelVersion",
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"versionId": version_id}},
    )
    return version_id


def test_a_newly_listed_key_is_withheld_from_files_already_stored(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    body = make_safetensors({**PUBLIC_METADATA, "my_secret_key": SECRET}, TENSORS)
    with serve(env, cwd=tmp_path) as first:
        # given a published weights file whose header holds my_secret_key, which the
        # instance does not list: everybody sees it, and downloads it
        owner = Owner.sign_up(first.url)
        version_id = published_version_with(owner, body)
        before = file_of(first.url, version_id, None)
        assert shown(before)["my_secret_key"] == SECRET
        assert httpx.get(before["downloadUrl"], timeout=10).content == body

    # when the instance is restarted with my_secret_key listed as training data
    env["LORASHELF_PRIVATE_HEADER_KEYS"] = "my_secret_key"
    with serve(env, cwd=tmp_path) as second:
        owner.url = second.url
        policy = gql(second.url, "{ retentionPolicy { withheldHeaderKeys } }")
        assert "my_secret_key" in policy["retentionPolicy"]["withheldHeaderKeys"]

        # then anonymous viewers no longer see it, in the field or in the bytes
        anonymous = file_of(second.url, version_id, None)
        assert shown(anonymous) == PUBLIC_METADATA
        download = httpx.get(anonymous["downloadUrl"], timeout=10)
        assert download.status_code == 200
        public = download.content
        assert SECRET.encode() not in public and b"my_secret_key" not in public
        assert header_metadata(public) == PUBLIC_METADATA
        # and what they are told about the file describes the bytes they get
        assert (
            anonymous["sha256"]
            == hashlib.sha256(public).hexdigest()
            != (hashlib.sha256(body).hexdigest())
        )
        assert anonymous["sizeBytes"] == len(public)
        # the same tensors all the same
        ours, theirs = load(body), load(public)
        assert ours.keys() == theirs.keys()
        assert all(np.array_equal(ours[name], theirs[name]) for name in ours)

        # and the owner still sees it while its window is open, and downloads the original
        mine = file_of(second.url, version_id, owner.token)
        assert mine["withheldKeys"] == ["my_secret_key"]
        assert mine["headerExpiresAt"] is not None
        assert shown(mine)["my_secret_key"] == SECRET
        assert httpx.get(mine["downloadUrl"], timeout=10).content == body


ARCHITECTURE = (
    "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { headerMetadata { key } "
    "architecture { networkModule algo suggestedType } downloadUrl } } } }"
)


def test_a_description_listed_later_takes_what_it_implied_along(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    comment = "trained on zq_private_photos_3391 of my family"
    metadata = {
        "ss_network_module": "lycoris.kohya",
        "ss_network_args": json.dumps({"algo": "locon", "conv_dim": "8"}),
        "modelspec.description": comment,
    }
    body = make_safetensors(metadata, TENSORS)
    with serve(env, cwd=tmp_path) as first:
        # given a published file whose description and network arguments everybody
        # reads (nobody listed them), and the algorithm the architecture derives from them
        owner = Owner.sign_up(first.url)
        version_id = published_version_with(owner, body)
        [before] = gql(first.url, ARCHITECTURE, {"id": version_id})["node"]["files"]
        assert before["architecture"]["algo"] == "locon"
        assert {e["key"] for e in before["headerMetadata"]} == set(metadata)

    # when the instance restarts with both listed as training data
    env["LORASHELF_PRIVATE_HEADER_KEYS"] = "modelspec.description,ss_network_args"
    with serve(env, cwd=tmp_path) as second:
        # then an anonymous viewer reads neither, nor what was derived from them
        [anonymous] = gql(second.url, ARCHITECTURE, {"id": version_id})["node"]["files"]
        assert [e["key"] for e in anonymous["headerMetadata"]] == ["ss_network_module"]
        assert anonymous["architecture"] == {
            "networkModule": "lycoris.kohya",
            "algo": None,
            "suggestedType": "LORA",
        }
        public = httpx.get(anonymous["downloadUrl"], timeout=10).content
        assert comment.encode() not in public and b"locon" not in public
        assert header_metadata(public) == {"ss_network_module": "lycoris.kohya"}
        # and the owner still reads both, and the algorithm, while the window is open
        [mine] = gql(second.url, ARCHITECTURE, {"id": version_id}, owner.token)["node"]["files"]
        assert {e["key"] for e in mine["headerMetadata"]} == set(metadata)
        assert mine["architecture"]["algo"] == "locon"
        assert httpx.get(mine["downloadUrl"], timeout=10).content == body


# The instance lists what the base model and the network's arguments would tell.
LISTED = (
    "ss_sd_model_name,ss_network_args,ss_base_model_version,modelspec.title,modelspec.architecture"
)
LISTED_VALUES = {
    "ss_sd_model_name": "zq_pony_checkpoint_8812.safetensors",
    "ss_network_args": json.dumps({"algo": "locon", "conv_dim": "zq_conv_4417"}),
    "ss_base_model_version": "sdxl_base_v1-0_zq3390",
    "modelspec.title": "zq_title_secret_5521",
    "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
}
# Training-data keys spelled as a person would still read them, and invisible characters.
VARIANTS = {
    "SS_TAG_FREQUENCY": json.dumps({"10_zq_variant_dir": {"zq_variant_tag_7710": 4}}),
    "ss_dataset_dirs ": "zq_trailing_7702",
    "ss_bucket_info\u200b": "zq_zero_width_7704",
    "ｓｓ＿ｒｅｇ＿ｄａｔａｓｅｔ＿ｄｉｒｓ": "zq_fullwidth_7705",
    "Modelspec.Title": "zq_listed_case_7706",
    "my\u2060note": "zq_word_joiner_7708",
}
SHOWN = {"ss_network_module": "lycoris.kohya", "ss_network_dim": "16", "ss_tag frequency": "x"}
EVERYTHING = (
    "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { withheldKeys "
    "headerMetadata { key value } architecture { networkModule networkDim baseModelVersion "
    "modelspecArchitecture algo suggestedBaseModel suggestedType } downloadUrl } } } }"
)


def secrets_held(data: bytes) -> list[str]:
    values = [*LISTED_VALUES.values(), *VARIANTS.values(), "zq_conv_4417", "locon"]
    return [value for value in values if value.encode() in data]


def test_nothing_a_listed_key_implies_nor_a_variant_spelling_reaches_a_stranger(
    tmp_path: Path, env: dict[str, str], settings: Settings
) -> None:
    env["LORASHELF_PRIVATE_HEADER_KEYS"] = LISTED
    body = make_safetensors({**SHOWN, **LISTED_VALUES, **VARIANTS}, TENSORS)
    with serve(env, cwd=tmp_path) as server:
        # given a published file (its dataset private) whose header holds every listed
        # key and training-data keys spelled in other cases, widths, spacing, and with
        # invisible characters
        owner = Owner.sign_up(server.url)
        version_id = published_version_with(owner, body)

        # when a stranger reads it over HTTP, and downloads it
        [anonymous] = gql(server.url, EVERYTHING, {"id": version_id})["node"]["files"]
        public = httpx.get(anonymous["downloadUrl"], timeout=10).content

        # then the architecture says only what the shown keys say
        assert anonymous["architecture"] == {
            "networkModule": "lycoris.kohya",
            "networkDim": 16,
            "baseModelVersion": None,
            "modelspecArchitecture": None,
            "algo": None,
            "suggestedBaseModel": None,
            "suggestedType": "LORA",
        }
        # and neither the metadata nor the bytes hold a listed key or a variant
        assert {e["key"]: e["value"] for e in anonymous["headerMetadata"]} == SHOWN
        assert anonymous["withheldKeys"] is None  # not even which keys exist
        assert header_metadata(public) == SHOWN and secrets_held(public) == []
        assert load(public).keys() == TENSORS.keys()  # a file the reference loads

        # while the owner reads every key, what they imply, and downloads the original
        [mine] = gql(server.url, EVERYTHING, {"id": version_id}, owner.token)["node"]["files"]
        assert sorted(mine["withheldKeys"]) == sorted([*LISTED_VALUES, *VARIANTS])
        assert mine["architecture"]["algo"] == "locon"
        assert mine["architecture"]["suggestedBaseModel"] == "PONY"
        assert httpx.get(mine["downloadUrl"], timeout=10).content == body

        # and the database holds none of it, nor any file as stored (blobs are sealed):
        # those values live only in the original header and the owner's copy of the
        # metadata (two blobs, once decrypted)
        assert [secrets_held(held) for held in database_bytes(settings)] == [
            [] for _ in database_bytes(settings)
        ]
        var = tmp_path / "var"
        stored = contents_now(p for p in var.rglob("*") if p.is_file())
        assert [p for p, data in stored.items() if secrets_held(data)] == []
        plain = {path: blob_plaintext(path) or b"" for path in blob_files(var / "blobs")}
        assert len([path for path, data in plain.items() if secrets_held(data)]) == 2
