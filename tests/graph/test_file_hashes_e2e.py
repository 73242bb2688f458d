"""One file, the hashes its viewer can check: the owner's ``sha256``/``sizeBytes`` describe
the file the owner downloads (the original, training-data keys included, as the PUT
answered), with the public file's beside them as ``publicSha256``/``publicSizeBytes``;
everybody else sees the public file under both names. Checked against the bytes each
one downloads with curl from a real server."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import make_safetensors
from tests.processes import Owner, gql, serve, zip_bytes

FILE_FIELDS = "sha256 sizeBytes publicSha256 publicSizeBytes autoV2 downloadUrl"
VERSION = (
    "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { " + FILE_FIELDS + " } } } }"
)
KEYS = {"ss_tag_frequency": '{"cats": {"tabby": 3}}', "ss_network_dim": "8"}


def curl_put(url: str, path: Path) -> Any:
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-X", "PUT", "--data-binary", f"@{path}", url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def download(url: str, to: Path) -> bytes:
    subprocess.run(["curl", "-sS", "--fail", "-o", str(to), url], timeout=30, check=True)
    return to.read_bytes()


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_each_viewer_sees_the_hashes_of_what_they_download(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        # given alice's weights file with training-data keys, uploaded with curl
        alice = Owner.sign_up(server.url, "alice")
        original = make_safetensors(KEYS)
        path = tmp_path / "cats.safetensors"
        path.write_bytes(original)
        version_id = alice.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": alice.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        started = alice.mutate(
            "startModelFileUpload",
            "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
            "{ uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "cats.safetensors",
                    "sizeBytes": len(original),
                }
            },
        )
        put = curl_put(started["uploadUrl"], path)
        # and a private dataset, published
        data = zip_bytes({"images/cat.txt": b"meow" * 100})
        (tmp_path / "cats.zip").write_bytes(data)
        dataset = alice.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "cats.zip",
                    "sizeBytes": len(data),
                    "visibility": "PRIVATE",
                }
            },
        )
        curl_put(dataset["uploadUrl"], tmp_path / "cats.zip")
        alice.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )

        # when the owner, another user and an anonymous visitor look and download
        (mine,) = alice.gql(VERSION, {"id": version_id})["node"]["files"]
        bob = Owner.sign_up(server.url, "bob")
        (bobs,) = bob.gql(VERSION, {"id": version_id})["node"]["files"]
        (anons,) = gql(server.url, VERSION, {"id": version_id})["node"]["files"]
        owner_bytes = download(mine["downloadUrl"], tmp_path / "mine.safetensors")
        bob_bytes = download(bobs["downloadUrl"], tmp_path / "bob.safetensors")
        anon_bytes = download(anons["downloadUrl"], tmp_path / "anon.safetensors")

        # then the owner's sha256/sizeBytes are the original's: what the PUT said and
        # what the owner downloads
        assert owner_bytes == original
        assert mine["sha256"] == put["sha256"] == sha(original)
        assert mine["sizeBytes"] == put["sizeBytes"] == len(original)
        assert mine["autoV2"] == sha(original)[:10]
        # and the public file's are beside them, as the others download it
        assert bob_bytes == anon_bytes != original
        assert mine["publicSha256"] == put["publicSha256"] == sha(anon_bytes)
        assert mine["publicSizeBytes"] == put["publicSizeBytes"] == len(anon_bytes)
        # and everybody else sees only the public file, under both names
        for theirs in (bobs, anons):
            assert theirs["sha256"] == theirs["publicSha256"] == sha(anon_bytes)
            assert theirs["sizeBytes"] == theirs["publicSizeBytes"] == len(anon_bytes)
            assert theirs["autoV2"] == sha(anon_bytes)[:10]
