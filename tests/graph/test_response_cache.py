"""Free repeats: anonymous answers reused until a public change, never a signed-in one;
ETag, Cache-Control and GET with automatic persisted queries for HTTP caches."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Api, MutableClock, Person, set_visibility
from tests.graph.test_front_page import counting
from tests.processes import Owner, gql, serve

PAGE = (
    "query Front { models(first: 20) { edges { node { id name owner { username } "
    "versions { id name trainingDataset { id visibility } } } } } }"
)
RENAME = (
    "mutation($i: UpdateModelInput!) { updateModel(input: $i) "
    "{ model { id } userErrors { code } } }"
)
VISIBILITY = (
    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
    "{ dataset { id } userErrors { code } } }"
)


async def post(api: Api, query: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await api.http.post("/graphql", json={"query": query}, headers=headers)


def names(response: httpx.Response) -> list[str]:
    return [e["node"]["name"] for e in response.json()["data"]["models"]["edges"]]


def datasets(response: httpx.Response) -> list[Any]:
    return [
        v["trainingDataset"]
        for e in response.json()["data"]["models"]["edges"]
        for v in e["node"]["versions"]
    ]


@pytest.fixture
async def published(api: Api) -> tuple[Person, str, str, str]:
    """A published model with a public dataset; its owner, model, version, dataset."""
    owner = await api.sign_up("alice")
    model_id = await api.create_model(owner, "Cats")
    version_id = await api.create_version(owner, model_id)
    dataset_id = await api.upload(owner, version_id, "PUBLIC")
    await api.publish(owner, version_id)
    return owner, model_id, version_id, dataset_id


async def test_a_repeated_anonymous_page_is_served_without_running_it_again(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    # given an anonymous front page asked for once
    with counting() as first_time:
        first = await post(api, PAGE)
    # when it is asked for again
    with counting() as again:
        second = await post(api, PAGE)
    # then the second answer is the same, costs no query beyond (at most) the one read of
    # the public generation, and says how long HTTP caches may keep it
    assert first.status_code == second.status_code == 200
    assert second.content == first.content and names(second) == ["Cats"]
    assert first_time.count >= 3 and again.count <= 1, (first_time.count, again.count)
    assert second.headers["etag"] == first.headers["etag"]
    # (the page shows training datasets: only the asker's own browser may keep it)
    assert second.headers["cache-control"].startswith("private, max-age=")
    assert int(second.headers["cache-control"].rsplit("=", 1)[1]) <= 10
    assert second.headers["vary"] == "Authorization"


async def test_every_public_change_ends_reuse_at_once(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    owner, model_id, version_id, dataset_id = published
    assert names(await post(api, PAGE)) == ["Cats"]
    # when the model is renamed, then the next anonymous answer has the new name
    await api.mutate(
        "updateModel", RENAME, {"i": {"modelId": model_id, "name": "Dogs"}}, owner.token
    )
    assert names(await post(api, PAGE)) == ["Dogs"]
    # when the dataset is made private, then anonymous viewers no longer see it
    assert datasets(await post(api, PAGE)) == [{"id": dataset_id, "visibility": "PUBLIC"}]
    await api.mutate(
        "setDatasetVisibility",
        VISIBILITY,
        {"i": {"datasetId": dataset_id, "visibility": "PRIVATE"}},
        owner.token,
    )
    assert datasets(await post(api, PAGE)) == [None]
    # when another model is published, then it appears
    other = await api.create_model(owner, "Birds")
    await api.publish(owner, await api.create_version(owner, other))
    assert sorted(names(await post(api, PAGE))) == ["Birds", "Dogs"]
    # when a model is deleted, then it is gone
    await api.mutate(
        "deleteModel",
        "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { userErrors { code } } }",
        {"i": {"modelId": other}},
        owner.token,
    )
    assert names(await post(api, PAGE)) == ["Dogs"]


async def test_a_signed_in_answer_is_never_stored_nor_served_from_the_anonymous_cache(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    owner, _, version_id, _ = published
    # given a private dataset on a second published model
    model_id = await api.create_model(owner, "Secret")
    version_id = await api.create_version(owner, model_id)
    private_id = await api.upload(owner, version_id, "PRIVATE")
    await api.publish(owner, version_id)
    # when the owner and an anonymous viewer ask the same document, in both orders
    owner_first = await post(api, PAGE, owner.token)
    anonymous = await post(api, PAGE)
    owner_again = await post(api, PAGE, owner.token)
    # then the owner sees the private dataset, each time, marked private and unstored
    for answer in (owner_first, owner_again):
        assert {"id": private_id, "visibility": "PRIVATE"} in datasets(answer)
        assert answer.headers["cache-control"] == "private, no-store"
        assert "etag" not in answer.headers
    # and the anonymous viewer never does, though it was asked right after the owner
    assert private_id not in json.dumps(anonymous.json())
    assert anonymous.headers["cache-control"].startswith("private, max-age=")  # its own
    assert "etag" in anonymous.headers


async def test_if_none_match_gets_a_304_until_the_answer_changes(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    owner, model_id, _, _ = published
    etag = (await post(api, PAGE)).headers["etag"]
    # when asked again with the ETag, then 304 and no body
    unchanged = await post(api, PAGE, **{"if-none-match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    # when the model changes, then the same ETag gets the new answer
    await api.mutate(
        "updateModel", RENAME, {"i": {"modelId": model_id, "name": "Dogs"}}, owner.token
    )
    changed = await post(api, PAGE, **{"if-none-match": etag})
    assert changed.status_code == 200 and names(changed) == ["Dogs"]
    assert changed.headers["etag"] != etag


async def test_answers_that_cannot_be_shared_are_not_stored(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    # a document with signed links, a mutation, an answer with errors
    links = await post(
        api, "{ models(first: 5) { edges { node { versions { files { downloadUrl } } } } } }"
    )
    assert links.status_code == 200 and "errors" not in links.json()
    mutation = await api.http.post(
        "/graphql",
        json={
            "query": "mutation { logOut { ok userErrors { code } } }",
        },
    )
    error = await post(api, "{ models(first: 1000) { edges { node { id } } } }")
    assert error.json()["errors"]
    for answer in (links, mutation, error):
        assert answer.headers["cache-control"] == "no-store", answer.text
        assert "etag" not in answer.headers


def apq(query: str) -> dict[str, str]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}})}


async def test_get_with_automatic_persisted_queries(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    # when a hash the server has not seen is asked for, then it says so
    unknown = await api.http.get("/graphql", params=apq(PAGE))
    assert unknown.status_code == 200
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # when the document is sent once with its hash, then it is answered and remembered
    registered = await api.http.get("/graphql", params={**apq(PAGE), "query": PAGE})
    assert names(registered) == ["Cats"]
    # and the hash alone is enough from then on, with caching headers
    by_hash = await api.http.get("/graphql", params=apq(PAGE))
    assert by_hash.status_code == 200 and names(by_hash) == ["Cats"]
    assert by_hash.headers["cache-control"].startswith("private, max-age=")
    assert by_hash.headers["etag"] == registered.headers["etag"]
    # with variables too
    query = "query($n: Int) { models(first: $n) { edges { node { name } } } }"
    variables = {"variables": json.dumps({"n": 1})}
    await api.http.get("/graphql", params={**apq(query), "query": query, **variables})
    assert names(await api.http.get("/graphql", params={**apq(query), **variables})) == ["Cats"]
    # when the hash does not match the document, then 400 and nothing is remembered
    wrong = await api.http.get(
        "/graphql", params={**apq("{ __typename }"), "query": "{ retentionPolicy { notice } }"}
    )
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    again = await api.http.get("/graphql", params=apq("{ __typename }"))
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # and a mutation cannot be run through GET, persisted or not
    logout = "mutation { logOut { ok } }"
    refused = await api.http.get("/graphql", params={**apq(logout), "query": logout})
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    assert refused.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_post_with_automatic_persisted_queries(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    extensions = json.loads(apq(PAGE)["extensions"])
    unknown = await api.http.post("/graphql", json={"extensions": extensions})
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    await api.http.post("/graphql", json={"query": PAGE, "extensions": extensions})
    known = await api.http.post("/graphql", json={"extensions": extensions})
    assert names(known) == ["Cats"]


@pytest.mark.env(LORASHELF_PUBLIC_CACHE="1s")
async def test_download_counts_lag_at_most_the_stated_window(
    api: Api, clock: MutableClock, published: tuple[Person, str, str, str]
) -> None:
    owner, model_id, version_id, _ = published
    query = "{ models(first: 5) { edges { node { name downloadCount } } } }"
    # given an anonymous answer stored
    assert (await post(api, query)).json()["data"]["models"]["edges"][0]["node"][
        "downloadCount"
    ] == 0
    # when someone downloads the weights file
    file_url = (
        await api.gql(
            "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { downloadUrl } } } }",
            {"id": version_id},
        )
    )["node"]["files"][0]["downloadUrl"]
    assert (await api.http.get(file_url)).status_code == 200
    # then the count may lag, but no longer than the window (1 s here)
    clock.advance(1.05)
    count = (await post(api, query)).json()["data"]["models"]["edges"][0]["node"]["downloadCount"]
    assert count == 1


@pytest.mark.env(LORASHELF_PUBLIC_CACHE="0")
async def test_the_cache_can_be_turned_off(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    await post(api, PAGE)
    with counting() as again:
        answer = await post(api, PAGE)
    assert again.count >= 3 and answer.headers["cache-control"] == "no-store"


def test_a_change_through_one_process_ends_reuse_in_another(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PUBLIC_CACHE": "60s"}
    with serve(env, cwd=tmp_path) as first:
        owner = Owner.sign_up(first.url)
        model_id = owner.create_model("Cats")
        version_id = owner.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        owner.upload_weights(version_id)
        owner.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )
        with serve(env, cwd=tmp_path) as second:
            # given the page stored by the second process (a 60 s window)
            query = "{ models(first: 5) { edges { node { name } } } }"

            def seen() -> list[str]:
                return [e["node"]["name"] for e in gql(second.url, query)["models"]["edges"]]

            assert seen() == ["Cats"] and seen() == ["Cats"]
            # when the model is renamed through the first process
            owner.mutate("updateModel", RENAME, {"i": {"modelId": model_id, "name": "Dogs"}})
            # then the second serves the new name within its re-read interval (0.25 s)
            import time

            deadline = time.monotonic() + 1.0
            while seen() != ["Dogs"]:
                assert time.monotonic() < deadline, "the second process kept the old answer"
                time.sleep(0.05)


async def test_private_work_does_not_move_the_cache_an_observer_could_time(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    # given an anonymous observer whose page is cached (a miss would run its queries)
    await post(api, PAGE)
    # when a user creates a model, a draft, a private dataset and a weights file, and
    # signs in and out: nothing an anonymous viewer could see
    bob = await api.sign_up("bob")
    model_id = await api.create_model(bob, "Hidden")
    version_id = await api.create_version(bob, model_id)
    await api.upload(bob, version_id, "PRIVATE")
    await api.upload_file(bob, version_id)
    await api.mutate("logOut", "mutation { logOut { ok userErrors { code } } }", {}, bob.token)
    # then the observer's next answer is still served from the cache, without even a
    # read of the generation: a miss, or that read (their timing), would have told that
    # someone did something private just now
    with counting() as again:
        answer = await post(api, PAGE)
    assert names(answer) == ["Cats"] and again.count == 0, again.count


async def test_texts_that_differ_by_comments_and_spaces_share_one_answer(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    # given the front page asked for once
    first = await post(api, PAGE)
    # when it is asked for again under a comment, with other spacing and commas
    variant = "# a comment of the client's own\n" + PAGE.replace(" ", "\n  ,") + "  # more"
    with counting() as again:
        second = await post(api, variant)
    # then it is the same answer, from the same entry: the key is the normal form
    assert again.count <= 1, again.count
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]


async def test_only_documents_that_validate_are_persisted(api: Api) -> None:
    # when a document that does not validate is sent with its hash
    document = "{ noSuchField }"
    answer = await api.http.get("/graphql", params={**apq(document), "query": document})
    # then the answer says why, and the hash is still unknown
    assert answer.json()["errors"][0]["message"].startswith("Cannot query field 'noSuchField'")
    unknown = await api.http.get("/graphql", params=apq(document))
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.env(LORASHELF_PERSISTED_QUERIES_BYTES="64KiB")
async def test_persisted_documents_are_kept_in_normal_form_within_their_budget(
    api: Api,
) -> None:
    # given a document registered padded with 30 kB of comments
    padded = "{ __typename } # " + "x" * 30_000
    await api.http.get("/graphql", params={**apq(padded), "query": padded})
    # when 200 others are registered (a budget of 64 KiB: about 100 small documents)
    for i in range(200):
        other = f"query Q{i} {{ __typename }}"
        await api.http.get("/graphql", params={**apq(other), "query": other})
    # then the latest are known by hash, the oldest were let go
    latest = "query Q199 { __typename }"
    assert (await api.http.get("/graphql", params=apq(latest))).json() == {
        "data": {"__typename": "Query"}
    }
    gone = await api.http.get("/graphql", params=apq(padded))
    assert gone.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


def test_an_unpaired_surrogate_is_a_clear_400_and_one_log_line(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        # when a persisted query, a document, a variable and an operation name each
        # carry an unpaired UTF-16 surrogate (JSON's \ud800 escape)
        bodies = [
            '{"query": "{ __typename } # \\ud800", "extensions": {"persistedQuery": '
            '{"version": 1, "sha256Hash": "00"}}}',
            '{"query": "{ models(query: \\"\\ud800\\") { edges { cursor } } }"}',
            '{"query": "query($q: String) { models(query: $q) { edges { cursor } } }", '
            '"variables": {"q": "\\ud800"}}',
            '{"query": "{ __typename }", "operationName": "\\ud800"}',
        ]
        answers = [
            httpx.post(
                f"{server.url}/graphql",
                content=body,
                headers={"content-type": "application/json"},
            )
            for body in bodies
        ]
        answers.append(
            httpx.get(
                f"{server.url}/graphql",
                params={
                    "query": "{ __typename }",
                    "extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "\\ud800"}}',
                },
            )
        )
        log = server.log.read_text()
    # then each is a 400 that says what is wrong, with a stable code
    for answer in answers:
        assert answer.status_code == 400, answer.text
        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "INVALID_UNICODE"
        assert "unpaired UTF-16 surrogate" in error["message"]
    # and the log holds one access line each, no traceback
    assert "Traceback" not in log and "UnicodeEncodeError" not in log
    assert log.count('"POST /graphql HTTP/1.1" 400') == 4
    assert log.count("GET /graphql?") == 1


def test_an_unpaired_surrogate_over_a_websocket_closes_it_with_4400_and_no_traceback(
    tmp_path: Path,
) -> None:
    from tests.live import Closed, over_network

    subscribe = '{"id": "s", "type": "subscribe", "payload": %s}'
    messages = [
        subscribe % '{"query": "subscription { notificationAdded { id } } # \\ud800"}',
        subscribe % '{"query": "subscription { notificationAdded(x: \\"\\ud800\\") { id } }"}',
        subscribe
        % (
            '{"query": "subscription($id: ID!) { datasetChanged(id: $id) { id } }", '
            '"variables": {"id": "\\ud800"}}'
        ),
        subscribe
        % '{"query": "subscription { notificationAdded { id } }", "operationName": "\\ud800"}',
    ]
    closes = []
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        token = Owner.sign_up(server.url).token
        # when a signed-in client's subscription carries an unpaired UTF-16 surrogate in
        # its document, a string in it, a variable, its operation name
        for message in messages:
            live, sock = over_network(server.url)
            try:
                live.init({"Authorization": f"Bearer {token}"})
                sock.send(message)
                with pytest.raises(Closed) as closed:
                    live.message("s", timeout=5)
                closes.append((closed.value.code, closed.value.reason))
            finally:
                sock.close()
        log = server.log.read_text()
    # then the socket is closed as the protocol says for a message it cannot read
    assert closes == [(4400, "WebSocket message must be valid JSON")] * len(messages)
    # and nothing went wrong inside
    assert "Traceback" not in log and "INTERNAL_ERROR" not in log


def test_operations_pipelined_after_one_that_closes_the_socket_leave_no_traceback(
    tmp_path: Path,
) -> None:
    from tests.live import over_network

    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, tmp_path) as server:
        token = Owner.sign_up(server.url).token
        # when clients send three subscriptions at once whose documents do not parse
        # (the first closes the socket with 4400; the others find it closed)
        for _ in range(3):
            live, sock = over_network(server.url)
            try:
                live.init({"Authorization": f"Bearer {token}"})
                for i in range(3):
                    live.subscribe(f"broken{i}", "subscription { notificationAdded { id } ")
                time.sleep(0.3)
            finally:
                sock.close()
        time.sleep(0.5)
        log = server.log.read_text()
    # then the log holds their connections and nothing went wrong inside
    assert log.count('"WebSocket /graphql" [accepted]') == 3
    assert "Traceback" not in log and "Exception in worker task" not in log


CATALOGUE = "{ models(first: 20) { edges { node { id name versions { name } } } } }"
TRAINING_DATA = (
    "{ models(first: 20) { edges { node { versions { files { headerMetadata { key value } } "
    "} } } } }"
)


async def test_answers_a_datasets_visibility_governs_are_left_to_no_shared_cache(
    api: Api, published: tuple[Person, str, str, str]
) -> None:
    owner, _, _, dataset_id = published
    # when anonymous viewers ask for the catalogue, for the header's training-data keys
    # (shown while the dataset is public), for the dataset, and for a file by its hash
    catalogue = await post(api, CATALOGUE)
    governed = [
        await post(api, TRAINING_DATA),
        await post(
            api,
            "{ models(first: 1) { edges { node { versions { files { architecture "
            "{ networkDim } } } } } } }",
        ),
        await post(api, PAGE),
        await post(
            api, '{ modelVersionByHash(hash: "0123456789") { id } retentionPolicy { notice } }'
        ),
        await post(
            api,
            "fragment F on ModelVersion { trainingDataset { id } } "
            "{ models(first: 1) { edges { node { versions { ...F } } } } }",
        ),
    ]
    # then the catalogue may be kept by a CDN; the others only by the asker's browser,
    # so that making the dataset private ends them everywhere at once
    assert catalogue.headers["cache-control"].startswith("public, max-age=")
    for answer in governed:
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"].startswith("private, max-age="), answer.text
    # and lorashelf's own cache answers the change at once
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    after = await post(api, PAGE)
    assert datasets(after) == [None]


def test_every_shareable_field_is_a_field_of_its_type() -> None:
    from graphql import GraphQLObjectType, build_schema

    from graph.schema.documents import SHAREABLE_FIELDS

    schema = build_schema((Path(__file__).parents[2] / "schema.graphql").read_text())
    for type_name, fields in SHAREABLE_FIELDS.items():
        type_ = schema.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType), type_name
        assert fields <= set(type_.fields), (type_name, fields - set(type_.fields))
