"""An unexpected failure outside GraphQL, against a real ``lorashelf serve``: coded JSON
with a request id, and the same security headers as every other answer (Starlette
answers it from its outermost middleware, outside the one that adds them)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import sql_behind_the_back
from tests.erasure import configured
from tests.processes import serve


def test_an_unexpected_failure_answers_coded_json_that_can_never_run_as_a_page(
    tmp_path: Path,
) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    with serve(env, tmp_path) as server:
        # given a database broken behind the server's back
        sql_behind_the_back(configured(env), "DROP TABLE receipt_keys")
        # when a route that reads it is asked
        answer = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json", timeout=10)
        # then the answer is coded JSON with a request id, and nothing of the internals
        assert answer.status_code == 500, answer.text
        body = answer.json()
        assert body["error"] == "INTERNAL_ERROR" and body["requestId"]
        assert "receipt_keys" not in answer.text
        # and it carries what every answer does: never sniffed, framed or run as a page,
        # never stored
        headers = answer.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert headers["cache-control"] == "no-store"
