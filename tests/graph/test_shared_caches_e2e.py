"""A CDN in front of lorashelf never serves on what an owner just withdrew.

Anonymous answers carry ``Cache-Control: public, max-age`` only when every field they
select is in the catalogue's allow-list (``SHAREABLE_FIELDS``); anything a training
dataset's visibility governs (the dataset, a weights file's header and what follows
from it, lookups by id or hash) is ``private``. Against a real ``serve`` over TCP: the
document selecting every shareable field is shareable and its answer does not move
when a dataset is made private; every governed document is private."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from graphql import GraphQLObjectType, build_schema, get_named_type

from graph.schema.documents import SHAREABLE_FIELDS
from tests.conftest import make_safetensors
from tests.processes import Owner, serve, zip_bytes

SCHEMA = build_schema((Path(__file__).parents[2] / "schema.graphql").read_text())
VISIBILITY = (
    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
    "{ dataset { id } userErrors { code message } } }"
)


def everything_shareable() -> tuple[str, set[tuple[str, str]]]:
    """One document selecting every field of SHAREABLE_FIELDS reachable from Query (a
    type entered again on one path only through a field not selected yet, and never a
    third time), and the (type, field) pairs it selects."""
    selected: set[tuple[str, str]] = set()

    def selection(type_: GraphQLObjectType, path: tuple[str, ...]) -> str:
        parts = []
        for name in sorted(SHAREABLE_FIELDS[type_.name]):
            field = type_.fields[name]
            named = get_named_type(field.type)
            args = []
            if "first" in field.args:
                args.append("first: 3")
            if name == "model" and type_.name == "Query":
                args.append("id: $model")
            head = name + (f"({', '.join(args)})" if args else "")
            if isinstance(named, GraphQLObjectType):
                seen = path.count(named.name)
                if seen >= 2 or (seen and (type_.name, name) in selected):
                    continue
                head += " { " + selection(named, (*path, named.name)) + " }"
            selected.add((type_.name, name))
            parts.append(head)
        return " ".join(parts)

    query = SCHEMA.query_type
    assert query is not None
    return "query Everything($model: ID!) { " + selection(query, ("Query",)) + " }", selected


GOVERNED = [
    "{ models(first: 5) { edges { node { versions { files { headerMetadata { key value } } } } } } }",
    "{ models(first: 5) { edges { node { versions { files { architecture { networkDim } } } } } } }",
    "{ models(first: 5) { edges { node { versions { files { sizeBytes } } } } } }",
    "{ models(first: 5) { edges { node { versions { trainingDataset { id visibility } } } } } }",
    "{ models(first: 5) { edges { node { owner { trainingDatasets(first: 5) "
    "{ edges { node { id } } } } } } } }",
    "query($d: ID!) { node(id: $d) { id } }",
    "query($d: ID!) { node(id: $d) { __typename } }",
    "fragment F on ModelVersion { trainingDataset { id } } "
    "{ models(first: 5) { edges { node { versions { ...F } } } } }",
    '{ modelVersionByHash(hash: "0123456789abcdef") { id } }',
    "{ viewer { id } }",
]


def without_cursors(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_cursors(v) for k, v in value.items() if k not in ("cursor", "endCursor")}
    if isinstance(value, list):
        return [without_cursors(v) for v in value]
    return value


def ask(url: str, query: str, variables: dict[str, Any]) -> httpx.Response:
    answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "errors" not in answer.json(), answer.text
    return answer


def test_a_cdn_may_keep_the_catalogue_and_nothing_a_datasets_visibility_governs(
    tmp_path: Path,
) -> None:
    document, selected = everything_shareable()
    # the document really selects every shareable field
    assert selected == {(t, f) for t, fields in SHAREABLE_FIELDS.items() for f in fields}
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PUBLIC_CACHE": "10s"}
    with serve(env, cwd=tmp_path) as server:
        # given a published version whose dataset is public, and whose weights file's
        # header carries training-data keys
        owner = Owner.sign_up(server.url)
        model_id = owner.create_model("Cats")
        version_id = owner.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        owner.upload_weights(
            version_id,
            make_safetensors({"ss_tag_frequency": json.dumps({"cats": {"tabby": 3}})}),
        )
        content = zip_bytes({"images/cat.txt": b"meow" * 500})
        started = owner.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id } uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "cats.zip",
                    "sizeBytes": len(content),
                    "visibility": "PUBLIC",
                    "ownsRights": True,
                }
            },
        )
        assert httpx.put(started["uploadUrl"], content=content, timeout=10).status_code == 200
        dataset_id = started["dataset"]["id"]
        owner.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )
        variables = {"model": model_id, "d": dataset_id}
        # when anonymous viewers ask for the catalogue and for what the dataset governs
        catalogue = ask(server.url, document, {"model": model_id})
        governed = [ask(server.url, q, variables) for q in GOVERNED]
        # then the catalogue may be kept by a CDN, everything else by the asker alone
        assert catalogue.headers["cache-control"].startswith("public, max-age=")
        for query, answer in zip(GOVERNED, governed, strict=True):
            assert answer.headers["cache-control"].startswith("private, max-age="), query
        assert dataset_id in governed[3].text  # the dataset was shown
        # and when the owner makes the dataset private, nothing a CDN kept shows it:
        # the catalogue's answer is the same (cursors are sealed afresh each time)
        owner.mutate(
            "setDatasetVisibility",
            VISIBILITY,
            {"i": {"datasetId": dataset_id, "visibility": "PRIVATE"}},
        )
        after = ask(server.url, document, {"model": model_id})
        assert without_cursors(after.json()) == without_cursors(catalogue.json())
        assert dataset_id not in ask(server.url, GOVERNED[3], variables).text
