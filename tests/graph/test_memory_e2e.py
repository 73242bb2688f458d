"""Anonymous traffic alone cannot grow a real ``lorashelf serve``'s memory past what
the limits state: persisted-query registrations of distinct documents, the same page
sent under a thousand comments, and distinct documents with large answers, measured
as the process's resident memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from storage.config.settings import load_settings
from tests.processes import serve

# Schema introspection eight times over: a large answer (~450 kB) anybody may ask for.
ONE = (
    "__schema { types { name kind description fields(includeDeprecated: true) { name "
    "description args { name description type { name kind ofType { name kind ofType "
    "{ name kind } } } } type { name kind ofType { name kind ofType { name kind } } } } } }"
)
LARGE = "query Large { " + " ".join(f"s{k}: {ONE}" for k in range(8)) + " }"
SLACK = 40 * 2**20  # the allocator's own keeping, and what a request holds while it runs


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def register(http: httpx.Client, document: str) -> httpx.Response:
    digest = hashlib.sha256(document.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    return http.post("/graphql", json={"query": document, "extensions": extensions})


def test_anonymous_floods_stay_within_the_stated_memory(tmp_path: Path) -> None:
    limits = load_settings({}, create=False).limits
    stated = (
        limits.parsed_documents_bytes + limits.public_cache_bytes + limits.persisted_queries_bytes
    )
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        # given a server warmed up by a little of each kind of traffic
        assert len(http.post("/graphql", json={"query": LARGE}).content) > 400_000
        for i in range(20):
            register(http, "{ __typename } #" + os.urandom(45_000).hex())
            http.post("/graphql", json={"query": f"{LARGE} # {i}"})
        before = resident(server.proc.pid)
        # when anonymous clients register 600 distinct documents of 90 kB (valid ones,
        # padded with comments) and 100 that do not validate
        for _ in range(600):
            registered = register(http, "{ __typename } #" + os.urandom(45_000).hex())
            assert registered.json() == {"data": {"__typename": "Query"}}
        for _ in range(100):
            refused = register(http, "{ nothingHere } #" + os.urandom(45_000).hex())
            assert refused.json()["errors"]
        # and send the large page 150 times, each under a comment of its own
        for _ in range(150):
            http.post("/graphql", json={"query": f"{LARGE} # {os.urandom(8).hex()}"})
        # and 100 distinct documents with large answers (45 MB of answers)
        for _ in range(100):
            alias = "a" + os.urandom(6).hex()
            http.post("/graphql", json={"query": LARGE.replace("s0:", f"{alias}:")})
        after = resident(server.proc.pid)
        # then the process grew by at most what the limits state for the caches
        assert after - before <= stated + SLACK, (before / 2**20, after / 2**20)
        # and an invalid document was never persisted: its hash is unknown
        document = "{ nothingHere }"
        digest = hashlib.sha256(document.encode()).hexdigest()
        register(http, document)
        unknown = http.get(
            "/graphql",
            params={"extensions": '{"persistedQuery":{"version":1,"sha256Hash":"' + digest + '"}}'},
        )
        assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
