"""Download counts against a real ``lorashelf serve``, with real ``curl``: a complete
download by a client that closes the connection counts once; ranged requests through
one link count when the distinct ranges cover the whole file, once; a few bytes at
each end count nothing."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_safetensors
from tests.processes import Owner, gql, serve, wait_for

WEIGHTS = make_safetensors(tensors={"w": np.arange(600_000, dtype=np.float32)})  # 2.4 MB
LINK = "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { downloadUrl } } } }"


def curl(url: str, target: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    executable = shutil.which("curl")
    assert executable is not None, "curl is not installed (apt-get install curl)"
    return subprocess.run(
        [executable, "-s", "-f", "-H", "Connection: close", "-o", str(target), *args, url],
        capture_output=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def site(tmp_path: Path) -> Any:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        owner = Owner.sign_up(server.url)
        model_id = owner.create_model()
        version_id = owner.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        owner.upload_weights(version_id, WEIGHTS)
        owner.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )
        yield server, owner, version_id


def new_link(url: str, version_id: str) -> str:
    """A fresh anonymous download link (each query mints one)."""
    link: str = gql(url, LINK, {"id": version_id})["node"]["files"][0]["downloadUrl"]
    return link


def count(owner: Owner, version_id: str) -> int:
    """The version's download count as its owner reads it (no cache in between)."""
    node = owner.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelVersion { downloadCount } } }",
        {"id": version_id},
    )["node"]
    found: int = node["downloadCount"]
    return found


def test_complete_downloads_by_curl_closing_the_connection_each_count(
    site: Any, tmp_path: Path
) -> None:
    server, owner, version_id = site
    # when five clients download the file with curl, each closing the connection
    for n in range(5):
        target = tmp_path / f"download-{n}"
        curl(new_link(server.url, version_id), target)
        assert target.read_bytes() == WEIGHTS
    # then five downloads are counted (recorded after the last byte, in one transaction)
    wait_for(lambda: count(owner, version_id) == 5, timeout=5, what="five downloads counted")
    assert "Traceback" not in server.log.read_text()


def test_a_link_counts_when_its_ranges_cover_the_file_once(site: Any, tmp_path: Path) -> None:
    server, owner, version_id = site
    size = len(WEIGHTS)
    part = tmp_path / "part"
    # when the first and the last byte are asked through one link (and through four more)
    for _ in range(5):
        link = new_link(server.url, version_id)
        curl(link, part, "-r", "0-0")
        curl(link, part, "-r", f"{size - 1}-{size - 1}")
        assert part.read_bytes() == WEIGHTS[-1:]
    # then nothing is counted: two bytes are not a download
    time.sleep(0.5)  # (a count is recorded just after a response's last byte)
    assert count(owner, version_id) == 0
    # when the rest of the last link's file is asked, in two overlapping ranges
    curl(link, part, "-r", f"1-{size // 2}")
    time.sleep(0.5)
    assert count(owner, version_id) == 0
    curl(link, part, "-r", f"{size // 3}-{size - 2}")
    # then the link's ranges cover the file: one download
    wait_for(lambda: count(owner, version_id) == 1, timeout=5, what="one download counted")
    # when the same link serves the whole file again, then it does not count again
    curl(link, part)
    assert part.read_bytes() == WEIGHTS
    time.sleep(0.5)
    assert count(owner, version_id) == 1


def test_a_download_resumed_where_it_stopped_counts_once(site: Any, tmp_path: Path) -> None:
    server, owner, version_id = site
    target = tmp_path / "resumed"
    link = new_link(server.url, version_id)
    # given a download that stopped half way (the first half saved)
    curl(link, target, "-r", f"0-{len(WEIGHTS) // 2 - 1}")
    # when curl resumes it through the same link (-C -: from the saved size on)
    subprocess.run(
        [
            shutil.which("curl") or "curl",
            "-s",
            "-f",
            "-H",
            "Connection: close",
            "-C",
            "-",
            "-o",
            str(target),
            link,
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    # then the file is whole and counted once
    assert target.read_bytes() == WEIGHTS
    wait_for(lambda: count(owner, version_id) == 1, timeout=5, what="one download counted")
