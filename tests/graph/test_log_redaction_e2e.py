"""Signed links never reach the logs: an attacker who reads a real ``lorashelf serve``'s
log (text or JSON lines) finds no download or upload token to replay."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.processes import Owner, serve, wait_for

pytestmark = pytest.mark.backend_independent(reason="what reaches the logs")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_download_link_cannot_be_replayed_from_the_log(tmp_path: Path, log_format: str) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_LOG_FORMAT": log_format}
    with serve(env, tmp_path) as server:
        # given an owner who uploads and downloads a private dataset through signed links
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        download = httpx.get(published.download_url, timeout=10)
        assert download.status_code == 200 and download.content == published.body
        token = urlsplit(published.download_url).path.rsplit("/", 1)[1]
        wait_for(
            lambda: "/downloads/" in server.log.read_text(),
            timeout=5,
            what="the download's access log line",
        )
        log = server.log.read_text()
        # when an attacker who can read the log replays every download path in it,
        # with no credentials
        paths = set(re.findall(r"/(?:downloads|uploads)/[^\s\"' ]*", log))
        answers = {path: httpx.get(f"{server.url}{path}").status_code for path in paths}
    # then the requests are there, but no token: nothing replays
    assert any(path.startswith("/downloads/") for path in paths)
    assert any(path.startswith("/uploads/") for path in paths)
    assert token not in log
    assert all(status != 200 for status in answers.values()), answers
    assert "/downloads/[redacted]" in log and "/uploads/[redacted]" in log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_password_sent_in_a_graphql_get_never_reaches_the_log(
    tmp_path: Path, log_format: str
) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_LOG_FORMAT": log_format}
    with serve(env, tmp_path) as server:
        owner = Owner.sign_up(server.url)
        # when a careless client signs in with GET, the password in the document and
        # in the variables (and a persisted query's hash, which is no secret)
        inline = (
            f'mutation {{ logIn(input: {{username: "{owner.username}", '
            'password: "hunter2 in the document"}) { token } }'
        )
        through_variables = "mutation LogIn($i: LogInInput!) { logIn(input: $i) { token } }"
        refused = [
            httpx.get(f"{server.url}/graphql", params={"query": inline}),
            httpx.get(
                f"{server.url}/graphql",
                params={
                    "query": through_variables,
                    "variables": json.dumps(
                        {"i": {"username": owner.username, "password": "correct horse battery"}}
                    ),
                    "operationName": "LogIn",
                },
            ),
        ]
        persisted = httpx.get(
            f"{server.url}/graphql",
            params={"extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "00ff"}}'},
        )
        wait_for(
            lambda: server.log.read_text().count("GET /graphql?") >= 3,
            timeout=5,
            what="the access log lines",
        )
        log = server.log.read_text()
    # then the mutation is refused, and the log has the requests but no password
    assert [answer.status_code for answer in refused] == [405, 405]
    assert persisted.status_code == 200
    assert "correct" not in log and "hunter2" not in log and "battery" not in log
    assert "query=[redacted]" in log and "variables=[redacted]" in log
    assert "operationName=LogIn" in log and "00ff" in log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_quoting_a_link_is_redacted_too(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from graph.http import logs

    # given lorashelf's logging, and an error whose message quotes a signed link
    logs.setup(log_format)
    try:
        try:
            raise RuntimeError("could not send /downloads/SECRETTOKEN.sig to the client")
        except RuntimeError:
            logging.getLogger("lorashelf.test").exception("download failed")
        # then the traceback is there, the token is not
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert "RuntimeError" in err and "download failed" in err
    assert "SECRETTOKEN" not in err and "/downloads/[redacted]" in err
