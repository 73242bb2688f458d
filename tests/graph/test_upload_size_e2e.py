"""A weights file's body of another length than declared is a size mismatch, whatever its
header says: uploaded with curl to a real ``lorashelf serve``.

The header tells how long the file should be (where its tensors end), and so does the
declared ``sizeBytes``. A body shorter than declared answers 400 ``SIZE_MISMATCH`` and
one longer 413 ``SIZE_MISMATCH``, even when the header, compared with the declared
size, would have said the tensors end early (``TRAILING_DATA``), late (``TRUNCATED``)
or that the header does not fit (``HEADER_TOO_LARGE``): those are answered only for a
body of exactly the declared size. Nothing is kept either way, and the file waits for a
new upload URL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_files, make_safetensors
from tests.processes import Owner, serve

pytestmark = pytest.mark.backend_independent(
    reason="an upload's size and format checks; the records they leave are tested on both databases in test_uploads"
)

VALID = make_safetensors(
    {"ss_network_dim": "8", "ss_tag_frequency": '{"cats": {"cat": 3}}'},
    {"lora_unet_down.lora_down.weight": np.arange(256, dtype=np.float16).reshape(16, 16)},
)
HEADER_END = 8 + int.from_bytes(VALID[:8], "little")
DATA = len(VALID) - HEADER_END  # the tensors' bytes

# name, body sent, sizeBytes declared, HTTP status and code expected
CASES: list[tuple[str, bytes, int, int, str]] = [
    # shorter than declared: the header alone would say "the tensors end early"
    ("a whole valid file, declared longer", VALID, len(VALID) + 10, 400, "SIZE_MISMATCH"),
    ("a file with bytes after its tensors, declared longer", VALID + b"\0" * 4, len(VALID) + 10, 400, "SIZE_MISMATCH"),
    # shorter than declared: the declared size would hold fewer bytes than the tensors need
    ("a file cut in its data, declared shorter than its tensors", VALID[:-20], len(VALID) - 10, 400, "SIZE_MISMATCH"),
    # longer than declared: the declared size cannot hold the header
    ("a whole valid file, declared too small for its header", VALID, HEADER_END - 1, 413, "SIZE_MISMATCH"),
    ("a whole valid file, declared shorter", VALID, len(VALID) - 1, 413, "SIZE_MISMATCH"),
    # the body is the declared size: now what the header says is the answer
    ("bytes after the tensors", VALID + b"\0" * 4, len(VALID) + 4, 422, "TRAILING_DATA"),
    ("the tensors past the end", VALID[:-4], len(VALID) - 4, 422, "TRUNCATED"),
    ("the header past the end", VALID[: HEADER_END - 1], HEADER_END - 1, 422, "HEADER_TOO_LARGE"),
]  # fmt: skip


def put_with_curl(url: str, body: bytes, workdir: Path) -> tuple[int, dict[str, str]]:
    """``curl -X PUT --data-binary @file URL``, as the README shows: status and JSON."""
    path = workdir / "upload.safetensors"
    path.write_bytes(body)
    done = subprocess.run(
        ["curl", "-sS", "-X", "PUT", "--data-binary", f"@{path}", "-w", "\n%{http_code}", url],
        capture_output=True,
        check=True,
        timeout=30,
    )
    text, _, status = done.stdout.decode().rpartition("\n")
    answer: dict[str, str] = json.loads(text)
    return int(status), answer


def test_a_body_of_another_length_than_declared_is_a_size_mismatch(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    with serve(env, cwd=tmp_path) as server:
        # given a draft version
        owner = Owner.sign_up(server.url)
        version_id = owner.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": owner.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        answers, file_ids = {}, []
        for name, body, declared, _, _ in CASES:
            # when a file is declared as one size and a body of this shape is sent
            started = owner.mutate(
                "startModelFileUpload",
                "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
                "{ file { id } uploadUrl userErrors { code message } } }",
                {
                    "i": {
                        "versionId": version_id,
                        "filename": "lora.safetensors",
                        "sizeBytes": declared,
                    }
                },
            )
            status, answer = put_with_curl(started["uploadUrl"], body, tmp_path)
            answers[name] = (status, answer["error"])
            file_ids.append(started["file"]["id"])
        # then each answers what its body's length says first, what its header says next
        assert answers == {name: (status, code) for name, _, _, status, code in CASES}
        # and nothing is kept: no file record (a new upload starts afresh), no blob
        files = owner.gql(
            "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { id status } } } }",
            {"id": version_id},
        )["node"]["files"]
        assert not {f["id"] for f in files} & set(file_ids), files
        assert blob_files(tmp_path / "var" / "blobs") == set()
