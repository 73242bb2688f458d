"""End to end against a real `lorashelf serve` process on loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_safetensors, make_zip
from tests.processes import serve


def gql(
    url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.mark.sqlite_only(
    reason="with no configuration at all the database is the SQLite file serve creates"
)
def test_first_start_with_no_configuration_serves_the_walkthrough(tmp_path: Path) -> None:
    # given an empty directory and no configuration at all
    with serve({}, cwd=tmp_path) as server:
        # then serve created the data dir, the database and a secret key
        var = tmp_path / "var"
        assert (var / "lorashelf.sqlite3").exists()
        assert (var / "secret_key").stat().st_mode & 0o777 == 0o600
        # and GraphiQL opens on a browser GET
        page = httpx.get(f"{server.url}/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()

        # when a creator walks through the README
        alice = gql(
            server.url,
            'mutation { signUp(input: {username: "alice", password: "correct horse battery"}) '
            "{ token } }",
        )["signUp"]["token"]
        model = gql(
            server.url,
            'mutation { createModel(input: {name: "Cats", description: "cat LoRA"}) '
            "{ model { id } } }",
            token=alice,
        )["createModel"]["model"]["id"]
        version = gql(
            server.url,
            "mutation($m: ID!) { createModelVersion(input: "
            '{modelId: $m, name: "v1", baseModel: SDXL_1_0}) { version { id } } }',
            {"m": model},
            alice,
        )["createModelVersion"]["version"]["id"]
        body = make_zip({"a.txt": b"x" * 5000})
        started = gql(
            server.url,
            "mutation($v: ID!, $s: BigInt!) { startDatasetUpload(input: {versionId: $v, "
            'filename: "cats.zip", sizeBytes: $s, visibility: PRIVATE}) '
            "{ dataset { id } uploadUrl userErrors { code } } }",
            {"v": version, "s": len(body)},
            alice,
        )["startDatasetUpload"]
        put = httpx.put(started["uploadUrl"], content=body)
        assert put.status_code == 200
        weights = make_safetensors()
        file = gql(
            server.url,
            "mutation($v: ID!, $s: BigInt!) { startModelFileUpload(input: {versionId: $v, "
            'filename: "cats.safetensors", sizeBytes: $s}) { uploadUrl } }',
            {"v": version, "s": len(weights)},
            alice,
        )["startModelFileUpload"]
        assert httpx.put(file["uploadUrl"], content=weights).status_code == 200
        published = gql(
            server.url,
            "mutation($v: ID!) { publishModelVersion(input: {versionId: $v}) "
            "{ version { publishedAt trainingDataset { sha256 expiresAt downloadUrl } } } }",
            {"v": version},
            alice,
        )["publishModelVersion"]["version"]

        # then the owner downloads exactly the bytes, and nobody else sees the dataset
        dataset = published["trainingDataset"]
        assert dataset["sha256"] == hashlib.sha256(body).hexdigest()
        assert dataset["expiresAt"] is not None
        download = httpx.get(dataset["downloadUrl"])
        assert download.status_code == 200 and download.content == body
        anonymous = gql(
            server.url,
            "query($id: ID!) { node(id: $id) { ... on ModelVersion { trainingDataset { id } } } }",
            {"id": version},
        )
        assert anonymous == {"node": {"trainingDataset": None}}
        assert gql(
            server.url, "query($id: ID!) { node(id: $id) { id } }", {"id": started["dataset"]["id"]}
        ) == {"node": None}
