"""Links in answers (``uploadUrl``, ``downloadUrl``) are absolute URLs a client uses as
given: built from LORASHELF_PUBLIC_URL, by default the address ``serve`` listens on,
never from the request's ``Host``. Exercised as the README does: curl with the URL
pasted from the answer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import make_safetensors
from tests.processes import Owner, free_port, gql, serve

START_FILE = (
    "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
    "{ file { id } uploadUrl userErrors { code message } } }"
)
FILES = "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { sha256 downloadUrl } } } }"


def curl(*args: str) -> str:
    done = subprocess.run(
        ["curl", "-sS", "--fail-with-body", *args], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return done.stdout.decode()


def draft_version(owner: Owner) -> str:
    model_id = owner.create_model()
    version: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version


def start_upload(owner: Owner, version_id: str, size: int, host: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {owner.token}"}
    if host is not None:
        headers["Host"] = host
    answer = httpx.post(
        f"{owner.url}/graphql",
        json={
            "query": START_FILE,
            "variables": {
                "i": {"versionId": version_id, "filename": "cats.safetensors", "sizeBytes": size}
            },
        },
        headers=headers,
    ).json()["data"]["startModelFileUpload"]
    assert answer["userErrors"] == [], answer
    return answer


def test_links_are_absolute_for_the_address_serve_listens_on(tmp_path: Path) -> None:
    # given serve with no LORASHELF_PUBLIC_URL, and a weights file on disk
    weights = tmp_path / "cats.safetensors"
    weights.write_bytes(make_safetensors({"ss_network_dim": "8"}))
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url, "alice")
        version_id = draft_version(owner)
        # when an upload URL is asked for, even with a forged Host header
        started = start_upload(owner, version_id, weights.stat().st_size, host="evil.example")
        # then it is an absolute URL on the address serve listens on
        assert started["uploadUrl"].startswith(f"{server.url}/uploads/"), started
        # and the README's command works with it as written
        put = json.loads(curl("-X", "PUT", "--data-binary", f"@{weights}", started["uploadUrl"]))
        assert put["status"] == "AVAILABLE"
        # and the download link is absolute too: curl fetches the very bytes
        (file,) = owner.gql(FILES, {"id": version_id})["node"]["files"]
        assert file["downloadUrl"].startswith(f"{server.url}/downloads/"), file
        curl("-o", str(tmp_path / "mine.safetensors"), file["downloadUrl"])
        assert (tmp_path / "mine.safetensors").read_bytes() == weights.read_bytes()
        # and the banner says where links point and how to change it
        log = server.log.read_text()
    assert "links:" in log and f"{server.url} (the address serve listens on" in log


def test_links_follow_the_configured_public_url(tmp_path: Path) -> None:
    # given serve told it is reached as http://localhost:<port>/ (a proxy's name, say)
    port = free_port()
    public = f"http://localhost:{port}"
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PUBLIC_URL": public + "/"}
    with serve(env, cwd=tmp_path, port=port) as server:
        owner = Owner.sign_up(server.url, "alice")
        version_id = draft_version(owner)
        body = make_safetensors()
        # when an upload URL is asked for with a forged Host
        started = start_upload(owner, version_id, len(body), host="evil.example")
        # then it is built from LORASHELF_PUBLIC_URL, and works from there
        assert started["uploadUrl"].startswith(f"{public}/uploads/"), started
        (tmp_path / "w.safetensors").write_bytes(body)
        put = curl(
            "-X", "PUT", "--data-binary", f"@{tmp_path / 'w.safetensors'}", started["uploadUrl"]
        )
        assert json.loads(put)["status"] == "AVAILABLE"
        anonymous = gql(server.url, "{ retentionPolicy { notice } }")
        assert anonymous["retentionPolicy"]["notice"]
        (file,) = owner.gql(FILES, {"id": version_id})["node"]["files"]
        assert file["downloadUrl"].startswith(f"{public}/downloads/"), file
