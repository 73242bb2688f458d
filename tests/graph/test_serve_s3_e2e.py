"""End to end on an S3-compatible store: a real `lorashelf serve` with
LORASHELF_BLOB_URL=s3://... (moto's server), a private dataset and a weights file
uploaded, downloaded with a Range through lorashelf, then expired, and finally the model
deleted: nothing of them is left in the bucket, no version and no delete marker."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import make_safetensors
from tests.processes import (
    Owner,
    S3Server,
    serve,
    wait_for,
    wait_for_deletion,
    zip_bytes,
)

RETENTION = 4  # seconds a private dataset is kept after publishing

FILE = (
    "query($id: ID!) { node(id: $id) { ... on ModelFile { id sizeBytes withheldKeys "
    "headerErasedAt downloadUrl } } }"
)


def test_serve_keeps_bytes_in_s3_and_leaves_none_after_expiry_and_deletion(
    tmp_path: Path, s3: S3Server
) -> None:
    bucket = s3.new_bucket()
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_BLOB_URL": f"s3://{bucket}/lorashelf",
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": "1s",
        "LORASHELF_SWEEP_INTERVAL": "30s",
        **s3.env,
    }
    with serve(env, cwd=tmp_path) as server:
        # given a version with a weights file whose header holds training data, and a
        # private dataset, published
        owner = Owner.sign_up(server.url)
        model_id = owner.create_model("Herons")
        version_id = owner.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        weights = make_safetensors({"ss_tag_frequency": json.dumps({"heron": 12})})
        file_id = owner.upload_weights(version_id, weights)
        body = zip_bytes({f"herons/{n}.txt": bytes([65 + n]) * 3000 for n in range(8)})
        started = owner.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id } uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "herons.zip",
                    "sizeBytes": len(body),
                    "visibility": "PRIVATE",
                    "ownsRights": False,
                }
            },
        )
        assert httpx.put(started["uploadUrl"], content=body, timeout=10).status_code == 200
        dataset_id = started["dataset"]["id"]
        owner.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )
        # the bytes are in the bucket, under the prefix: the dataset, and the file's
        # data, original header, public header and the owner's copy of its metadata
        stored = s3.everything_in(bucket)
        assert len(stored) == 5 and all(name.startswith("lorashelf/") for name in stored)
        # and nothing is kept locally: the upload spool is empty, there is no blob directory
        assert list((tmp_path / "var" / "spool").iterdir()) == []
        assert not (tmp_path / "var" / "blobs").exists()

        # when the owner downloads a range of each through lorashelf
        dataset = owner.dataset(dataset_id)
        part = httpx.get(dataset["downloadUrl"], headers={"Range": "bytes=100-4099"}, timeout=10)
        assert part.status_code == 206 and part.content == body[100:4100]
        whole = httpx.get(dataset["downloadUrl"], timeout=10)
        assert whole.status_code == 200 and whole.content == body
        file = owner.gql(FILE, {"id": file_id})["node"]
        assert file["withheldKeys"] == ["ss_tag_frequency"]
        tail = httpx.get(
            file["downloadUrl"], headers={"Range": f"bytes={len(weights) - 64}-"}, timeout=10
        )
        assert tail.status_code == 206 and tail.content == weights[-64:]

        # then when the window ends the dataset is deleted, and with it the original header
        tombstone = wait_for_deletion(owner, dataset_id, timeout=RETENTION + 6)
        assert tombstone["deletionReason"] == "EXPIRED"
        wait_for(
            lambda: owner.gql(FILE, {"id": file_id})["node"]["headerErasedAt"],
            timeout=5,
            what="the withheld header keys to be erased",
        )
        # only the public weights file is left: its data and public header
        assert len(s3.everything_in(bucket)) == 2
        assert httpx.get(dataset["downloadUrl"], timeout=10).status_code == 404

        # and when the owner deletes the model, nothing at all is left in the bucket
        owner.mutate(
            "deleteModel",
            "mutation($i: DeleteModelInput!) { deleteModel(input: $i) "
            "{ model { id } userErrors { code message } } }",
            {"i": {"modelId": model_id}},
        )
        assert s3.everything_in(bucket) == []
        assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
