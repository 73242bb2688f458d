"""A body that does not match the declared size is refused the same way for every kind
of upload (weights files and datasets, valid content or not): ``SIZE_MISMATCH``, 413
for a longer body (as soon as it passes the size), 400 for a shorter one, before
anything is said about the format. Sent with curl to a real server, as the README does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_safetensors
from tests.processes import Owner, serve, zip_bytes

pytestmark = pytest.mark.backend_independent(
    reason="an upload's size and format checks; the records they leave are tested on both databases in test_uploads"
)

START = {
    "file": (
        "startModelFileUpload",
        "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
        "{ uploadUrl userErrors { code message } } }",
        "cats.safetensors",
    ),
    "dataset": (
        "startDatasetUpload",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ uploadUrl userErrors { code message } } }",
        "cats.zip",
    ),
}


def bodies() -> dict[tuple[str, str], bytes]:
    return {
        ("file", "valid"): make_safetensors({"ss_network_dim": "8"}),
        ("file", "pickle"): b"\x80\x04\x95" + b"\x00" * 2000,  # a pickled checkpoint
        ("file", "truncated header"): make_safetensors()[:40],
        ("dataset", "valid"): zip_bytes({"images/cat.txt": b"meow" * 500}),
        ("dataset", "not a zip"): b"hello world" * 100,
    }


def put(url: str, path: Path) -> tuple[int, dict[str, str]]:
    out = subprocess.run(
        ["curl", "-sS", "-X", "PUT", "--data-binary", f"@{path}", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=30,
    ).stdout.decode()
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


def start(owner: Owner, version_id: str, kind: str, size: int) -> str:
    name, mutation, filename = START[kind]
    extra = {"visibility": "PRIVATE"} if kind == "dataset" else {}
    url: str = owner.mutate(
        name,
        mutation,
        {"i": {"versionId": version_id, "filename": filename, "sizeBytes": size, **extra}},
    )["uploadUrl"]
    return url


def new_version(owner: Owner) -> str:
    version: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": owner.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version


@pytest.mark.parametrize("off_by", [1, -1], ids=["declared-larger", "declared-smaller"])
def test_a_wrong_size_is_size_mismatch_for_every_kind_of_upload(
    tmp_path: Path, off_by: int
) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url, "alice")
        for (kind, content), body in bodies().items():
            # given a body on disk, and an upload declared one byte off its size
            path = tmp_path / f"{kind}-{content}.bin"
            path.write_bytes(body)
            url = start(owner, new_version(owner), kind, len(body) + off_by)
            # when curl sends it
            status, answer = put(url, path)
            # then the answer is the size's, whatever the content is
            expected = 400 if off_by > 0 else 413
            assert (status, answer["error"]) == (expected, "SIZE_MISMATCH"), (kind, content, answer)
            assert "declared" in answer["message"]


def test_with_the_right_size_the_format_is_judged(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url, "alice")
        expected = {
            ("file", "valid"): (200, None),
            ("file", "pickle"): (415, "NOT_SAFETENSORS"),
            ("file", "truncated header"): (422, None),
            ("dataset", "valid"): (200, None),
            ("dataset", "not a zip"): (415, "NOT_A_ZIP"),
        }
        for (kind, content), body in bodies().items():
            path = tmp_path / f"{kind}-{content}.bin"
            path.write_bytes(body)
            url = start(owner, new_version(owner), kind, len(body))
            status, answer = put(url, path)
            want_status, want_code = expected[(kind, content)]
            assert status == want_status, (kind, content, answer)
            if want_code is not None:
                assert answer["error"] == want_code
            if status != 200:
                assert answer["error"] != "SIZE_MISMATCH"


def test_refused_uploads_leave_nothing_behind(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        # given alice's draft with one weights file that arrived
        owner = Owner.sign_up(server.url, "alice")
        version_id = new_version(owner)
        good = tmp_path / "good.safetensors"
        good.write_bytes(bodies()[("file", "valid")])
        assert put(start(owner, version_id, "file", good.stat().st_size), good)[0] == 200
        # when five weights files and three datasets are refused (sizes, formats), one
        # after the other for the same version
        refused = []
        for (kind, content), body in bodies().items():
            path = tmp_path / f"{kind}-{content}.bin"
            path.write_bytes(body)
            for off_by in (1,) if content == "valid" else (0, -1):
                url = start(owner, version_id, kind, len(body) + off_by)
                status, answer = put(url, path)
                assert status >= 400, (kind, content, answer)
                refused.append(url)
        assert len(refused) == 8
        # then the version lists only the file that arrived, and no dataset
        version = owner.gql(
            "query($id: ID!) { node(id: $id) { ... on ModelVersion { "
            "files { filename status } trainingDataset { id } } } }",
            {"id": version_id},
        )["node"]
        assert version["files"] == [{"filename": "cats.safetensors", "status": "AVAILABLE"}]
        assert version["trainingDataset"] is None
        assert (
            owner.gql("{ viewer { trainingDatasets { edges { node { id } } } } }")["viewer"][
                "trainingDatasets"
            ]["edges"]
            == []
        )
        # and a refused URL tried again says there is nothing there, and why
        status, answer = put(refused[0], good)
        assert (status, answer["error"]) == (404, "NOT_FOUND")
        assert "refused" in answer["message"]
        # and the next attempt works as a new upload
        data = tmp_path / "data.zip"
        data.write_bytes(bodies()[("dataset", "valid")])
        assert put(start(owner, version_id, "dataset", data.stat().st_size), data)[0] == 200
