"""The README's walk-through, run exactly as written: its code blocks are read from
README.md in order and executed against the server its first block starts, so the
walk-through can never drift from what lorashelf does.

- The first block (``... bash scripts/serve``) is run as written, plus ``--port`` (a
  free one: several test runs share the machine) and a data dir of the test's own.
- GraphQL blocks are sent as GraphiQL would send them, one operation at a time, with the
  token step 1 says to put in the *Headers* tab, and the output of the shell block
  before it as the *Variables* tab when the operation declares variables. Step 6's
  query is sent as the owner and anonymously, as its prose says.
- Shell blocks run in bash, in a directory of the test's own holding the repository's
  ``scripts/`` (the README runs them in the repository).
- The ``<placeholders>`` are filled from the answers before them; one the test does not
  know fails it (the walk-through changed: teach the test what it means).

Then the test waits for the window to end and runs step 7's query again: the promise
the walk-through describes (reminders, deletion at ``expiresAt``, the tombstone).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse

from tests.processes import ROOT, child_env, free_port, wait_until_healthy

pytestmark = pytest.mark.backend_independent(
    reason="the README's walk-through as written (the API beneath it is tested on both databases)"
)

README = ROOT / "README.md"


@dataclass(frozen=True)
class Block:
    language: str
    code: str


def walk_through() -> list[Block]:
    """The code blocks of the README's "Walk-through" section, in order."""
    text = README.read_text()
    start = text.index("\n## Walk-through")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    fence = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.M | re.S)
    return [Block(m.group(2), textwrap.dedent(m.group(3))) for m in fence.finditer(section)]


@dataclass
class Walk:
    """What the walk-through's reader knows after each step."""

    url: str
    work: Path
    token: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    filled: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    expires_at: datetime | None = None
    step_seven: str | None = None
    dataset_url: str | None = None

    def fill(self, code: str) -> str:
        """The block with its placeholders filled in, as the reader does."""
        for name in set(re.findall(r"<([^<>\n]+)>", code)):
            assert name in self.filled, (
                f"the README's walk-through uses <{name}>, which this test does not know: "
                "the walk-through changed; say here where its value comes from"
            )
            code = code.replace(f"<{name}>", self.filled[name])
        return code

    def graphql(self, code: str, *, anonymous: bool = False) -> dict[str, Any]:
        headers = (
            {} if anonymous or self.token is None else {"Authorization": f"Bearer {self.token}"}
        )
        answer = httpx.post(
            f"{self.url}/graphql",
            json={"query": code, "variables": self.variables if "$" in code else {}},
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        for payload in data.values():
            if isinstance(payload, dict) and "userErrors" in payload:
                assert payload["userErrors"] == [], payload
        return data

    def shell(self, code: str) -> str:
        done = subprocess.run(
            ["bash", "-e", "-c", code],
            cwd=self.work,
            env=child_env({}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
        return done.stdout


def operations(code: str) -> list[str]:
    """Each operation of a GraphQL block, as written (GraphiQL runs one at a time)."""
    document = parse(code)
    spans = [d.loc for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return [code[loc.start : loc.end] for loc in spans if loc is not None]


def learn(walk: Walk, operation: str, data: dict[str, Any]) -> None:
    """What the reader takes from an answer (and what the walk-through says it shows)."""
    if "signUp" in data:
        walk.token = data["signUp"]["token"]
    if "retentionPolicy" in data:
        policy = data["retentionPolicy"]
        assert policy["privateRetentionSeconds"] == 60 and policy["reminderOffsetsSeconds"] == [
            40,
            20,
        ]
    if "createModel" in data:
        walk.filled["model id"] = data["createModel"]["model"]["id"]
    if "createModelVersion" in data:
        walk.filled["version id"] = data["createModelVersion"]["version"]["id"]
    for name in ("startModelFileUpload", "startDatasetUpload"):
        if name in data:
            url = data[name]["uploadUrl"]
            assert url.startswith(f"{walk.url}/uploads/"), url  # absolute: curl takes it
            walk.filled["uploadUrl"] = url
    if "publishModelVersion" in data:
        version = data["publishModelVersion"]["version"]
        assert version["status"] == "PUBLISHED"
        walk.expires_at = datetime.fromisoformat(version["trainingDataset"]["expiresAt"])
    if "model" in data:
        (version,) = data["model"]["versions"]
        (file,) = version["files"]
        assert version["trainingDataset"]["visibility"] == "PRIVATE"
        assert file["publicSha256"] != file["sha256"]  # the owner's is the original's
        walk.filled["owner's downloadUrl"] = file["downloadUrl"]
        walk.dataset_url = version["trainingDataset"]["downloadUrl"]
        # "then without the header (anonymous)"
        anonymous = walk.graphql(operation, anonymous=True)["model"]
        (theirs,) = anonymous["versions"]
        assert theirs["trainingDataset"] is None
        (public,) = theirs["files"]
        keys = {e["key"] for e in public["headerMetadata"]}
        assert "ss_tag_frequency" not in keys and "ss_dataset_dirs" not in keys
        assert public["sha256"] == public["publicSha256"] == file["publicSha256"]
        assert public["autoV3"] == file["autoV3"]
        walk.filled["anonymous downloadUrl"] = public["downloadUrl"]
    if "viewer" in data:
        walk.step_seven = operation
        (dataset,) = [e["node"] for e in data["viewer"]["trainingDatasets"]["edges"]]
        assert dataset["filename"] == "cats.zip" and dataset["status"] == "AVAILABLE"


def test_the_readme_walk_through_runs_as_written(tmp_path: Path) -> None:
    blocks = walk_through()
    start, rest = blocks[0], blocks[1:]
    assert start.language == "sh" and "bash scripts/serve" in start.code, start
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    (work / "scripts").symlink_to(ROOT / "scripts")
    walk = Walk(url=f"http://127.0.0.1:{port}", work=work)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", f"{start.code.strip()} --port {port}"],
            cwd=ROOT,
            env=child_env({"LORASHELF_DATA_DIR": str(tmp_path / "var")}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(walk.url, server, timeout=180, log=log)
        for block in rest:
            code = block.code.replace("http://127.0.0.1:8000", walk.url)
            if block.language == "graphql":
                for operation in operations(code):
                    filled = walk.fill(operation)
                    learn(walk, filled, walk.graphql(filled))
            elif block.language == "sh":
                code = walk.fill(code)
                output = walk.shell(code)
                run_shell_checks(walk, code, output)
            else:
                raise AssertionError(f"a {block.language} block in the walk-through: run it how?")
        assert walk.expires_at is not None and walk.step_seven is not None

        # then, as step 7 says: reminders, and at expiresAt the dataset is gone
        time.sleep(max(0.0, (walk.expires_at - datetime.now(UTC)).total_seconds()) + 3)
        viewer = walk.graphql(walk.step_seven)["viewer"]
        (dataset,) = [e["node"] for e in viewer["trainingDatasets"]["edges"]]
        assert (dataset["status"], dataset["deletionReason"]) == ("DELETED", "EXPIRED")
        kinds = sorted(e["node"]["kind"] for e in viewer["notifications"]["edges"])
        assert kinds == ["DATASET_DELETED", "DATASET_EXPIRING", "DATASET_EXPIRING"], kinds
        # and the dataset's download URL stopped working
        assert walk.dataset_url is not None
        assert httpx.get(walk.dataset_url, timeout=10).status_code == 404
        # and the owner, too, now downloads the public weights file
        mine = httpx.get(walk.filled["owner's downloadUrl"], timeout=10)
        assert mine.content == (work / "public.safetensors").read_bytes()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def run_shell_checks(walk: Walk, code: str, output: str) -> None:
    """What the reader learns from a shell block, and what the README says they see."""
    stripped = output.strip()
    if stripped.startswith("{"):
        answer = json.loads(stripped)
        if "size" in answer:  # "paste its output into GraphiQL's Variables tab"
            walk.variables = answer
        else:  # a PUT's answer
            assert answer["status"] == "AVAILABLE", answer
    if "sha256sum" in code:
        sums = dict(reversed(line.split()) for line in output.splitlines())
        assert sums["mine.safetensors"] == sums["cats.safetensors"]  # "identical"
        assert sums["public.safetensors"] != sums["cats.safetensors"]
    if "samples.py" in code:
        assert (walk.work / "cats.safetensors").exists() and (walk.work / "cats.zip").exists()
