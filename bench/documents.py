"""The GraphQL documents the bench reads, and how each is requested from lorashelf and
from the floor.

A :class:`Doc` is one page as a client asks for it. For lorashelf there are two
ways to ask:

- ``uncached``: an anonymous ``POST /graphql`` (how GraphQL clients send by default)
  with ``Cache-Control: no-cache``, so that a response cache honouring the request
  header (or caching GETs only) answers from the resolvers every time. The bench
  also counts SQL statements per request in this mode: if it is ever 0, the "uncached"
  numbers came from a cache and the run says so.
- ``cached``: the same anonymous read repeated as ``GET /graphql``; with automatic
  persisted queries (``?extensions={"persistedQuery":...}``, hash only) when the
  server supports them (probed at run time), else ``?query=...``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
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


UNCACHED_HEADERS = {"content-type": "application/json", "cache-control": "no-cache"}
