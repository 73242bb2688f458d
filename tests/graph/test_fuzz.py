"""Property-based fuzzing of the GraphQL API with schemathesis in its GraphQL mode.

Schemathesis (``schemathesis.graphql.from_asgi``) loads the schema by introspecting the
real app (``create_app``, in process through its ASGI transport, with a SQLite database
in a temporary directory migrated by the app's own lifespan) and generates documents
for every query and mutation: valid ones and ones with values of the wrong type (its
positive and negative modes, mixed). It runs three times:

- anonymously;
- as a signed-up user who owns real objects (a model, a published version with an
  uploaded dataset, a draft version; made again every few dozen cases, since the
  fuzzer deletes them), so mutations get past "sign in first". ID-typed arguments are
  often swapped for real global IDs seen so far, of any type, so wrong-typed IDs too;
- arbitrary JSON values and bytes POSTed to ``/graphql`` (plain hypothesis).

Every response must be: no 5xx (nor an exception escaping the app, which a real server
answers with 500), a JSON body, no traceback text (``Traceback``, ``File "``,
``.py", line``), no internal paths, and no masked unexpected error (``INTERNAL_ERROR``:
an exception in our code, which fuzzed input should never cause; the server log has its
traceback). ``/healthz`` answers 200 after each run. Problems are collected over a whole
run (not shrunk) and reported together, each with a request that shows it.

Environment (read at import):

- ``LORASHELF_FUZZ_EXAMPLES``: generated cases per run (default 300, three runs, about
  15 s in all). For a manual deep run:
  ``LORASHELF_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/graph/test_fuzz.py -s``.
- ``LORASHELF_FUZZ_SEED``: unset, the same cases every run (derandomized, as CI wants);
  an integer picks another fixed seed; ``random`` a fresh one each run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphql
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from graph.http.app import create_app
from graph.schema import ids
from storage.config.settings import load_settings
from storage.runtime import NoScheduler
from tests.conftest import database_env, make_safetensors, make_zip

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("LORASHELF_FUZZ_EXAMPLES", "") or 300)
SEED = os.environ.get("LORASHELF_FUZZ_SEED", "").strip()

TRACEBACK_MARKERS = ("Traceback", 'File "', '.py", line')
# Rate limits have their own tests; here they would only turn mutations into RATE_LIMITED.
FUZZ_ENV = {
    "LORASHELF_SIGNUP_RATE_PER_ADDRESS": "1000000/hour",
    "LORASHELF_LOGIN_RATE_PER_USERNAME": "1000000/minute",
    "LORASHELF_LOGIN_RATE_PER_ADDRESS": "1000000/minute",
}
ID_SUBSTITUTION = 0.6  # how often an ID literal becomes a real global ID
# Which type of global ID an ID-typed argument or input field asks for, by its name.
ID_ARGUMENTS = {
    "modelId": "Model",
    "versionId": "ModelVersion",
    "datasetId": "TrainingDataset",
    "ownerId": "User",
    "ids": "Notification",
}
RESEED_EVERY = 40  # cases between fresh objects for the signed-in user
_names = itertools.count(1)


# The app under fuzz ---------------------------------------------------------------


@dataclass
class Target:
    schema: Any  # schemathesis' GraphQLSchema, loaded by introspecting the app
    client: schemathesis_asgi.ASGIClient  # requests.Session over the app, in process
    data_dir: Path
    token: str = ""
    known_ids: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request of the harness itself: it must succeed."""
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        self.learn_ids(body)
        data: dict[str, Any] = body["data"]
        for payload in data.values():
            if isinstance(payload, dict) and "userErrors" in payload:
                assert payload["userErrors"] == [], payload
        return data

    def learn_ids(self, body: Any) -> None:
        for key, value in _walk_items(body):
            if key == "id" and isinstance(value, str) and value not in self.known_ids:
                self.known_ids.append(value)

    def internal_paths(self) -> tuple[str, ...]:
        return tuple(
            sorted({str(ROOT), str(self.data_dir), sys.prefix, sys.base_prefix, "site-packages"})
        )

    def sign_up(self) -> None:
        self.token = self.post(
            'mutation { signUp(input: {username: "fuzzer", password: "correct horse battery"}) '
            "{ token user { id } userErrors { code } } }"
        )["signUp"]["token"]

    def seed_objects(self) -> None:
        """A model with a published version (its private dataset uploaded) and a draft."""
        n = next(_names)
        model = self.post(
            'mutation($n: String!) { createModel(input: {name: $n, description: "a LoRA"}) '
            "{ model { id } userErrors { code } } }",
            {"n": f"Cats {n}"},
        )["createModel"]["model"]["id"]
        new_version = (
            "mutation($m: ID!, $n: String!) { createModelVersion(input: "
            "{modelId: $m, name: $n, baseModel: SDXL_1_0}) "
            "{ version { id } userErrors { code } } }"
        )
        version = self.post(new_version, {"m": model, "n": "v1"})["createModelVersion"]["version"]
        content = make_zip()
        started = self.post(
            "mutation($v: ID!, $s: BigInt!) { startDatasetUpload(input: {versionId: $v, "
            'filename: "cats.zip", sizeBytes: $s, visibility: PRIVATE}) '
            "{ dataset { id } uploadUrl userErrors { code } } }",
            {"v": version["id"], "s": len(content)},
        )["startDatasetUpload"]
        put = self.client.put(started["uploadUrl"], data=content)
        assert put.status_code == 200, put.text
        weights = make_safetensors({"ss_tag_frequency": '{"cats": {"cat": 3}}'})
        file = self.post(
            "mutation($v: ID!, $s: BigInt!) { startModelFileUpload(input: {versionId: $v, "
            'filename: "cats.safetensors", sizeBytes: $s}) { uploadUrl userErrors { code } } }',
            {"v": version["id"], "s": len(weights)},
        )["startModelFileUpload"]
        put = self.client.put(file["uploadUrl"], data=weights)
        assert put.status_code == 200, put.text
        self.post(
            "mutation($v: ID!) { publishModelVersion(input: {versionId: $v}) "
            "{ version { id trainingDataset { id } } userErrors { code } } }",
            {"v": version["id"]},
        )
        self.post(new_version, {"m": model, "n": "v2"})
        self.post("{ viewer { id notifications(first: 5) { edges { node { id } } } } }")


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "var"
    with database_env(request) as database:
        env = {"LORASHELF_DATA_DIR": str(data_dir), **database, **FUZZ_ENV}
        app_settings = load_settings(env)
        # The app's own lifespan migrates and connects, on schemathesis' event loop thread.
        app = create_app(app_settings, scheduler=NoScheduler(), manage_database=True)
        try:
            schema = schemathesis.graphql.from_asgi("/graphql", app)
            with schemathesis_asgi.get_client(app) as client:
                yield Target(schema=schema, client=client, data_dir=data_dir)
        finally:
            schemathesis_asgi.shutdown_lifespans()  # the app's lifespan ends: database closed


# Checks ---------------------------------------------------------------------------


def _walk_items(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in a JSON value, depth first; list items have key None."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk_items(item)
    elif isinstance(value, list):
        for item in value:
            yield None, item
            yield from _walk_items(item)


Problem = tuple[str, str]  # (kind, detail): kinds group the report


def problems_in(
    status: int, content: bytes, sent: str, internal_paths: tuple[str, ...]
) -> list[Problem]:
    """What is wrong with one response to a request whose text was ``sent``."""
    problems: list[Problem] = []
    text = content.decode("utf-8", errors="replace")
    if status >= 500:
        problems.append((f"HTTP {status}", text[:300]))
    try:
        body = json.loads(content)
    except ValueError:
        problems.append(("a body that is not JSON", f"HTTP {status}: {text[:300]!r}"))
        body = None
    # Decoded strings too: a traceback inside JSON has its quotes escaped.
    strings = [text] + [item for _, item in _walk_items(body) if isinstance(item, str)]
    for marker in (*TRACEBACK_MARKERS, *internal_paths):
        # What the request itself sent may be echoed back (e.g. in a validation message).
        if marker not in sent and any(marker in s for s in strings):
            problems.append((f"response contains {marker!r}", text[:300]))
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            if isinstance(extensions, dict) and extensions.get("code") == "INTERNAL_ERROR":
                problems.append(
                    (
                        "a masked unexpected error (INTERNAL_ERROR): our code raised; "
                        "the server log has the traceback",
                        text[:300],
                    )
                )
    return problems


@dataclass
class Tally:
    cases: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    mutations_done: Counter[str] = field(default_factory=Counter)
    user_errors: Counter[str] = field(default_factory=Counter)
    problems: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    def record(self, label: str, status: int, sent: str, problems: list[Problem]) -> None:
        self.cases += 1
        self.by_operation[label] += 1
        self.statuses[status] += 1
        for kind, detail in problems:
            key = f"{label}: {kind}"
            first_sent, first_detail, count = self.problems.get(key, (sent, detail, 0))
            self.problems[key] = (first_sent, first_detail, count + 1)

    def record_payloads(self, body: Any) -> None:
        """Mutation payloads: done (no userErrors) or refused with which code."""
        data = body.get("data") if isinstance(body, dict) else None
        for name, payload in (data or {}).items():
            if not isinstance(payload, dict) or "userErrors" not in payload:
                continue
            errors = payload["userErrors"] or []
            if not errors:
                self.mutations_done[name] += 1
            for error in errors:
                if isinstance(error, dict):
                    self.user_errors[str(error.get("code", "(code not selected)"))] += 1

    def report(self, title: str, seconds: float) -> str:
        lines = [
            f"{title}: {self.cases} cases in {seconds:.1f}s; HTTP statuses {dict(self.statuses)}",
            f"  per operation: {dict(sorted(self.by_operation.items()))}",
        ]
        if self.mutations_done or self.user_errors:
            lines.append(f"  mutations done: {dict(sorted(self.mutations_done.items()))}")
            lines.append(f"  userErrors codes: {dict(sorted(self.user_errors.items()))}")
        if self.problems:
            lines.append(f"  problems: { {k: n for k, (_, _, n) in self.problems.items()} }")
        return "\n".join(lines)

    def failure(self) -> str:
        parts = [f"{len(self.problems)} distinct problem(s):"]
        for key, (sent, detail, count) in self.problems.items():
            parts.append(
                f"- {key} ({count} case(s))\n  response: {detail[:400]}\n"
                f"  for example this request: {sent[:600]}"
            )
        return "\n".join(parts)


def bounded(test: Callable[..., None]) -> Callable[..., None]:
    """Bounded, reproducible by default, no example database, no shrinking (problems
    are collected, not raised)."""
    test = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not SEED,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(test)
    if SEED and SEED != "random":
        test = seed(int(SEED))(test)
    return test


def assert_healthy(target: Target) -> None:
    response = target.client.get("/healthz")
    assert response.status_code == 200, response.text


# Document rewriting ---------------------------------------------------------------


class _Rewrite(graphql.Visitor):
    """Swaps ID-typed literals for real global IDs (of any type) some of the time, and
    selects ``userErrors { code }`` on mutation payloads so the tally can see how far
    each mutation got."""

    def __init__(
        self,
        schema: graphql.GraphQLSchema,
        type_info: graphql.TypeInfo,
        ids: list[str],
        rng: random.Random,
    ):
        super().__init__()
        self.mutation = schema.mutation_type
        self.type_info = type_info
        self.ids = ids
        self.rng = rng
        self.name = ""

    def enter(self, node: Any, *_args: Any) -> Any:
        if isinstance(node, (graphql.ArgumentNode, graphql.ObjectFieldNode)):
            self.name = node.name.value
        elif isinstance(node, (graphql.StringValueNode, graphql.IntValueNode)) and self.ids:
            input_type = self.type_info.get_input_type()
            if (
                input_type is not None
                and graphql.get_named_type(input_type) is graphql.GraphQLID
                and self.rng.random() < ID_SUBSTITUTION
            ):
                return graphql.StringValueNode(value=self.pick())
        return None

    def pick(self) -> str:
        """Mostly an ID of the type the argument's name asks for; else any known ID."""
        wanted = ID_ARGUMENTS.get(self.name)
        fitting = [i for i in self.ids if wanted and (ids.decode_any(i) or ("",))[0] == wanted]
        if fitting and self.rng.random() < 0.8:
            return self.rng.choice(fitting)
        return self.rng.choice(self.ids)

    def leave(self, node: Any, *_args: Any) -> Any:
        if not isinstance(node, graphql.FieldNode) or node.selection_set is None:
            return None
        parent = self.type_info.get_parent_type()
        field_type = self.type_info.get_type()
        if parent is not self.mutation or field_type is None:
            return None
        payload = graphql.get_named_type(field_type)
        if not isinstance(payload, graphql.GraphQLObjectType) or "userErrors" not in payload.fields:
            return None
        selected = {
            s.name.value
            for s in node.selection_set.selections
            if isinstance(s, graphql.FieldNode) and not s.alias
        }
        if "userErrors" in selected:
            return None
        extra = graphql.parse("{ userErrors { code } }").definitions[0]
        assert isinstance(extra, graphql.OperationDefinitionNode)
        selections = (*node.selection_set.selections, *extra.selection_set.selections)
        return graphql.FieldNode(
            alias=node.alias,
            name=node.name,
            arguments=node.arguments,
            directives=node.directives,
            selection_set=graphql.SelectionSetNode(selections=selections),
        )


def rewrite(document: str, schema: graphql.GraphQLSchema, ids: list[str], salt: int) -> str:
    try:
        ast = graphql.parse(document)
    except graphql.GraphQLSyntaxError:
        return document
    type_info = graphql.TypeInfo(schema)
    visitor = _Rewrite(schema, type_info, list(ids), random.Random(salt))
    return graphql.print_ast(graphql.visit(ast, graphql.TypeInfoVisitor(type_info, visitor)))


# Schemathesis runs --------------------------------------------------------------------


def fuzz(target: Target, schema: Any, *, title: str, reseed: bool = False) -> Tally:
    tally = Tally()
    strategy = st.one_of(
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    client_schema: graphql.GraphQLSchema = schema.client_schema
    headers = target.headers

    @bounded
    @given(case=strategy, salt=st.integers(min_value=0, max_value=2**32))
    def run(case: Any, salt: int) -> None:
        if reseed and tally.cases % RESEED_EVERY == 0:
            target.seed_objects()
        if isinstance(case.body, str):
            case.body = rewrite(case.body, client_schema, target.known_ids, salt)
        sent = case.body if isinstance(case.body, str) else json.dumps(case.body)
        try:
            response = case.call(headers=headers, session=target.client)
        except Exception as exc:  # escaped the app: a real server answers 500
            tally.record(
                case.operation.label,
                500,
                sent,
                [(f"the app raised {type(exc).__name__}", repr(exc))],
            )
            return
        problems = problems_in(
            response.status_code, response.content, sent, target.internal_paths()
        )
        tally.record(case.operation.label, response.status_code, sent, problems)
        try:
            body = response.json()
        except ValueError:
            return
        target.learn_ids(body)
        tally.record_payloads(body)

    started = time.monotonic()
    run()
    print(tally.report(title, time.monotonic() - started))
    assert_healthy(target)
    assert tally.cases >= min(EXAMPLES, 50), f"only {tally.cases} cases ran"
    return tally


def test_fuzz_anonymous(target: Target) -> None:
    """Every query and mutation, without a token."""
    target.token = ""
    tally = fuzz(target, target.schema, title="anonymous")
    assert not tally.problems, tally.failure()


def test_fuzz_signed_in(target: Target) -> None:
    """Every query and mutation as a signed-in owner of real objects (logOut excluded: it
    would revoke the token the rest of the run uses; the anonymous run covers it)."""
    target.sign_up()
    try:
        tally = fuzz(
            target, target.schema.exclude(name="Mutation.logOut"), title="signed in", reseed=True
        )
        # the fuzz reached past authentication: some mutations were carried out
        assert sum(tally.mutations_done.values()) > 0, tally.report("signed in", 0)
        assert not tally.problems, tally.failure()
        # and the token still works
        assert target.post("{ viewer { username } }")["viewer"] == {"username": "fuzzer"}
    finally:
        target.token = ""


# Arbitrary request bodies -----------------------------------------------------------

_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["{ viewer { id } }", "{ retentionPolicy { notice } }", "query", "mutation"])
)
_json = st.recursive(
    _json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_operation = st.fixed_dictionaries(
    {},
    optional={
        "query": _json_leaves | st.just("query($i: ID!, $s: BigInt) { node(id: $i) { id } }"),
        "variables": _json | st.fixed_dictionaries({}, optional={"i": _json, "s": _json}),
        "operationName": _json_leaves,
        "extensions": _json,
    },
)
_bodies = (
    _json.map(lambda v: json.dumps(v).encode())
    | _operation.map(lambda v: json.dumps(v).encode())
    | st.lists(_operation, max_size=3).map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)


def test_fuzz_request_bodies(target: Target) -> None:
    """Any JSON value (or bytes) POSTed as application/json: refused or answered, never a
    5xx or a traceback. Refusals (4xx) may be plain text (strawberry's); 200s are JSON."""
    tally = Tally()

    @bounded
    @given(body=_bodies)
    def run(body: bytes) -> None:
        sent = body.decode("utf-8", errors="replace")
        try:
            response = target.client.post(
                "/graphql", data=body, headers={"content-type": "application/json"}
            )
        except Exception as exc:  # escaped the app: a real server answers 500
            tally.record(
                "POST /graphql", 500, sent, [(f"the app raised {type(exc).__name__}", repr(exc))]
            )
            return
        problems = problems_in(
            response.status_code, response.content, sent, target.internal_paths()
        )
        if 400 <= response.status_code < 500:
            problems = [p for p in problems if p[0] != "a body that is not JSON"]
        tally.record("POST /graphql", response.status_code, sent, problems)

    started = time.monotonic()
    run()
    print(tally.report("request bodies", time.monotonic() - started))
    assert_healthy(target)
    assert not tally.problems, tally.failure()


# Regressions found by the fuzzer ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b'"{ viewer { id } }"',
        b"42",
        b"true",
        b"\x97{}",  # not UTF-8
        b"[" * 50_000,  # nested deeper than json's recursion limit (50 KB)
        b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}",
    ],
    ids=["null", "string", "number", "boolean", "not-utf8", "nested-array", "nested-variables"],
)
def test_an_unusable_json_body_is_refused_not_a_server_error(target: Target, body: bytes) -> None:
    try:
        response = target.client.post(
            "/graphql", data=body, headers={"content-type": "application/json"}
        )
    except Exception as exc:  # noqa: BLE001 - what escapes the app is a 500 on a real server
        pytest.fail(f"POST /graphql {body!r}: the app raised {exc!r} (a real server answers 500)")
    assert 400 <= response.status_code < 500, response.text
    problems = problems_in(response.status_code, response.content, "", target.internal_paths())
    assert [p for p in problems if p[0] != "a body that is not JSON"] == []


@pytest.mark.parametrize(
    "size", ["9007199254740992", "-99999999999999999999", "1.5", '"12"', "true"]
)
def test_a_bad_bigint_literal_is_a_validation_error_not_an_unexpected_one(
    target: Target, size: str
) -> None:
    query = (
        'mutation { startDatasetUpload(input: {versionId: "x", filename: "a.zip", '
        f"sizeBytes: {size}, visibility: PRIVATE}}) {{ uploadUrl }} }}"
    )
    response = target.client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None and body["errors"], body
    assert problems_in(200, response.content, query, target.internal_paths()) == []
    assert "BigInt" in body["errors"][0]["message"], body
