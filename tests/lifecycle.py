"""A private dataset's life through a running ``lorashelf serve``, as the end-to-end
retention tests drive it: a draft with its bytes uploaded, published, then waited for
and checked deleted exactly once. Shared by the fault tests (tests/jobs/test_faults.py,
test_redis_hang_e2e.py, test_mass_expiry.py) and the proof run (tests/proof_scenario.py).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import statistics
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from tests.processes import (
    Owner,
    Published,
    finished_tombstone,
    now_utc,
    parse_time,
    wait_for,
)

_names = itertools.count(1)


def unique_zip(size: int = 2000) -> bytes:
    """A small zip archive no other upload has (``size`` characters of random text)."""
    return zip_of({"images/cat.txt": os.urandom(size // 2).hex().encode()[:size]})


def zip_of(files: Mapping[str, bytes], stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def incompressible_zip(size: int) -> bytes:
    """A valid zip archive of about ``size`` bytes of random (incompressible) data."""
    return zip_of({"data.bin": os.urandom(size - 200)}, stored=True)


CREATE_VERSION = (
    "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
    "{ version { id } userErrors { code message } } }"
)
START_DATASET = (
    "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
    "{ dataset { id } uploadUrl userErrors { code message field } } }"
)
PUBLISH = (
    "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
    "{ version { publishedAt trainingDataset { id expiresAt downloadUrl } } "
    "userErrors { code message } } }"
)


def start_dataset(owner: Owner, version_id: str, size: int) -> dict[str, Any]:
    """startDatasetUpload for a private dataset; the raw payload (userErrors included)."""
    payload: dict[str, Any] = owner.gql(
        START_DATASET,
        {
            "i": {
                "versionId": version_id,
                "filename": "data.zip",
                "sizeBytes": size,
                "visibility": "PRIVATE",
                "ownsRights": False,
            }
        },
    )["startDatasetUpload"]
    return payload


def new_version(owner: Owner, model_id: str, name: str | None = None) -> str:
    version_id: str = owner.mutate(
        "createModelVersion",
        CREATE_VERSION,
        {"i": {"modelId": model_id, "name": name or f"v{next(_names)}", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version_id


@dataclass
class Draft:
    """A draft version with a private dataset uploaded (its window is the draft lifetime
    until the version is published)."""

    version_id: str
    dataset_id: str
    body: bytes


def draft(owner: Owner, model_id: str, *, weights: bool = True, body: bytes | None = None) -> Draft:
    version_id = new_version(owner, model_id)
    if weights:
        owner.upload_weights(version_id)
    content = body if body is not None else unique_zip()
    started = start_dataset(owner, version_id, len(content))
    assert started["userErrors"] == [], started["userErrors"]
    put = owner.put(started["uploadUrl"], content, timeout=60)
    assert put.status_code == 200, put.text
    assert put.json()["sha256"] == hashlib.sha256(content).hexdigest()
    return Draft(version_id, started["dataset"]["id"], content)


def publish(owner: Owner, prepared: Draft) -> Published:
    version = owner.mutate(
        "publishModelVersion", PUBLISH, {"i": {"versionId": prepared.version_id}}
    )["version"]
    dataset = version["trainingDataset"]
    assert dataset["id"] == prepared.dataset_id
    assert dataset["expiresAt"] is not None and dataset["downloadUrl"] is not None
    return Published(
        dataset_id=dataset["id"],
        version_id=prepared.version_id,
        published_at=parse_time(version["publishedAt"]),
        expires_at=parse_time(dataset["expiresAt"]),
        download_url=dataset["downloadUrl"],
        body=prepared.body,
    )


def events_of(dataset: Mapping[str, Any]) -> Counter[str]:
    return Counter(event["kind"] for event in dataset["events"])


def deleted_notices(owner: Owner) -> Counter[str]:
    return Counter(
        n["dataset"]["id"]
        for n in owner.notifications()
        if n["kind"] == "DATASET_DELETED" and n["dataset"] is not None
    )


def lateness(dataset: Mapping[str, Any], expires_at: datetime) -> float:
    return (parse_time(dataset["deletedAt"]) - expires_at).total_seconds()


def deletions_late(owner: Owner, published: list[Published], *, within: float) -> list[float]:
    """Wait until every dataset is deleted (until the last window ends, plus ``within``
    seconds and a margin); how late each was deleted, in seconds."""
    if not published:
        return []

    def finished() -> dict[str, dict[str, Any]] | None:
        views = owner.datasets()
        done = all(finished_tombstone(views.get(p.dataset_id) or {"status": None})
                   for p in published)  # fmt: skip
        return views if done else None

    last = max(p.expires_at for p in published)
    views = wait_for(
        finished,
        timeout=max(0.0, (last - now_utc()).total_seconds()) + within + 2,
        interval=0.1,
        what=f"{len(published)} datasets to be DELETED",
    )
    return [lateness(views[p.dataset_id], p.expires_at) for p in published]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"[faults] {name}: (none)"
    return (
        f"[faults] {name}: n={len(values)} min={min(values):.3f}s "
        f"median={statistics.median(values):.3f}s max={max(values):.3f}s"
    )


def assert_deleted_once(
    owner: Owner, published: Sequence[Published | Tracked], *, reason: str = "EXPIRED"
) -> list[dict[str, Any]]:
    """Each dataset a finished tombstone with one DELETED event and one notice; its old
    download URL dead. Returns the tombstones."""
    notices = deleted_notices(owner)
    views = owner.datasets()
    tombstones = []
    for each in published:
        tombstone = views[each.dataset_id]
        assert finished_tombstone(tombstone), tombstone
        assert tombstone["deletionReason"] == reason
        assert tombstone["downloadUrl"] is None
        assert parse_time(tombstone["expiresAt"]) == each.expires_at
        assert events_of(tombstone)["DELETED"] == 1, tombstone["events"]
        assert notices[each.dataset_id] == 1, f"{notices[each.dataset_id]} notices"
        tombstones.append(tombstone)
    for each in published[:3]:
        answer = httpx.get(each.download_url, timeout=10)
        assert answer.status_code == 404, answer.text
    return tombstones


@dataclass
class Tracked:
    """A private dataset with its window, as its owner saw it while it was open."""

    dataset_id: str
    expires_at: datetime
    download_url: str
