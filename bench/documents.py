"""The GraphQL documents the bench reads, and how each is requested from lorashelf and
from the floor.

A :class:`Doc` is one page as a client asks for it. For lorashelf there are two
ways to ask:

- ``uncached``: an anonymous ``POST /graphql`` with ``Cache-Control: no-cache`` and,
  in every request, a variable the document does not declare (``benchNonce``, a
  counter: GraphQL ignores variables a document does not use). The document is the
  same every time (parsing and validation may be cached, as for any client), the
  variables are not, so a response cache keyed on document + variables never has the
  answer. The bench also counts SQL statements per request in this mode: if it is
  ever 0, the "uncached" numbers came from a cache and the run says so.
- ``cached``: the same anonymous ``POST /graphql`` repeated byte for byte (what a
  response cache for anonymous reads serves); each run has its own constant
  ``benchNonce`` (``"cached-c32"``), so it starts with a fresh answer in the cache
  (see ``front_page.warm``). The run also probes ``GET`` with
  automatic persisted queries (``?extensions={"persistedQuery":...}``, hash only),
  ``ETag`` and ``Cache-Control``, and reports what it finds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

DATASET_FIELDS = "trainingDataset { id filename sizeBytes sha256 visibility status expiresAt }"
FILE_FIELDS = "files { id filename sizeBytes sha256 }"


def front_query(first: int, files: bool = False) -> str:
    version = f"id name status publishedAt {FILE_FIELDS + ' ' if files else ''}{DATASET_FIELDS}"
    return (
        f"{{ models(first: {first}) {{ edges {{ node {{ id name description "
        f"owner {{ id username }} versions {{ {version} }} }} }} }} }}"
    )


MODEL_QUERY = (
    "query ModelPage($id: ID!) { model(id: $id) { id name description owner { id username } "
    f"versions {{ id name status publishedAt {FILE_FIELDS} {DATASET_FIELDS} }} }} }}"
)


@dataclass(frozen=True)
class Doc:
    key: str  # e.g. front50, front50+files, model
    label: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    floor_path: str = ""  # the floor's URL path and query string

    @property
    def body(self) -> bytes:
        payload: dict[str, Any] = {"query": self.query}
        if self.variables:
            payload["variables"] = self.variables
        return json.dumps(payload, separators=(",", ":")).encode()

    def tagged(self, tag: str) -> Doc:
        """The same document with ``benchNonce: tag`` among its variables: one cache key
        per run, repeated byte for byte within the run."""
        return replace(self, variables={**self.variables, NONCE: tag})

    def nonce_parts(self) -> tuple[bytes, bytes]:
        """The uncached body split around its nonce: ``prefix + str(n) + suffix``."""
        payload: dict[str, Any] = {
            "query": self.query,
            "variables": {**self.variables, NONCE: "@NONCE@"},
        }
        prefix, suffix = json.dumps(payload, separators=(",", ":")).split('"@NONCE@"')
        return prefix.encode(), suffix.encode()

    def uncached_body(self, n: int) -> bytes:
        prefix, suffix = self.nonce_parts()
        return prefix + str(n).encode() + suffix

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.query.encode()).hexdigest()

    def get_path(self, *, persisted: bool, with_query: bool = True) -> str:
        """The ``/graphql?...`` path of a GET for this document."""
        params: dict[str, str] = {}
        if not persisted or with_query:
            params["query"] = self.query
        if self.variables:
            params["variables"] = json.dumps(self.variables, separators=(",", ":"))
        if persisted:
            extensions = {"persistedQuery": {"version": 1, "sha256Hash": self.sha256}}
            params["extensions"] = json.dumps(extensions, separators=(",", ":"))
        return "/graphql?" + urlencode(params)


def front(first: int, files: bool = False) -> Doc:
    return Doc(
        key=f"front{first}{'+files' if files else ''}",
        label=f"front page, first: {first}{' + files' if files else ''}",
        query=front_query(first, files),
        floor_path=f"/front?first={first}{'&files=1' if files else ''}",
    )


def model_page(model_id: str) -> Doc:
    return Doc(
        key="model",
        label="model page (versions, files, dataset)",
        query=MODEL_QUERY,
        variables={"id": model_id},
        floor_path=f"/model?id={model_id}&files=1",
    )


NONCE = "benchNonce"
UNCACHED_HEADERS = {"content-type": "application/json", "cache-control": "no-cache"}
CACHED_HEADERS = {"content-type": "application/json"}
