"""What the erasure tests share: a deployment (local blobs or a versioned S3 bucket, on
the test's database) and everything it keeps at rest, and uploads marked so that a
plaintext byte of them is found wherever it is kept."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storage.blobs.base import read_all
from storage.config.settings import Settings, load_settings
from storage.db import connection as db
from storage.db.key_tables import BlobKey, PlaintextBlob
from tests import processes
from tests.conftest import contents_now, database_contents, make_safetensors
from tests.processes import Owner, S3Server

RETENTION = 6  # seconds: the private window


def configured(env: dict[str, str]) -> Settings:
    """The settings a serve started with ``env`` has (the test's database included)."""
    values = dict(env)
    if processes.test_database_url is not None:
        values.setdefault("LORASHELF_DATABASE_URL", processes.test_database_url())
    return load_settings(values, create=False)


@dataclass
class Deployment:
    """Where a serve keeps things, and everything that is at rest there."""

    env: dict[str, str]
    data_dir: Path
    s3: S3Server | None = None
    bucket: str | None = None
    marks: list[bytes] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return configured(self.env)

    def objects(self) -> dict[str, bytes]:
        """Every stored object (every version of it, on S3), by name."""
        if self.s3 is None:
            root = self.data_dir / "blobs"
            listed = [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts]
            return {str(p.relative_to(root)): data for p, data in contents_now(listed).items()}
        client, found = self.s3.client(), {}
        for version in client.list_object_versions(Bucket=self.bucket).get("Versions", []):
            try:
                body = client.get_object(
                    Bucket=self.bucket, Key=version["Key"], VersionId=version["VersionId"]
                )["Body"].read()
            except client.exceptions.ClientError as exc:
                # deleted between the listing and the read (the server removes what it
                # owes meanwhile): not stored any more
                if exc.response["Error"]["Code"] not in ("NoSuchVersion", "NoSuchKey"):
                    raise
                continue
            found[f"{version['Key']}@{version['VersionId']}"] = body
        return found

    def at_rest(self) -> dict[str, bytes]:
        """Everything kept: every file of the data dir (database, its log, spool, key
        files), the database's rows (PostgreSQL), and every stored object version."""
        listed = [p for p in self.data_dir.rglob("*") if p.is_file()]
        found = {str(p): data for p, data in contents_now(listed).items()}
        if db.is_postgres(self.settings.database_url):
            found["<postgresql rows>"] = database_contents(self.settings)
        found.update({f"<object {k}>": v for k, v in self.objects().items()})
        return found

    def holding(self, *marks: bytes) -> list[str]:
        """Where at rest any of ``marks`` is found."""
        return sorted(
            where for where, data in self.at_rest().items() if any(m in data for m in marks)
        )


def deployment_of(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    """``request.param`` says which: "local" or "s3-versioned"."""
    data_dir = tmp_path / "var"
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": "",
        "LORASHELF_SWEEP_INTERVAL": "1s",
    }
    if request.param == "local":
        return Deployment(env, data_dir)
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.new_bucket(versioning="Enabled")
    env["LORASHELF_BLOB_URL"] = f"s3://{bucket}/blobs"
    return Deployment(env, data_dir, s3, bucket)


# What is uploaded: a dataset, and weights whose header and tensors are marked ----------

DATA_MARK = secrets.token_hex(16).encode()
HEADER_MARK = secrets.token_hex(16)
TENSOR_MARK = secrets.token_hex(16).encode()


def marked_dataset() -> bytes:
    """A zip whose stored (uncompressed) entry holds the mark, over two chunks' worth."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("captions/secret.txt", DATA_MARK * 70_000)
    return buffer.getvalue()


def marked_weights() -> bytes:
    tensor = np.frombuffer(TENSOR_MARK * 64, dtype=np.uint8).reshape(64, 32)
    return make_safetensors(
        {"ss_network_dim": "8", "ss_tag_frequency": json.dumps({"secret": {HEADER_MARK: 3}})},
        {"lora_unet_down.lora_down.weight": tensor},
    )


MARKS = (DATA_MARK * 4, HEADER_MARK.encode(), TENSOR_MARK * 4)


def start_dataset(owner: Owner, version_id: str, size: int) -> dict[str, Any]:
    return owner.mutate(
        "startDatasetUpload",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ dataset { id } uploadUrl userErrors { code message } } }",
        {
            "i": {
                "versionId": version_id,
                "filename": "secret.zip",
                "sizeBytes": size,
                "visibility": "PRIVATE",
                "ownsRights": False,
            }
        },
    )


def new_version(owner: Owner, model_name: str = "Marked") -> str:
    """A new model with one draft version; the version's ID."""
    model_id = owner.create_model(model_name)
    version: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version


def publish(owner: Owner, version_id: str) -> None:
    owner.mutate(
        "publishModelVersion",
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"versionId": version_id}},
    )


@pytest.fixture(params=["local", "s3-versioned"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    """A deployment on local blobs, and one on an S3 bucket that keeps versions."""
    return deployment_of(request, tmp_path)


async def unseal_everything(rt: Any) -> dict[str, bytes]:
    """Turn every stored blob back into what an earlier release stored: its plaintext
    under the same key, no data key, listed in ``plaintext_blobs`` (as migration 0010
    lists them); returns the plaintexts by key."""
    store = rt.blobs.raw
    plain: dict[str, bytes] = {}
    for row in await BlobKey.all():
        plain[row.object_id] = await read_all(rt.blobs, row.object_id)
    for object_id, data in plain.items():
        await store.delete(object_id)
        writer = store.writer(object_id)
        writer.write_sync(data)
        await writer.commit()
        await BlobKey.filter(object_id=object_id).delete()
        await PlaintextBlob.create(object_id=object_id)
    return plain


RECEIPT_FIELDS = "keyDestroyedAt deletionReceipt { payload signature keyId }"


def wait_for_receipt(owner: Owner, dataset_id: str, timeout: float) -> dict[str, Any]:
    """Poll as the owner until the dataset's deletion is finished: its tombstone carries
    the signed receipt (``deletedAt`` alone shows from the claim, when access ended,
    while the key and bytes may still be going). Returns the dataset's tombstone."""
    query = (
        f"query($id: ID!) {{ node(id: $id) {{ ... on TrainingDataset {{ status deletedAt "
        f"deletionReason {RECEIPT_FIELDS} }} }} }}"
    )

    def finished() -> dict[str, Any] | None:
        node: dict[str, Any] = owner.gql(query, {"id": dataset_id})["node"]
        return node if node["deletionReceipt"] is not None else None

    found: dict[str, Any] = processes.wait_for(
        finished, timeout=timeout, interval=0.1, what=f"dataset {dataset_id}'s receipt"
    )
    return found
