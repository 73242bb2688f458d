"""A key newly listed in ``LORASHELF_PRIVATE_HEADER_KEYS`` applies to the weights files
already stored, not only to new uploads: a real ``lorashelf serve`` restarted with the
longer list withholds it from everybody but the owner, in ``headerMetadata`` and in the
bytes of the anonymous download (and the hashes and size describe those bytes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from safetensors.numpy import load

from tests.conftest import make_safetensors
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
