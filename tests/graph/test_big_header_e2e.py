"""The largest header lorashelf accepts, uploaded to a real ``lorashelf serve``: it holds
up no other request, the server's memory grows by a stated bound, and reading the
header back costs the same whether a document names it once or thirty times.

Latency is measured against an idle baseline taken in the same run (this machine is
shared and loaded): the bound asserted is the issue's 100 ms on top of the worst
idle wait, with room for the noise of a loaded machine, never the seconds a header
parsed on the event loop takes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from storage.formats.safetensors.header import MAX_HEADER_SIZE, MAX_TENSORS
from storage.headers import INLINE_HEADER_SIZE
from tests.conftest import make_zip
from tests.processes import Owner, Server, gql, serve

pytestmark = pytest.mark.backend_independent(
    reason="a weights header parsed in a child process; its stored metadata is tested on both databases elsewhere"
)

STALL_BOUND = 0.1  # seconds a request may wait behind someone's upload (the bound)
NOISE = 0.25  # what a loaded, shared 2-core machine adds on top, at worst, in a run
MEMORY_BOUND = 5 * MAX_HEADER_SIZE  # serve's growth while the largest header is handled
SECRET = "zq_tag_frequency_secret_6604"


def header_file(*, tensors: int, fill_to: int | None = None, secret: bool = True) -> bytes:
    """A file of ``tensors`` tensors (the costly part of a header to parse), then
    metadata: filling the header to ``fill_to`` bytes if given, half of it withheld
    when ``secret`` (so a public header, a public metadata and an owner's copy are all
    made). One real tensor of 4 bytes is the data."""
    entries = [b'"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}']
    entries += [
        b'"lora_te_text_model_encoder_layers_%d_mlp_fc1.lora_down.weight":'
        b'{"dtype":"F16","shape":[0,768],"data_offsets":[4,4]}' % i
        for i in range(tensors - 1)
    ]
    body = b"{" + b",".join(entries) + b',"__metadata__":'
    skeleton = b'{"ss_tag_frequency":"","ss_output_name":""}}'
    room = 64 if fill_to is None else fill_to - len(body) - len(skeleton)
    withheld = (SECRET if secret else "").ljust(room // 2, "x")
    public = "y" * (room - len(withheld))
    metadata = {"ss_tag_frequency": withheld, "ss_output_name": public}
    body += json.dumps(metadata, separators=(",", ":")).encode() + b"}"
    assert fill_to is None or len(body) == fill_to, len(body)
    return len(body).to_bytes(8, "little") + body + b"\0\0\x80\x3f"


def largest_header_file() -> bytes:
    """A file whose header is exactly MAX_HEADER_SIZE bytes, with nearly as many
    tensors as accepted."""
    return header_file(tensors=MAX_TENSORS - 1000, fill_to=MAX_HEADER_SIZE)


def publish(owner: Owner, version_id: str) -> None:
    owner.mutate(
        "publishModelVersion",
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"versionId": version_id}},
    )


def share_dataset(owner: Owner, version_id: str) -> None:
    """Upload a PUBLIC training dataset to a draft: its file's withheld keys are public."""
    content = make_zip()
    started = owner.mutate(
        "startDatasetUpload",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ uploadUrl userErrors { code message } } }",
        {
            "i": {
                "versionId": version_id,
                "filename": "cats.zip",
                "sizeBytes": len(content),
                "visibility": "PUBLIC",
                "ownsRights": True,
            }
        },
    )
    assert httpx.put(started["uploadUrl"], content=content, timeout=30).status_code == 200


def draft_version(owner: Owner) -> str:
    version_id: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": owner.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version_id


def start_upload(owner: Owner, version_id: str, size: int) -> tuple[str, str]:
    started = owner.mutate(
        "startModelFileUpload",
        "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
        "{ file { id } uploadUrl userErrors { code message } } }",
        {"i": {"versionId": version_id, "filename": "big.safetensors", "sizeBytes": size}},
    )
    return started["file"]["id"], started["uploadUrl"]


class Poller:
    """Asks the server something over and over, from its own thread, noting how long
    each answer took and when it was asked."""

    def __init__(self, ask: Callable[[httpx.Client], None]):
        self.ask = ask
        self.waits: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                self.ask(client)
                self.waits.append((began, time.perf_counter() - began))
                time.sleep(0.005)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def worst(self, start: float, end: float) -> float:
        inside = [wait for began, wait in self.waits if start <= began <= end]
        assert len(inside) >= 5, f"only {len(inside)} requests were made in the window"
        return max(inside)


def pollers(server: Server, token: str) -> tuple[Poller, Poller]:
    def healthz(client: httpx.Client) -> None:
        assert client.get(f"{server.url}/healthz").status_code == 200

    def query(client: httpx.Client) -> None:
        response = client.post(
            f"{server.url}/graphql",
            json={"query": "{ retentionPolicy { notice } models(first: 5) { edges { cursor } } }"},
            headers={"authorization": f"Bearer {token}"},  # signed in: never a cached answer
        )
        assert response.status_code == 200 and "errors" not in response.json()

    return Poller(healthz), Poller(query)


def memory(server: Server) -> tuple[int, int]:
    """(current, peak) resident memory of the serve process, in bytes."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def test_the_largest_header_holds_up_nobody_and_stays_within_its_memory(tmp_path: Path) -> None:
    body = largest_header_file()
    assert len(body) - 12 > INLINE_HEADER_SIZE
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        version_id = draft_version(owner)
        health, query = pollers(server, Owner.sign_up(server.url).token)
        with health, query:
            # given the server answering others while idle (the baseline)
            time.sleep(3)
            idle_end = time.perf_counter()
            _, peak_before = memory(server)
            # when someone uploads a file whose header is the largest accepted
            file_id, url = start_upload(owner, version_id, len(body))
            began = time.perf_counter()
            put = httpx.put(url, content=body, timeout=300)
            ended = time.perf_counter()
            time.sleep(0.5)
        assert put.status_code == 200, put.text
        publish(owner, version_id)
        baseline = max(health.worst(0, idle_end), query.worst(0, idle_end))
        during = max(health.worst(began, ended), query.worst(began, ended))
        # then no request waited more than the bound (beyond the idle baseline) behind it
        assert during <= baseline + STALL_BOUND + NOISE, (
            f"waited {during:.3f}s during the upload ({ended - began:.1f}s), "
            f"{baseline:.3f}s at worst when idle"
        )
        # and the server process grew by less than its stated bound
        _, peak_after = memory(server)
        assert peak_after - peak_before <= MEMORY_BOUND, (peak_before, peak_after)
        # and the file is there, its withheld key withheld from everybody else
        view = gql(
            server.url,
            "query($id: ID!) { node(id: $id) { ... on ModelFile { status sizeBytes "
            "headerMetadata { key } } } }",
            {"id": file_id},
        )["node"]
        assert view["status"] == "AVAILABLE"
        assert [e["key"] for e in view["headerMetadata"]] == ["ss_output_name"]
        print(
            f"largest header: upload {ended - began:.1f}s, worst wait {during:.3f}s "
            f"(idle {baseline:.3f}s), serve grew by {(peak_after - peak_before) >> 20} MiB"
        )


def test_a_header_past_a_limit_is_refused(tmp_path: Path) -> None:
    # (sent whole, as declared: a body of another size is SIZE_MISMATCH before anything
    # is said about its format)
    too_long = ((MAX_HEADER_SIZE + 1).to_bytes(8, "little") + b"{").ljust(
        MAX_HEADER_SIZE + 100, b" "
    )
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        version_id = draft_version(owner)
        for body, declared in (
            (too_long, None),
            (header_file(tensors=MAX_TENSORS + 1), None),
        ):
            _, url = start_upload(owner, version_id, declared or len(body))
            response = httpx.put(url, content=body, timeout=300)
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "HEADER_TOO_LARGE"


READ = "f{n}: node(id: $id) {{ ... on ModelFile {{ headerMetadata {{ key value }} }} }}"


def read_header(server: Server, token: str, file_id: str, aliases: int) -> float:
    document = "query($id: ID!) { " + " ".join(READ.format(n=n) for n in range(aliases)) + " }"
    began = time.perf_counter()
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": document, "variables": {"id": file_id}},
        headers={"authorization": f"Bearer {token}"},  # not the owner; never a cached answer
        timeout=300,
    )
    took = time.perf_counter() - began
    body = response.json()
    assert "errors" not in body, body["errors"]
    assert len(body["data"]) == aliases
    for read in body["data"].values():
        assert [e["key"] for e in read["headerMetadata"]] == ["ss_tag_frequency", "ss_output_name"]
    return took


def test_reading_a_large_header_costs_the_same_for_thirty_aliases(tmp_path: Path) -> None:
    # given a published file whose header is 11 MB of tensors and a training-data key,
    # its dataset PUBLIC (so everybody reads every key): what the issue read thirty
    # times over
    body = header_file(tensors=95_000)
    assert len(body) > 11_000_000
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        version_id = draft_version(owner)
        file_id, url = start_upload(owner, version_id, len(body))
        assert httpx.put(url, content=body, timeout=300).status_code == 200
        share_dataset(owner, version_id)
        publish(owner, version_id)
        # when a document (of somebody else) reads its headerMetadata once, then thirty times
        reader = Owner.sign_up(server.url).token
        once = min(read_header(server, reader, file_id, 1) for _ in range(3))
        thirty = min(read_header(server, reader, file_id, 30) for _ in range(3))
    # then thirty aliases cost about what one does (the header is read once per request)
    print(f"11 MB header: headerMetadata once {once:.3f}s, thirty times {thirty:.3f}s")
    assert thirty <= 3 * once + 0.3, (once, thirty)


def test_a_header_sent_slowly_holds_up_no_other_upload(tmp_path: Path) -> None:
    body = header_file(tensors=20_000)  # a 2 MB header: parsed in a child, in turn
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        slow_version, quick_version = draft_version(owner), draft_version(owner)
        _, slow_url = start_upload(owner, slow_version, len(body))
        _, quick_url = start_upload(owner, quick_version, len(body))
        half_sent, resume = threading.Event(), threading.Event()

        def trickle() -> Iterator[bytes]:
            yield body[: len(body) // 2]  # half the header, then nothing for a while
            half_sent.set()
            resume.wait(60)
            yield body[len(body) // 2 :]

        answers: list[int] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                httpx.put(slow_url, content=trickle(), timeout=120).status_code
            )
        )
        slow.start()
        try:
            # given someone sending a large header slowly
            assert half_sent.wait(30)
            time.sleep(1)
            # when another upload with a large header arrives meanwhile
            began = time.perf_counter()
            quick = httpx.put(quick_url, content=body, timeout=120)
            took = time.perf_counter() - began
        finally:
            resume.set()
            slow.join(120)
        # then it is parsed and stored without waiting for the slow one
        assert quick.status_code == 200, quick.text
        assert took < 20, took
        assert answers == [200]
