"""The checks GraphQL security reviews run (graphql-cop's list, GraphQL Armor's
protections), one by one. Each asserts the refusal, and that it happens before
execution: a refused document gets no `data` at all (validation failed), or an HTTP
error before the body is parsed."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from storage.config.settings import Settings
from tests.conftest import Api, sql_behind_the_back


def refused(body: dict[str, Any]) -> dict[str, Any]:
    """The document was refused at parse/validation time: errors and no data."""
    assert "data" not in body or body["data"] is None, body
    assert body["errors"], body
    first: dict[str, Any] = body["errors"][0]
    return first


# Introspection, suggestions, GraphiQL ------------------------------------------------


@pytest.mark.env(LORASHELF_INTROSPECTION="false")
async def test_introspection_off_refuses_schema_and_type_queries(api: Api) -> None:
    for document in ("{ __schema { types { name } } }", '{ __type(name: "User") { name } }'):
        error = refused(await api.raw(document))
        assert "introspection" in error["message"].lower()


SUGGESTION_BAIT = {
    "field": "{ viewr { id } }",
    "argument": "{ models(frist: 1) { edges { cursor } } }",
    "enum value": 'mutation { startDatasetUpload(input: {versionId: "x", filename: "a", '
    "sizeBytes: 1, visibility: PRIVAT}) { uploadUrl } }",
    "type": "{ viewer { ... on Usr { id } } }",
    "input field": 'mutation { createModel(input: {nam: "x"}) { model { id } } }',
}


@pytest.mark.parametrize("kind", sorted(SUGGESTION_BAIT))
async def test_suggestions_are_given_while_introspection_is_on(api: Api, kind: str) -> None:
    body = await api.raw(SUGGESTION_BAIT[kind])
    refused(body)
    assert any("Did you mean" in error["message"] for error in body["errors"])


@pytest.mark.env(LORASHELF_INTROSPECTION="false")
@pytest.mark.parametrize("kind", sorted(SUGGESTION_BAIT))
async def test_no_suggestions_of_any_kind_when_introspection_is_off(api: Api, kind: str) -> None:
    body = await api.raw(SUGGESTION_BAIT[kind])
    refused(body)
    for error in body["errors"]:
        assert "did you mean" not in error["message"].lower()


@pytest.mark.env(LORASHELF_GRAPHIQL="false")
async def test_graphiql_off_serves_no_ide(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" not in response.text.lower()


# Transport: GET, CSRF, content types, batching ----------------------------------------


async def test_mutations_over_get_are_refused(api: Api) -> None:
    # given a signed-in user
    alice = await api.sign_up("alice")
    # when a page makes their browser send a mutation by GET (a CSRF attempt)
    response = await api.http.get(
        "/graphql",
        params={"query": "mutation { logOut { ok } }"},
        headers={"authorization": f"Bearer {alice.token}"},
    )
    # then it is refused and nothing happened
    assert response.status_code in (400, 405)
    viewer = await api.gql("{ viewer { username } }", token=alice.token)
    assert viewer == {"viewer": {"username": "alice"}}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", "query=%7B%20viewer%20%7B%20id%20%7D%20%7D"),
        ("text/plain", '{"query": "{ viewer { id } }"}'),
        (
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="query"\r\n\r\n{ viewer { id } }\r\n--x--',
        ),
        ("", '{"query": "{ viewer { id } }"}'),
    ],
    ids=["urlencoded", "text-plain", "multipart", "none"],
)
async def test_only_json_posts_carry_operations(
    client: httpx.AsyncClient, content_type: str, body: str
) -> None:
    # when a "simple request" (no CORS preflight) posts an operation
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/graphql", content=body.encode(), headers=headers)
    # then it is refused before parsing
    assert response.status_code == 415
    assert "application/json" in response.json()["errors"][0]["message"]


async def test_batches_are_not_executed(client: httpx.AsyncClient) -> None:
    # when a client sends several operations in one request
    batch = [{"query": "{ retentionPolicy { notice } }"}] * 10
    response = await client.post("/graphql", json=batch)
    # then none of them runs
    assert response.status_code == 400
    assert "notice" not in response.text


async def test_an_oversized_body_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    query = "{ viewer { id } }" + " " * 100_001
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 413


async def test_an_oversized_body_without_length_is_refused_too(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        yield b'{"query": "{ viewer { id } }", "x": "'
        for _ in range(20):
            yield b"a" * 10_000
        yield b'"}'

    response = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.env(LORASHELF_MAX_BODY_BYTES="2000")
async def test_the_body_limit_is_configurable(client: httpx.AsyncClient) -> None:
    small = await client.post("/graphql", json={"query": "{ viewer { id } }"})
    large = await client.post("/graphql", json={"query": "{ viewer { id } }" + " " * 2000})
    assert small.status_code == 200
    assert large.status_code == 413


# Document limits ------------------------------------------------------------------------


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: retentionPolicy {{ notice }}" for i in range(count)) + " }"


async def test_alias_overloading_is_refused_with_its_limit(api: Api) -> None:
    assert "a29" in (await api.gql(aliases(30)))
    error = refused(await api.raw(aliases(31)))
    assert error["extensions"] == {"code": "TOO_MANY_ALIASES", "limit": 30, "actual": 31}


async def test_aliases_hidden_in_fragments_count_too(api: Api) -> None:
    fragment = (
        "fragment F on RetentionPolicy { " + " ".join(f"n{i}: notice" for i in range(8)) + " }"
    )
    document = (
        "{ " + " ".join(f"p{i}: retentionPolicy {{ ...F }}" for i in range(4)) + " } " + fragment
    )
    error = refused(await api.raw(document))
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert error["extensions"]["actual"] == 4 + 4 * 8


async def test_field_duplication_is_refused_before_validation(api: Api) -> None:
    def document(copies: int) -> str:
        return "{ " + "viewer { id } " * copies + "}"

    assert "errors" not in await api.raw(document(20))
    error = refused(await api.raw(document(400)))
    assert error["extensions"] == {"code": "TOO_MANY_REPEATS", "limit": 20, "actual": 400}


async def test_field_duplication_through_fragments_is_refused(api: Api) -> None:
    document = "{ viewer { " + "...F " * 30 + "} } fragment F on User { id }"
    error = refused(await api.raw(document))
    assert error["extensions"]["code"] == "TOO_MANY_REPEATS"
    assert error["extensions"]["actual"] == 30


async def test_field_duplication_is_bounded_by_the_token_limit(api: Api) -> None:
    document = "{ retentionPolicy { " + "notice " * 2100 + "} }"
    error = refused(await api.raw(document))
    assert "2000 tokens" in error["message"]


@pytest.mark.env(LORASHELF_MAX_FIELD_REPEATS="100")  # let the repeats through to this rule
async def test_directive_overloading_is_refused(api: Api) -> None:
    def document(count: int) -> str:
        return "{ retentionPolicy { " + "notice @include(if: true) " * count + "} }"

    ok = await api.raw(document(50))
    assert "errors" not in ok
    error = refused(await api.raw(document(51)))
    assert error["extensions"] == {"code": "TOO_MANY_DIRECTIVES", "limit": 50, "actual": 51}


async def test_a_repeated_unknown_directive_is_one_error_not_one_per_copy(api: Api) -> None:
    # given graphql-cop's directive overloading: one unknown directive repeated 660 times
    # (each copy would be a validation error of its own)
    document = "query { __typename " + "@aa" * 660 + " }"
    # when it is sent
    response = await api.http.post("/graphql", json={"query": document})
    # then it is refused before validation with one error, and the answer stays small
    body = response.json()
    assert body["errors"] == [
        {
            "message": "The document has 660 directives; at most 50 allowed.",
            "extensions": {"code": "TOO_MANY_DIRECTIVES", "limit": 50, "actual": 660},
        }
    ]
    assert len(response.content) < 500


async def test_validation_errors_stop_at_the_limit_with_one_too_many_errors(api: Api) -> None:
    # given a document under every other limit with 40 unknown directives and 25
    # unknown fields
    document = "{ __typename " + "@aa" * 40 + " " + " ".join(f"f{i}" for i in range(25)) + " }"
    # when it is sent
    body = await api.raw(document)
    # then 20 errors come back, and one that says the rest were left out
    errors = body["errors"]
    assert len(errors) == 21
    assert errors[-1] == {
        "message": "More than 20 errors; the rest are left out.",
        "extensions": {"code": "TOO_MANY_ERRORS", "limit": 20},
    }


async def test_errors_met_while_executing_stop_at_the_limit_too(api: Api) -> None:
    # given a valid document whose 25 aliased fields each fail (a cursor lorashelf did
    # not make), each under a nullable field so that every failure is reported
    alice = await api.sign_up("alice")
    fields = " ".join(
        f'a{i}: viewer {{ notifications(first: 1, after: "x{i}") {{ edges {{ cursor }} }} }}'
        for i in range(25)
    )
    # when it runs
    body = await api.raw("{ " + fields + " }", token=alice.token)
    # then the answer holds 20 of the errors and one TOO_MANY_ERRORS
    codes = [e["extensions"]["code"] for e in body["errors"]]
    assert codes == ["INVALID_CURSOR"] * 20 + ["TOO_MANY_ERRORS"]


@pytest.mark.env(LORASHELF_MAX_ERRORS="3", LORASHELF_MAX_DIRECTIVES="5")
async def test_the_directive_and_error_limits_are_configurable(api: Api) -> None:
    assert refused(await api.raw("{ __typename " + "@aa" * 6 + " }"))["extensions"]["limit"] == 5
    errors = (await api.raw("{ f1 f2 f3 f4 f5 }"))["errors"]
    assert [e.get("extensions", {}).get("code") for e in errors][-1] == "TOO_MANY_ERRORS"
    assert len(errors) == 4


def nested(depth: int) -> str:
    """A query `depth` levels deep: models > edges > node > versions > model > ... > id."""
    names = ["versions" if k % 2 == 0 else "model" for k in range(depth - 4)]
    body = "id"
    for name in reversed(names):
        body = f"{name} {{ {body} }}"
    return f"{{ models(first: 1) {{ edges {{ node {{ {body} }} }} }} }}"


@pytest.mark.env(LORASHELF_MAX_COST="100000000")  # the chain multiplies version lists
async def test_depth_is_limited_and_reported(api: Api) -> None:
    assert "errors" not in await api.raw(nested(10))
    error = refused(await api.raw(nested(11)))
    assert error["extensions"] == {"code": "TOO_DEEP", "limit": 10, "actual": 11}


async def test_depth_cannot_hide_in_fragments(api: Api) -> None:
    document = (
        "{ models(first: 1) { edges { node { ...M } } } } "
        "fragment M on Model { versions { model { versions { model { versions { model { "
        "versions { model { id } } } } } } } } }"
    )
    error = refused(await api.raw(document))
    assert error["extensions"]["code"] == "TOO_DEEP"


async def test_circular_fragments_are_refused(api: Api) -> None:
    document = (
        "{ viewer { ...A } } fragment A on User { models { edges { node { owner { ...B } } } } } "
        "fragment B on User { ...A }"
    )
    error = refused(await api.raw(document))
    assert "within itself" in error["message"]


async def test_circular_introspection_is_refused(api: Api) -> None:
    inner = "name"
    for _ in range(8):
        inner = f"fields {{ type {{ {inner} }} }}"
    error = refused(await api.raw("{ __schema { types { " + inner + " } } }"))
    assert error["extensions"]["code"] == "TOO_DEEP"
    assert error["extensions"]["limit"] == 15


async def test_graphiqls_own_introspection_query_is_allowed(api: Api) -> None:
    from graphql import get_introspection_query

    body = await api.raw(get_introspection_query(descriptions=True))
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_cost_multiplies_page_sizes_and_is_reported(api: Api) -> None:
    def document(first: int) -> str:
        return (
            f"{{ models(first: {first}) {{ edges {{ node {{ owner {{ models(first: {first}) "
            "{ edges { node { name description } } } } } } } }"
        )

    # each object that can come back counts 1: n models, each with its edge, node and
    # owner, whose n models each have an edge and a node:
    # n * (1 + edge 1 + node 1 + owner 1 + n * (1 + edge 1 + node 1))
    assert "errors" not in await api.raw(document(10))
    error = refused(await api.raw(document(100)))
    assert error["extensions"] == {
        "code": "TOO_COSTLY",
        "limit": 20_000,
        "actual": 100 * (4 + 100 * 3),
    }


async def test_cost_assumes_the_largest_page_for_variables(api: Api) -> None:
    document = (
        "query($n: Int) { models(first: $n) { edges { node { owner { models(first: $n) "
        "{ edges { node { name description } } } } } } } }"
    )
    error = refused(await api.raw(document, {"n": 1}))
    assert error["extensions"]["code"] == "TOO_COSTLY"


async def test_relay_page_size_is_capped(api: Api) -> None:
    body = await api.raw("{ models(first: 101) { edges { cursor } } }")
    assert body["errors"][0]["extensions"]["code"] == "INVALID_PAGE_SIZE"


@pytest.mark.env(LORASHELF_MAX_DEPTH="4", LORASHELF_MAX_ALIASES="2", LORASHELF_MAX_COST="50")
async def test_limits_are_configurable(api: Api) -> None:
    assert refused(await api.raw(nested(5)))["extensions"]["limit"] == 4
    assert refused(await api.raw(aliases(3)))["extensions"]["limit"] == 2
    costly = "{ models(first: 30) { edges { node { name description } } } }"
    assert refused(await api.raw(costly))["extensions"]["limit"] == 50


# Errors and headers -------------------------------------------------------------------


async def test_no_tracing_or_debug_extensions(api: Api) -> None:
    body = await api.raw("{ retentionPolicy { notice } }")
    assert "extensions" not in body or not body["extensions"]


async def test_unexpected_errors_are_masked_with_a_request_id(
    api: Api, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given a database broken behind the server's back
    owner = await api.sign_up("alice")
    sql_behind_the_back(settings, "DROP TABLE notifications")
    # when a query needs it
    caplog.set_level(logging.ERROR, logger="lorashelf.errors")
    response = await api.http.post(
        "/graphql",
        json={"query": "{ viewer { unreadNotificationCount } }"},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    # then the client learns nothing of the internals, only a request id
    body = response.json()
    error = body["errors"][0]
    request_id = response.headers["x-request-id"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "requestId": request_id}
    assert "notifications" not in response.text and "sqlite" not in response.text.lower()
    # and the server log has the traceback under the same id
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_validation_errors_keep_their_message(api: Api) -> None:
    error = refused(await api.raw("{ viewer { nope } }"))
    assert error["message"].startswith("Cannot query field 'nope' on type 'User'.")


@pytest.mark.parametrize("path", ["/graphql", "/healthz", "/downloads/nope", "/nowhere"])
async def test_security_headers_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
