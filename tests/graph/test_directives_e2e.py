"""graphql-cop's directive overloading against a real ``lorashelf serve``, on every way
a document comes in (POST, GET, a WebSocket subscription): one short error, whatever
the number of copies; and no answer carries more errors than the limit."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.live import codes, over_network
from tests.processes import Owner, serve

pytestmark = pytest.mark.backend_independent(reason="document limits, checked before anything runs")

OVERLOADED = "query { __typename " + "@aa" * 660 + " }"
REFUSED = {
    "message": "The document has 660 directives; at most 50 allowed.",
    "extensions": {"code": "TOO_MANY_DIRECTIVES", "limit": 50, "actual": 660},
}


def test_directive_overloading_is_one_short_error_on_every_transport(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        # when graphql-cop's document (one unknown directive 660 times) is posted, sent
        # with GET, and subscribed to over a WebSocket
        posted = httpx.post(f"{server.url}/graphql", json={"query": OVERLOADED}, timeout=10)
        got = httpx.get(f"{server.url}/graphql", params={"query": OVERLOADED}, timeout=10)
        owner = Owner.sign_up(server.url)
        live, sock = over_network(server.url)
        try:
            live.init({"Authorization": f"Bearer {owner.token}"})
            live.subscribe(
                "overloaded", "subscription { notificationAdded " + "@aa" * 660 + " { id } }"
            )
            subscribed = live.errors("overloaded")
        finally:
            sock.close()
        # and a document under every limit but with 40 unknown fields is posted
        unknown = "{ __typename " + " ".join(f"f{i}" for i in range(40)) + " }"
        many = httpx.post(f"{server.url}/graphql", json={"query": unknown}, timeout=10)
    # then each overloaded document is one error, the answer small
    for answer in (posted, got):
        assert answer.json()["errors"] == [REFUSED], answer.text
        assert len(answer.content) < 500
    assert codes(subscribed) == ["TOO_MANY_DIRECTIVES"]
    # and the errors stop at the limit (20), with one saying there were more
    errors = many.json()["errors"]
    assert len(errors) == 21
    assert errors[-1]["extensions"]["code"] == "TOO_MANY_ERRORS"
    assert len(many.content) < 6000
