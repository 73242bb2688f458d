"""Downloads in flight against a real ``lorashelf serve``, read by a slow client over a
real socket: every end of access stops every stream of the object within a second
(what the socket buffers already held still arrives), and a reader below the minimum
rate is cut."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_safetensors
from tests.processes import Owner, Server, gql, serve, wait_for
from tests.reader import SlowReader

SIZE = 40_000_000
RATE = 1_000_000  # the reader's bytes a second: the download would take 40 s
BOUND = 1.0  # seconds from the end of access to the stream's end, at most
MUTATE = "mutation($i: {input}!) {{ {name}(input: $i) {{ userErrors {{ code message }} }} }}"


def socket_buffers() -> int:
    """The most a loopback connection's socket buffers can hold: the sender's largest
    send buffer and the reader's receive buffer (64 KiB, doubled by the kernel)."""
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return wmem + 2 * 64 * 1024 + 64 * 1024  # and the server's own write buffer


def large_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("noise.bin", os.urandom(SIZE))
    return buffer.getvalue()


def mutate(owner: Owner, name: str, **fields: Any) -> None:
    input_type = name[0].upper() + name[1:] + "Input"
    owner.mutate(name, MUTATE.format(input=input_type, name=name), {"i": fields})


def set_visibility(owner: Owner, dataset_id: str, visibility: str) -> None:
    mutate(
        owner,
        "setDatasetVisibility",
        datasetId=dataset_id,
        visibility=visibility,
        ownsRights=visibility == "PUBLIC",
    )


def cut_at(server: Server) -> datetime:
    """When serve cut the stream (its JSON log line, UTC)."""
    for line in server.log.read_text().splitlines():
        if line.startswith("{") and "download cut" in line:
            record = json.loads(line)
            return datetime.fromisoformat(record["time"])
    raise AssertionError("serve logged no cut")


def assert_stopped_within_the_bound(
    server: Server, reader: SlowReader, ended: float, ended_wall: datetime
) -> None:
    """The stream stopped short, within ``BOUND`` of the end of access (serve's own
    clock of the cut), and what arrived after it is what the socket buffers held plus
    at most ``BOUND`` of reading."""
    reader.join(60)
    assert reader.error is None, reader.error
    assert reader.content_length is not None and reader.received < reader.content_length
    assert (cut_at(server) - ended_wall).total_seconds() <= BOUND
    after = reader.received - reader.received_by(ended)
    assert after <= socket_buffers() + RATE * BOUND, after
    assert "Traceback" not in server.log.read_text()


def start_reading(url: str) -> SlowReader:
    reader = SlowReader(url, rate=RATE)
    reader.start()
    wait_for(lambda: reader.received >= 2_000_000, timeout=30, what="2 MB read")
    return reader


def now() -> tuple[float, datetime]:
    return time.monotonic(), datetime.now(UTC)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_LOG_FORMAT": "json"}
    with serve(env, tmp_path) as running:
        yield running


ENDS_FOR_THE_OWNER: dict[str, Callable[[Owner, Any], None]] = {
    "deleteDataset": lambda owner, p: mutate(owner, "deleteDataset", datasetId=p.dataset_id),
    "logOut": lambda owner, p: owner.gql("mutation { logOut { ok } }"),
    "deleteModelVersion": lambda owner, p: mutate(
        owner, "deleteModelVersion", versionId=p.version_id
    ),
}


@pytest.mark.parametrize("end", list(ENDS_FOR_THE_OWNER))
def test_the_owners_link_stops_streaming_when_access_ends(server: Server, end: str) -> None:
    # given an owner downloading their 40 MB private dataset, slowly, through their link
    owner = Owner.sign_up(server.url)
    published = owner.publish_private_dataset(body=large_zip())
    reader = start_reading(published.download_url)
    # when access ends: the dataset deleted, the owner signed out, the version deleted
    ENDS_FOR_THE_OWNER[end](owner, published)
    ended, ended_wall = now()
    # then the stream stops within a second
    assert_stopped_within_the_bound(server, reader, ended, ended_wall)


def test_an_anonymous_reader_is_cut_when_the_dataset_is_made_private(server: Server) -> None:
    # given a public dataset downloaded by an anonymous reader, slowly
    owner = Owner.sign_up(server.url)
    published = owner.publish_private_dataset(body=large_zip())
    set_visibility(owner, published.dataset_id, "PUBLIC")
    link = gql(
        server.url,
        "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
        {"id": published.dataset_id},
    )["node"]["downloadUrl"]
    reader = start_reading(link)
    # when the owner makes it private again
    set_visibility(owner, published.dataset_id, "PRIVATE")
    ended, ended_wall = now()
    # then the anonymous stream stops within a second
    assert_stopped_within_the_bound(server, reader, ended, ended_wall)


def test_an_anonymous_reader_of_a_weights_file_is_cut_when_the_model_is_deleted(
    server: Server,
) -> None:
    # given a published 40 MB weights file downloaded by an anonymous reader, slowly
    owner = Owner.sign_up(server.url)
    model_id = owner.create_model()
    version_id = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    weights = make_safetensors(tensors={"w": np.zeros(SIZE // 4, dtype=np.float32)})
    owner.upload_weights(version_id, weights)
    mutate(owner, "publishModelVersion", versionId=version_id)
    link = gql(
        server.url,
        "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { downloadUrl } } } }",
        {"id": version_id},
    )["node"]["files"][0]["downloadUrl"]
    reader = start_reading(link)
    # when the owner deletes the model
    mutate(owner, "deleteModel", modelId=model_id)
    ended, ended_wall = now()
    # then the stream stops within a second
    assert_stopped_within_the_bound(server, reader, ended, ended_wall)


def test_a_reader_below_the_minimum_rate_is_cut(tmp_path: Path) -> None:
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_DOWNLOAD_MIN_RATE": "1MiB",
        "LORASHELF_DOWNLOAD_GRACE": "1s",
    }
    with serve(env, tmp_path) as server:
        # given an owner's download whose reader stops reading after 1 MB
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset(body=large_zip())
        reader = SlowReader(published.download_url, rate=RATE, stall_after=1_000_000)
        reader.start()
        # when it stays stalled: then serve cuts it (the socket buffers' worth of bytes
        # it could hand on gave it a few seconds' credit at 1 MiB/s)
        wait_for(
            lambda: (
                "download cut: its reader fell below 1048576 bytes a second"
                in server.log.read_text()
            ),
            timeout=30,
            what="the slow reader's cut",
        )
        reader.resume()
        reader.join(30)
    # and the reader got the bytes sent until then, not the file
    assert reader.content_length is not None and reader.received < reader.content_length
