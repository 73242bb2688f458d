"""The catalogue: model and version fields (type, tags, nsfw, baseModel, trainedWords,
downloadCount), their limits and updates, search, filters, sorts and paging,
modelVersionByHash, the architecture read from a weights file's header, and the
cost of catalogue documents."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.conftest import Api, MutableClock, Person, make_safetensors, missing_id

MODEL_FIELDS = "id name description type tags nsfw downloadCount owner { id username }"
VERSION_FIELDS = "id name status baseModel trainedWords downloadCount"
ERRORS = "userErrors { field code message }"

CREATE_MODEL = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    f"{{ model {{ {MODEL_FIELDS} }} {ERRORS} }} }}"
)
UPDATE_MODEL = (
    "mutation($i: UpdateModelInput!) { updateModel(input: $i) "
    f"{{ model {{ {MODEL_FIELDS} }} {ERRORS} }} }}"
)
CREATE_VERSION = (
    "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
    f"{{ version {{ {VERSION_FIELDS} }} {ERRORS} }} }}"
)
UPDATE_VERSION = (
    "mutation($i: UpdateModelVersionInput!) { updateModelVersion(input: $i) "
    f"{{ version {{ {VERSION_FIELDS} }} {ERRORS} }} }}"
)
DELETE_MODEL = "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { model { id } userErrors { code } } }"
MODEL = f"query($id: ID!) {{ node(id: $id) {{ ... on Model {{ {MODEL_FIELDS} }} }} }}"
MODEL_VERSIONS = (
    f"query($id: ID!) {{ node(id: $id) {{ ... on Model {{ versions {{ {VERSION_FIELDS} }} }} }} }}"
)
VERSION = f"query($id: ID!) {{ node(id: $id) {{ ... on ModelVersion {{ {VERSION_FIELDS} }} }} }}"
MODELS = """
query(
  $first: Int, $after: String, $ownerId: ID, $query: String, $tag: String,
  $baseModel: BaseModelName, $type: ModelType, $sort: ModelSort! = NEWEST,
  $includeNsfw: Boolean! = false
) {
  models(
    first: $first, after: $after, ownerId: $ownerId, query: $query, tag: $tag,
    baseModel: $baseModel, type: $type, sort: $sort, includeNsfw: $includeNsfw
  ) {
    edges { cursor node { id name downloadCount } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
FILE_URLS = "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { id downloadUrl } } } }"
BY_HASH = "query($h: String!) { modelVersionByHash(hash: $h) { id name model { id } } }"
ARCHITECTURE = """
query($id: ID!) {
  node(id: $id) {
    ... on ModelVersion {
      files {
        filename
        architecture {
          networkModule networkDim networkAlpha baseModelVersion modelspecArchitecture
          algo suggestedBaseModel suggestedType
        }
      }
    }
  }
}
"""


# Helpers -----------------------------------------------------------------------


def token(who: Person | None) -> str | None:
    return who.token if who else None


async def create_model(api: Api, owner: Person, **fields: Any) -> dict[str, Any]:
    """createModel's raw payload (model, userErrors)."""
    payload: dict[str, Any] = (
        await api.gql(CREATE_MODEL, {"i": {"name": "Model", **fields}}, owner.token)
    )["createModel"]
    return payload


async def new_model(api: Api, owner: Person, **fields: Any) -> dict[str, Any]:
    payload = await create_model(api, owner, **fields)
    assert payload["userErrors"] == [], payload["userErrors"]
    model: dict[str, Any] = payload["model"]
    return model


async def create_version(api: Api, owner: Person, model_id: str, **fields: Any) -> dict[str, Any]:
    """createModelVersion's raw payload (version, userErrors)."""
    values = {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0", **fields}
    payload: dict[str, Any] = (await api.gql(CREATE_VERSION, {"i": values}, owner.token))[
        "createModelVersion"
    ]
    return payload


async def new_version(api: Api, owner: Person, model_id: str, **fields: Any) -> dict[str, Any]:
    payload = await create_version(api, owner, model_id, **fields)
    assert payload["userErrors"] == [], payload["userErrors"]
    version: dict[str, Any] = payload["version"]
    return version


async def update_model(api: Api, who: Person, model_id: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(UPDATE_MODEL, {"i": {"modelId": model_id, **fields}}, who.token)
    )["updateModel"]
    return payload


async def update_version(api: Api, who: Person, version_id: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(UPDATE_VERSION, {"i": {"versionId": version_id, **fields}}, who.token)
    )["updateModelVersion"]
    return payload


async def model_node(api: Api, model_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (await api.gql(MODEL, {"id": model_id}, token(who)))["node"]
    return node


async def version_node(api: Api, version_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (await api.gql(VERSION, {"id": version_id}, token(who)))["node"]
    return node


async def published(
    api: Api,
    owner: Person,
    name: str,
    *,
    base_model: str = "SDXL_1_0",
    words: list[str] | None = None,
    body: bytes | None = None,
    **fields: Any,
) -> tuple[str, str]:
    """A model with one published version: (model id, version id)."""
    model = await new_model(api, owner, name=name, **fields)
    version = await new_version(
        api, owner, model["id"], baseModel=base_model, trainedWords=words or []
    )
    if body is not None:
        await api.upload_file(owner, version["id"], body)
    await api.publish(owner, version["id"])
    return model["id"], version["id"]


async def models_raw(api: Api, who: Person | None = None, **args: Any) -> dict[str, Any]:
    return await api.raw(MODELS, args, token(who))


async def page(api: Api, who: Person | None = None, **args: Any) -> dict[str, Any]:
    body = await models_raw(api, who, **args)
    assert "errors" not in body, body["errors"]
    connection: dict[str, Any] = body["data"]["models"]
    return connection


async def names(api: Api, who: Person | None = None, **args: Any) -> list[str]:
    """The names a catalogue listing shows, in order (at most 100)."""
    connection = await page(api, who, first=100, **args)
    return [edge["node"]["name"] for edge in connection["edges"]]


async def error_code(api: Api, who: Person | None = None, **args: Any) -> str:
    """The code of the error a catalogue listing answers with (it must fail)."""
    body = await models_raw(api, who, **args)
    assert body.get("errors"), body
    assert body["data"] is None
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def download_fully(api: Api, version_id: str, times: int) -> None:
    """Download a published version's primary file ``times`` times, each through a
    freshly minted link, to its last byte."""
    for _ in range(times):
        data = await api.gql(FILE_URLS, {"id": version_id})
        url = data["node"]["files"][0]["downloadUrl"]
        response = await api.http.get(url)
        assert response.status_code == 200, response.text


def cursor(position: str) -> str:
    """A cursor as the API encodes them, around any position text."""
    return base64.urlsafe_b64encode(f"cursor:{position}".encode()).decode().rstrip("=")


def weights(seed: int, metadata: dict[str, str] | None = None) -> bytes:
    """A small safetensors file whose tensors differ by ``seed``."""
    tensors = {
        "lora_unet_down.lora_down.weight": np.full((4, 4), seed, dtype=np.float16),
        "lora_unet_down.lora_up.weight": np.arange(8, dtype=np.float32).reshape(4, 2) + seed,
    }
    return make_safetensors(metadata, tensors)


@dataclass
class Catalogue:
    """Four models by two people, seen by a third:

    - alice's "Kitten Paradise": LORA, tags pastel/cats, SDXL, trained word meowzer;
    - bob's "Dog Park": LOCON, tag dogs, SD 1.5, trained word woofer, plus a draft
      version for FLUX.1 dev with the trained word secretword;
    - bob's "Night Kitten": NSFW, DORA, tag cats, SDXL;
    - alice's "Unfinished Sketch": a draft model (SDXL draft version), tag cats.
    """

    alice: Person
    bob: Person
    carol: Person
    kitten: str
    dog: str
    dog_draft: str
    night: str
    sketch: str


DOG_DESCRIPTION = 'a sunny afternoon; 100% "good boy" * stars_under -- fetch'


async def catalogue(api: Api, clock: MutableClock) -> Catalogue:
    alice = await api.sign_up("whiskers_fan")
    bob = await api.sign_up("barker")
    carol = await api.sign_up("carol")
    kitten, _ = await published(
        api,
        alice,
        "Kitten Paradise",
        description="soft watercolor fur",
        tags=["pastel", "cats"],
        words=["meowzer"],
    )
    clock.advance(60)
    dog, _ = await published(
        api,
        bob,
        "Dog Park",
        description=DOG_DESCRIPTION,
        type="LOCON",
        tags=["dogs"],
        base_model="SD_1_5",
        words=["woofer"],
    )
    dog_draft = await new_version(
        api, bob, dog, name="v2", baseModel="FLUX_1_D", trainedWords=["secretword"]
    )
    clock.advance(60)
    night, _ = await published(
        api,
        bob,
        "Night Kitten",
        description="moonlit scene",
        type="DORA",
        tags=["cats"],
        nsfw=True,
    )
    clock.advance(60)
    sketch = await new_model(api, alice, name="Unfinished Sketch", tags=["cats"])
    await new_version(api, alice, sketch["id"], baseModel="SDXL_1_0", trainedWords=["doodle"])
    return Catalogue(alice, bob, carol, kitten, dog, dog_draft["id"], night, sketch["id"])


# 1. Creating models and versions -------------------------------------------------


async def test_create_model_defaults_and_catalogue_fields(api: Api) -> None:
    # given alice
    alice = await api.sign_up("alice")
    # when she creates a model with only a name, and one with every catalogue field
    plain = await new_model(api, alice, name="Plain")
    full = await new_model(
        api,
        alice,
        name="Full",
        description="everything",
        type="LOCON",
        tags=[" #Anime ", "anime", "Cute  Cats", "#cute cats", "##Pixel-Art", "v1.5_beta+"],
        nsfw=True,
    )
    # then the defaults are a LoRA, no tags, safe for work, never downloaded
    assert plain["type"] == "LORA"
    assert plain["tags"] == []
    assert plain["nsfw"] is False
    assert plain["downloadCount"] == 0
    assert plain["description"] == ""
    # and tags are lower-cased, trimmed, without '#', duplicates dropped, order kept
    assert full["type"] == "LOCON"
    assert full["nsfw"] is True
    assert full["tags"] == ["anime", "cute cats", "pixel-art", "v1.5_beta+"]
    # and a node read answers the same
    again = await model_node(api, full["id"], alice)
    assert again is not None
    assert (again["type"], again["tags"], again["nsfw"]) == ("LOCON", full["tags"], True)


async def test_create_version_takes_base_model_and_trained_words(api: Api) -> None:
    # given alice's model
    alice = await api.sign_up("alice")
    model = await new_model(api, alice, name="Cats")
    # when she adds a version with trained words, and one without
    worded = await new_version(
        api,
        alice,
        model["id"],
        name="v1",
        baseModel="PONY",
        trainedWords=["Meowzer ", " Meowzer", "purr  purr", "  "],
    )
    bare = await new_version(api, alice, model["id"], name="v2", baseModel="FLUX_1_S")
    # then the words are trimmed, repeated ones dropped, blank ones left out
    assert worded["baseModel"] == "PONY"
    assert worded["trainedWords"] == ["Meowzer", "purr purr"]
    assert worded["downloadCount"] == 0
    assert worded["status"] == "DRAFT"
    assert bare["baseModel"] == "FLUX_1_S"
    assert bare["trainedWords"] == []
    # and the base model is required
    body = await api.raw(
        "mutation { createModelVersion(input: {modelId: "
        f'"{model["id"]}", name: "v3"}}) {{ version {{ id }} userErrors {{ code }} }} }}',
        token=alice.token,
    )
    assert body.get("errors")
    versions = (await api.gql(MODEL_VERSIONS, {"id": model["id"]}, alice.token))["node"]
    assert sorted(v["name"] for v in versions["versions"]) == ["v1", "v2"]


async def test_catalogue_fields_at_their_bounds_are_accepted(api: Api) -> None:
    # given alice
    alice = await api.sign_up("alice")
    # when every field is exactly at its limit (11 tags of which two are the same tag)
    tags = [f"tag{n}" for n in range(9)] + ["x" * 32, "#X" + "x" * 31]
    model = await new_model(api, alice, name="n" * 200, description="d" * 20_000, tags=tags)
    words = [f"word{n}" for n in range(19)] + ["w" * 100]
    version = await new_version(api, alice, model["id"], name="v" * 200, trainedWords=words)
    # then all of it is kept
    assert model["name"] == "n" * 200
    assert len(model["description"]) == 20_000
    assert model["tags"] == tags[:10]
    assert version["trainedWords"] == words


CREATE_MODEL_REFUSALS = [
    ({"tags": [f"tag{n}" for n in range(11)]}, "tags", "TOO_MANY_TAGS"),
    ({"tags": ["fine", "t" * 33]}, "tags", "INVALID_TAG"),
    ({"tags": ["fine", "cats/dogs"]}, "tags", "INVALID_TAG"),
    ({"name": "n" * 201}, "name", "NAME_TOO_LONG"),
    ({"description": "d" * 20_001}, "description", "DESCRIPTION_TOO_LONG"),
]


async def test_create_model_refusals_leave_nothing(api: Api) -> None:
    # given alice
    alice = await api.sign_up("alice")
    for fields, field, code in CREATE_MODEL_REFUSALS:
        # when she creates a model breaking one limit
        payload = await create_model(api, alice, **{"name": "Refused", "tags": ["ok"], **fields})
        # then it is refused with a code naming the field
        assert payload["model"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)]
    # and nothing was created, not even a draft she alone could see
    assert await names(api, alice, includeNsfw=True) == []
    mine = await api.gql(
        "{ viewer { models(includeNsfw: true) { edges { node { id } } } } }", token=alice.token
    )
    assert mine["viewer"]["models"]["edges"] == []


CREATE_VERSION_REFUSALS = [
    ({"trainedWords": [f"word{n}" for n in range(21)]}, "trainedWords", "TOO_MANY_WORDS"),
    ({"trainedWords": ["fine", "w" * 101]}, "trainedWords", "WORD_TOO_LONG"),
    ({"name": "v" * 201}, "name", "NAME_TOO_LONG"),
]


async def test_create_version_refusals_leave_nothing(api: Api) -> None:
    # given alice's model
    alice = await api.sign_up("alice")
    model = await new_model(api, alice, name="Cats")
    for fields, field, code in CREATE_VERSION_REFUSALS:
        # when she adds a version breaking one limit
        payload = await create_version(api, alice, model["id"], **fields)
        # then it is refused with a code naming the field
        assert payload["version"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)]
    # and the model has no version
    node = (await api.gql(MODEL_VERSIONS, {"id": model["id"]}, alice.token))["node"]
    assert node["versions"] == []


# 2. Updating ---------------------------------------------------------------------


async def test_update_model_changes_only_what_is_given(api: Api) -> None:
    # given alice's published model
    alice = await api.sign_up("alice")
    model_id, _ = await published(
        api, alice, "Cats", description="fluffy", tags=["Pastel", "cats"], type="LORA"
    )
    before = await model_node(api, model_id, alice)
    assert before is not None
    # when she changes only the nsfw flag
    payload = await update_model(api, alice, model_id, nsfw=True)
    # then everything else stays as it was
    assert payload["userErrors"] == []
    assert payload["model"] == {**before, "nsfw": True}
    # when she changes the type and description
    payload = await update_model(api, alice, model_id, type="DORA", description="sleek")
    assert payload["userErrors"] == []
    assert payload["model"] == {**before, "nsfw": True, "type": "DORA", "description": "sleek"}
    # when she changes the tags: they are replaced, normalised the same way
    payload = await update_model(api, alice, model_id, tags=["#Sleepy", " Cats "])
    assert payload["userErrors"] == []
    assert payload["model"]["tags"] == ["sleepy", "cats"]
    assert payload["model"]["name"] == "Cats"
    # and clearing them is possible
    payload = await update_model(api, alice, model_id, tags=[])
    assert payload["model"]["tags"] == []
    # and the node read agrees
    after = await model_node(api, model_id, alice)
    assert after == payload["model"]


async def test_search_and_filters_follow_a_model_update(api: Api) -> None:
    # given alice's published model found by its tag and name
    alice = await api.sign_up("alice")
    carol = await api.sign_up("carol")
    model_id, _ = await published(
        api, alice, "Moonbeam", description="glowing", tags=["oldtag"], type="LORA"
    )
    assert await names(api, carol, tag="oldtag") == ["Moonbeam"]
    assert await names(api, carol, query="oldtag") == ["Moonbeam"]
    # when she replaces the tags, renames it, rewrites the description and the type
    payload = await update_model(
        api,
        alice,
        model_id,
        tags=["newtag"],
        name="Sunray",
        description="blazing",
        type="LOCON",
    )
    assert payload["userErrors"] == []
    # then search and filters follow: the old values no longer match, the new ones do
    for old in (
        {"tag": "oldtag"},
        {"query": "oldtag"},
        {"query": "moonbeam"},
        {"query": "glowing"},
        {"type": "LORA"},
    ):
        assert await names(api, carol, **old) == [], old
    for new in (
        {"tag": "newtag"},
        {"query": "newtag"},
        {"query": "sunray"},
        {"query": "blazing"},
        {"type": "LOCON"},
    ):
        assert await names(api, carol, **new) == ["Sunray"], new
    # when she marks it NSFW, it leaves others' default listing but stays in hers
    await update_model(api, alice, model_id, nsfw=True)
    assert await names(api, carol) == []
    assert await names(api, carol, includeNsfw=True) == ["Sunray"]
    assert await names(api, alice) == ["Sunray"]


async def test_update_model_refusals_change_nothing(api: Api) -> None:
    # given alice's model
    alice = await api.sign_up("alice")
    model = await new_model(api, alice, name="Cats", tags=["cats"])
    # when an update breaks a limit alongside a valid change
    refusals = [
        ({"name": "Dogs", "tags": [f"t{n}x" for n in range(11)]}, "TOO_MANY_TAGS"),
        ({"name": "Dogs", "tags": ["a/b"]}, "INVALID_TAG"),
        ({"tags": ["dogs"], "name": "n" * 201}, "NAME_TOO_LONG"),
        ({"tags": ["dogs"], "description": "d" * 20_001}, "DESCRIPTION_TOO_LONG"),
    ]
    for fields, code in refusals:
        payload = await update_model(api, alice, model["id"], **fields)
        # then it is refused and nothing changed
        assert payload["model"] is None
        assert [e["code"] for e in payload["userErrors"]] == [code]
        assert await model_node(api, model["id"], alice) == model


async def test_update_model_version_changes_only_what_is_given(api: Api) -> None:
    # given alice's published version
    alice = await api.sign_up("alice")
    carol = await api.sign_up("carol")
    _, version_id = await published(
        api, alice, "Cats", base_model="SD_1_5", words=["oldword", "shared"]
    )
    before = await version_node(api, version_id, alice)
    assert before is not None
    assert await names(api, carol, query="oldword") == ["Cats"]
    # when she changes only the trained words
    payload = await update_version(api, alice, version_id, trainedWords=["newword", "shared"])
    # then they are replaced and the rest is as it was
    assert payload["userErrors"] == []
    assert payload["version"] == {**before, "trainedWords": ["newword", "shared"]}
    # and search follows
    assert await names(api, carol, query="oldword") == []
    assert await names(api, carol, query="newword") == ["Cats"]
    # when she changes only the base model
    payload = await update_version(api, alice, version_id, baseModel="ILLUSTRIOUS")
    assert payload["version"] == {
        **before,
        "trainedWords": ["newword", "shared"],
        "baseModel": "ILLUSTRIOUS",
    }
    assert await names(api, carol, baseModel="SD_1_5") == []
    assert await names(api, carol, baseModel="ILLUSTRIOUS") == ["Cats"]
    # when she renames it, the words and base model stay
    payload = await update_version(api, alice, version_id, name="v1-final")
    assert payload["version"]["name"] == "v1-final"
    assert payload["version"]["trainedWords"] == ["newword", "shared"]
    assert payload["version"]["baseModel"] == "ILLUSTRIOUS"
    # and refusals change nothing
    now = await version_node(api, version_id, alice)
    for fields, code in (
        ({"name": "v2", "trainedWords": [f"w{n}xx" for n in range(21)]}, "TOO_MANY_WORDS"),
        ({"name": "v2", "trainedWords": ["w" * 101]}, "WORD_TOO_LONG"),
        ({"trainedWords": ["fine"], "name": "v" * 201}, "NAME_TOO_LONG"),
    ):
        refused = await update_version(api, alice, version_id, **fields)
        assert refused["version"] is None
        assert [e["code"] for e in refused["userErrors"]] == [code]
        assert await version_node(api, version_id, alice) == now
    assert await names(api, carol, query="fine") == []


async def test_updating_someone_elses_model_answers_like_a_missing_one(api: Api) -> None:
    # given alice's published model and version, and a model she deleted
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    model_id, version_id = await published(api, alice, "Cats", tags=["cats"], words=["meow"])
    gone = await new_model(api, alice, name="Gone")
    gone_version = await new_version(api, alice, gone["id"])
    deleted = await api.gql(DELETE_MODEL, {"i": {"modelId": gone["id"]}}, alice.token)
    assert deleted["deleteModel"]["userErrors"] == []
    before = await model_node(api, model_id, alice)
    before_version = await version_node(api, version_id, alice)
    # when bob updates her model, a deleted one, one that never existed, and garbage
    answers = []
    for target in (model_id, gone["id"], missing_id("Model"), "garbage", version_id):
        payload = await update_model(api, bob, target, name="Mine now", tags=["stolen"])
        answers.append((payload["model"], payload["userErrors"]))
    # then every answer is the same not-found
    assert answers[0][0] is None
    assert answers[0][1] and answers[0][1][0]["code"] == "NOT_FOUND"
    assert all(answer == answers[0] for answer in answers), answers
    # and the same for versions
    version_answers = []
    for target in (
        version_id,
        gone_version["id"],
        missing_id("ModelVersion"),
        "garbage",
        model_id,
    ):
        payload = await update_version(api, bob, target, trainedWords=["stolen"])
        version_answers.append((payload["version"], payload["userErrors"]))
    assert version_answers[0][0] is None
    assert version_answers[0][1] and version_answers[0][1][0]["code"] == "NOT_FOUND"
    assert all(answer == version_answers[0] for answer in version_answers), version_answers
    # and nothing changed
    assert await model_node(api, model_id, alice) == before
    assert await version_node(api, version_id, alice) == before_version
    assert await names(api, bob, query="stolen") == []
    # and alice herself gets the same answer for her deleted model
    own = await update_model(api, alice, gone["id"], name="Back")
    assert (own["model"], own["userErrors"]) == answers[0]


# 3. Search -----------------------------------------------------------------------


async def test_search_matches_every_field_in_any_case_as_a_substring(
    api: Api, clock: MutableClock
) -> None:
    # given the catalogue
    cat = await catalogue(api, clock)
    for who in (None, cat.carol):
        # then a word of the name, description, a tag, a trained word or the owner's
        # name finds the model, in any case and as a part of a word
        for query in (
            "kitt",
            "KITTEN",
            "Paradise",
            "aradi",
            "WaterCol",
            "fur",
            "PASTEL",
            "meowz",
            "MEOWZER",
            "whiskers",
            "KERS_F",
        ):
            assert await names(api, who, query=query) == ["Kitten Paradise"], query
        assert await names(api, who, query="barker") == ["Dog Park"]
        assert await names(api, who, query="WOOF") == ["Dog Park"]
        # and every term must match
        assert await names(api, who, query="kitten fur") == ["Kitten Paradise"]
        assert await names(api, who, query="  pastel   MEOWZER  ") == ["Kitten Paradise"]
        assert await names(api, who, query="kitten dog") == []
        assert await names(api, who, query="kitten woofer") == []
        # and no match is an empty page
        empty = await page(api, who, query="zebra")
        assert empty == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
    # and NSFW matches need includeNsfw, except for their owner
    assert await names(api, cat.carol, query="kitten", includeNsfw=True) == [
        "Night Kitten",
        "Kitten Paradise",
    ]
    assert await names(api, cat.bob, query="kitten") == ["Night Kitten", "Kitten Paradise"]


async def test_non_ascii_text_matches_in_any_case(api: Api) -> None:
    # given a model with non-ASCII words
    alice = await api.sign_up("alice")
    await published(api, alice, "Über Kätzchen", description="Ωmega straße")
    # then they are found in either case
    for query in ("über", "ÜBER", "KÄTZ", "ωmega", "ΩMEGA", "straße"):
        assert await names(api, None, query=query) == ["Über Kätzchen"], query


async def test_draft_versions_trained_words_are_not_searchable(
    api: Api, clock: MutableClock
) -> None:
    # given bob's published "Dog Park" with a draft version whose trained word is secret
    cat = await catalogue(api, clock)
    # then nobody finds the model by that word, not even bob
    for who in (None, cat.carol, cat.alice, cat.bob):
        assert await names(api, who, query="secretword") == [], who
    # when bob changes the draft's words, they are not searchable either
    payload = await update_version(api, cat.bob, cat.dog_draft, trainedWords=["hiddenword"])
    assert payload["userErrors"] == []
    for who in (None, cat.carol, cat.bob):
        assert await names(api, who, query="hiddenword") == []
    # and the published version's words still are
    assert await names(api, cat.carol, query="woofer") == ["Dog Park"]
    # when he publishes the draft
    await api.publish(cat.bob, cat.dog_draft)
    # then its words make the model match, for everybody
    for who in (None, cat.carol, cat.bob):
        assert await names(api, who, query="hiddenword") == ["Dog Park"]
        assert await names(api, who, query="woofer hiddenword") == ["Dog Park"]
    assert await names(api, cat.carol, query="secretword") == []


async def test_a_draft_model_never_appears_for_others(api: Api, clock: MutableClock) -> None:
    # given alice's draft model "Unfinished Sketch" (tag cats, trained word doodle)
    cat = await catalogue(api, clock)
    # then others never see it, whatever they ask
    for who in (None, cat.carol, cat.bob):
        for args in (
            {},
            {"query": "unfinished"},
            {"query": "sketch"},
            {"query": "doodle"},
            {"query": "whiskers"},
            {"tag": "cats", "includeNsfw": True},
            {"ownerId": cat.alice.id},
            {"baseModel": "SDXL_1_0", "includeNsfw": True},
            {"type": "LORA"},
            {"sort": "MOST_DOWNLOADED", "includeNsfw": True},
        ):
            assert "Unfinished Sketch" not in await names(api, who, **args), (who, args)
    # and alice sees her draft in her listing and by its name, not by its draft's words
    assert await names(api, cat.alice) == ["Unfinished Sketch", "Dog Park", "Kitten Paradise"]
    assert await names(api, cat.alice, query="unfinished") == ["Unfinished Sketch"]
    assert await names(api, cat.alice, query="doodle") == []


# Queries with the syntax of FTS5, LIKE and SQL: they mean their characters, literally.
LITERAL_QUERIES = [
    '"kitten',
    'kitten"',
    '"good boy"',
    '"good',
    "boy\"'",
    "100%",
    "%%%",
    "kit%",
    "%itten",
    "stars_under",
    "s_u",
    "___",
    "k_tten",
    "***",
    "kit*",
    "* kitten",
    "---",
    "-- fetch",
    "fetch --",
    "-kitten",
    "kitten'",
    "'kitten'",
    "kitten')--",
    "abc'); DROP TABLE model_search; --",
    "x' OR '1'='1",
    "AND",
    "and kitten",
    "kitten AND paradise",
    "kitten OR dog",
    "NOT kitten",
    "kitten NOT dog",
    "NEAR(kitten",
    "NEAR(kitten, paradise)",
    "NEAR(kitten paradise, 5)",
    "{name}: kitten",
    "name:kitten",
    "^kitten",
    "kitten + paradise",
    "(kitten)",
    "\\kitten",
    "sunny afternoon;",
]

# What each visible model's search text holds (name, description, tags, trained words of
# published versions, owner's username), for the literal meaning of a query.
SEARCH_TEXT = {
    "Kitten Paradise": "kitten paradise\nsoft watercolor fur\npastel\ncats\nmeowzer\nwhiskers_fan",
    "Dog Park": f"dog park\n{DOG_DESCRIPTION.lower()}\ndogs\nwoofer\nbarker",
    "Night Kitten": "night kitten\nmoonlit scene\ncats\nbarker",
}


def literal_matches(query: str) -> list[str] | None:
    """The models whose text contains every term literally, newest first; None when a
    term is too short (the answer must then be INVALID_QUERY)."""
    terms = query.lower().split()
    if any(len(term) < 3 for term in terms):
        return None
    order = ["Night Kitten", "Dog Park", "Kitten Paradise"]
    return [name for name in order if all(term in SEARCH_TEXT[name] for term in terms)]


async def test_queries_with_search_syntax_match_literally(api: Api, clock: MutableClock) -> None:
    # given the catalogue, seen by bob (three models: his own NSFW one included)
    cat = await catalogue(api, clock)
    everything = ["Night Kitten", "Dog Park", "Kitten Paradise"]
    assert await names(api, cat.bob) == everything
    for query in LITERAL_QUERIES:
        # when he searches with quotes, operators, wildcards or SQL
        body = await models_raw(api, cat.bob, first=100, query=query)
        expected = literal_matches(query)
        # then a short term is INVALID_QUERY; otherwise the characters match literally
        if expected is None:
            assert body.get("errors"), query
            assert body["errors"][0]["extensions"]["code"] == "INVALID_QUERY", (query, body)
            continue
        assert "errors" not in body, (query, body["errors"])
        found = [edge["node"]["name"] for edge in body["data"]["models"]["edges"]]
        assert found == expected, query
        assert found != everything, query
    # and the positive cases really were found (the oracle is not vacuous)
    assert literal_matches('"good boy"') == ["Dog Park"]
    assert literal_matches("s_u") == ["Dog Park"]
    # and search still works afterwards
    assert await names(api, cat.bob, query="kitten") == ["Night Kitten", "Kitten Paradise"]


CONTROL_QUERIES = [
    "\x00kitten",
    "kit\x00ten",
    "kitten\x00",
    "kitten\x1b[0m",
    "\x7fkitten",
    "kit\u200bten",
    "kitten\u202e",
]


async def test_control_characters_neither_fail_nor_match_everything(
    api: Api, clock: MutableClock
) -> None:
    # given the catalogue seen by bob
    cat = await catalogue(api, clock)
    for query in CONTROL_QUERIES:
        # when he searches with a control character in a term
        body = await models_raw(api, cat.bob, first=100, query=query)
        # then the answer is a page (or INVALID_QUERY), never an internal error,
        # and it does not list models that hold nothing like the query
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "INVALID_QUERY", (query, body)
            continue
        found = [edge["node"]["name"] for edge in body["data"]["models"]["edges"]]
        assert set(found) <= {"Night Kitten", "Kitten Paradise"}, query
    # and terms shorter than three characters are refused, for anybody
    for query in ("ab", "a", "kitten ab", "ab kitten", "x y z", "kitten paradise no", "éa"):
        for who in (None, cat.bob):
            assert await error_code(api, who, query=query) == "INVALID_QUERY", query


async def test_every_term_must_match_however_many_there_are(api: Api) -> None:
    # given a model whose text holds many words
    alice = await api.sign_up("alice")
    await published(
        api, alice, "Kitten Paradise", description="one two three four five six seven eight"
    )
    # when somebody searches with nine terms of which only the last one is absent
    query = "kitten paradise one two three four five six zebra"
    body = await models_raw(api, None, first=100, query=query)
    # then the model does not match (or the query is refused): a term is never ignored
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] == "INVALID_QUERY", body
    else:
        assert body["data"]["models"]["edges"] == []


# 4. Filters ----------------------------------------------------------------------


async def test_filters_narrow_the_catalogue(api: Api, clock: MutableClock) -> None:
    # given the catalogue
    cat = await catalogue(api, clock)
    carol, alice, bob = cat.carol, cat.alice, cat.bob
    # then without a filter: the published, safe models (newest first)
    assert await names(api, None) == ["Dog Park", "Kitten Paradise"]
    assert await names(api, carol) == ["Dog Park", "Kitten Paradise"]
    # and includeNsfw adds others' NSFW models; the owner always sees his own
    assert await names(api, carol, includeNsfw=True) == [
        "Night Kitten",
        "Dog Park",
        "Kitten Paradise",
    ]
    assert await names(api, None, includeNsfw=True) == [
        "Night Kitten",
        "Dog Park",
        "Kitten Paradise",
    ]
    assert await names(api, bob) == ["Night Kitten", "Dog Park", "Kitten Paradise"]
    assert await names(api, alice) == ["Unfinished Sketch", "Dog Park", "Kitten Paradise"]
    # tag: exact, normalised like tags are stored
    for tag in ("cats", " #CATS ", "Cats", "##cats"):
        assert await names(api, carol, tag=tag) == ["Kitten Paradise"], tag
    assert await names(api, carol, tag="cats", includeNsfw=True) == [
        "Night Kitten",
        "Kitten Paradise",
    ]
    assert await names(api, alice, tag="cats") == ["Unfinished Sketch", "Kitten Paradise"]
    assert await names(api, carol, tag="cat") == []
    assert await names(api, carol, tag="dogs") == ["Dog Park"]
    assert await names(api, carol, tag="nothing") == []
    # baseModel: only models with a version of it the viewer may see
    assert await names(api, carol, baseModel="SDXL_1_0") == ["Kitten Paradise"]
    assert await names(api, carol, baseModel="SDXL_1_0", includeNsfw=True) == [
        "Night Kitten",
        "Kitten Paradise",
    ]
    assert await names(api, carol, baseModel="SD_1_5") == ["Dog Park"]
    assert await names(api, carol, baseModel="PONY", includeNsfw=True) == []
    for who in (None, carol, alice):  # bob's FLUX version is a draft
        assert await names(api, who, baseModel="FLUX_1_D", includeNsfw=True) == [], who
    assert await names(api, bob, baseModel="FLUX_1_D") == ["Dog Park"]
    assert await names(api, alice, baseModel="SDXL_1_0") == [
        "Unfinished Sketch",
        "Kitten Paradise",
    ]
    # type
    assert await names(api, carol, type="LOCON") == ["Dog Park"]
    assert await names(api, carol, type="LORA") == ["Kitten Paradise"]
    assert await names(api, carol, type="DORA") == []
    assert await names(api, carol, type="DORA", includeNsfw=True) == ["Night Kitten"]
    assert await names(api, bob, type="DORA") == ["Night Kitten"]
    # ownerId
    assert await names(api, carol, ownerId=bob.id) == ["Dog Park"]
    assert await names(api, carol, ownerId=bob.id, includeNsfw=True) == [
        "Night Kitten",
        "Dog Park",
    ]
    assert await names(api, carol, ownerId=alice.id) == ["Kitten Paradise"]
    assert await names(api, alice, ownerId=alice.id) == ["Unfinished Sketch", "Kitten Paradise"]
    assert await names(api, carol, ownerId=carol.id) == []
    for bad in ("garbage", cat.kitten, missing_id("User"), ""):
        assert await names(api, carol, ownerId=bad, includeNsfw=True) == [], bad
    # combinations: every filter must hold
    assert await names(api, carol, query="kitten") == ["Kitten Paradise"]
    assert await names(api, carol, query="kitten", includeNsfw=True) == [
        "Night Kitten",
        "Kitten Paradise",
    ]
    assert await names(api, carol, query="kitten", type="DORA", includeNsfw=True) == [
        "Night Kitten"
    ]
    assert await names(api, carol, query="kitten", tag="pastel") == ["Kitten Paradise"]
    assert await names(api, carol, query="kitten", tag="dogs") == []
    assert await names(api, carol, query="barker", baseModel="SD_1_5") == ["Dog Park"]
    assert await names(api, carol, query="barker", baseModel="SDXL_1_0") == []
    assert await names(api, carol, query="barker", baseModel="SDXL_1_0", includeNsfw=True) == [
        "Night Kitten"
    ]
    assert await names(api, carol, query="kitten", ownerId=bob.id) == []
    assert await names(api, carol, query="cats", ownerId=bob.id, includeNsfw=True) == [
        "Night Kitten"
    ]
    assert await names(
        api,
        carol,
        query="moonlit",
        tag="cats",
        type="DORA",
        baseModel="SDXL_1_0",
        ownerId=bob.id,
        includeNsfw=True,
    ) == ["Night Kitten"]
    assert await names(api, carol, query="kitten", sort="MOST_DOWNLOADED") == ["Kitten Paradise"]


async def test_an_invalid_tag_filter_is_not_an_internal_error(api: Api) -> None:
    # given a catalogue with a model
    alice = await api.sign_up("alice")
    await published(api, alice, "Cats", tags=["cats"])
    for tag in ("cats/dogs", "t" * 33, "#", "", "\x00", "ca%", "c_ts"):
        # when somebody filters by a tag no model can have
        body = await models_raw(api, None, first=10, tag=tag)
        # then nothing matches (or the tag is refused as such), never an internal error
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "INVALID_TAG", (tag, body)
        else:
            assert body["data"]["models"]["edges"] == [], tag


# 5. Sorting and paging -----------------------------------------------------------


async def collect(api: Api, who: Person | None, **args: Any) -> list[str]:
    """Every model of a listing, paged two at a time."""
    seen: list[str] = []
    after = None
    for _ in range(20):
        connection = await page(api, who, first=2, after=after, **args)
        edges = connection["edges"]
        assert len(edges) <= 2
        seen += [edge["node"]["name"] for edge in edges]
        info = connection["pageInfo"]
        if not info["hasNextPage"]:
            assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
            return seen
        assert len(edges) == 2
        after = info["endCursor"]
    raise AssertionError("paging did not end")


async def test_newest_first_and_paging(api: Api, clock: MutableClock) -> None:
    # given five published models created one after another
    alice = await api.sign_up("alice")
    for n in range(1, 6):
        await published(api, alice, f"m{n}")
        clock.advance(60)
    # then NEWEST lists the newest first, by default and when asked
    expected = ["m5", "m4", "m3", "m2", "m1"]
    assert await names(api, None) == expected
    assert await names(api, None, sort="NEWEST") == expected
    # and paging two at a time yields each model once, in that order
    assert await collect(api, None) == expected
    assert await collect(api, alice, sort="NEWEST") == expected


async def test_most_downloaded_first_ties_newest_first(api: Api, clock: MutableClock) -> None:
    # given five published models, downloaded 1, 0, 1, 0 and 2 times
    alice = await api.sign_up("alice")
    versions = {}
    for n in range(1, 6):
        _, versions[f"m{n}"] = await published(api, alice, f"m{n}")
        clock.advance(60)
    for name, times in {"m1": 1, "m3": 1, "m5": 2}.items():
        await download_fully(api, versions[name], times)
    # and a link used twice, and a download that stops before the last byte
    data = await api.gql(FILE_URLS, {"id": versions["m2"]})
    url = data["node"]["files"][0]["downloadUrl"]
    assert (await api.http.get(url)).status_code == 200
    assert (await api.http.get(url)).status_code == 200
    data = await api.gql(FILE_URLS, {"id": versions["m4"]})
    partial = await api.http.get(
        data["node"]["files"][0]["downloadUrl"], headers={"range": "bytes=0-9"}
    )
    assert partial.status_code == 206
    # then downloadCount counts full downloads, once per link
    connection = await page(api, None, first=100, sort="MOST_DOWNLOADED")
    counts = {edge["node"]["name"]: edge["node"]["downloadCount"] for edge in connection["edges"]}
    assert counts == {"m1": 1, "m2": 1, "m3": 1, "m4": 0, "m5": 2}
    version = await version_node(api, versions["m5"], None)
    assert version is not None and version["downloadCount"] == 2
    # and MOST_DOWNLOADED orders by it, ties newest first
    expected = ["m5", "m3", "m2", "m1", "m4"]
    assert [edge["node"]["name"] for edge in connection["edges"]] == expected
    # and paging two at a time (ties split across pages) yields each model once
    assert await collect(api, None, sort="MOST_DOWNLOADED") == expected
    assert await collect(api, alice, sort="MOST_DOWNLOADED") == expected


MALFORMED_CURSORS = [
    "garbage!!",
    "",
    "%%%%",
    "Zm9v",  # "foo"
    "😀",
    "ćursor",
    "A" * 1000,
    cursor(""),
    cursor("abc"),
    cursor("-1"),
    cursor("+1"),
    cursor(" 1"),
    cursor("1 "),
    cursor("1e3"),
    cursor("0x10"),
    cursor("9223372036854775808"),
    cursor("18446744073709551616"),
    cursor("99999999999999999999999999999999"),
    cursor("9" * 150),
    cursor("١٢٣"),  # Arabic-Indic digits
    cursor("²"),
    cursor("１２"),  # fullwidth digits
    cursor("1.2.3"),
    cursor("9223372036854775808.1"),
    cursor("1.9223372036854775808"),
    cursor(".1"),
    cursor("1."),
    cursor("-1.-1"),
    cursor("١.١"),
    cursor("\x00"),
    base64.urlsafe_b64encode(b"cursor:\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
]


async def test_malformed_cursors_are_invalid_cursor(api: Api) -> None:
    # given a catalogue with two models
    alice = await api.sign_up("alice")
    await published(api, alice, "m1")
    await published(api, alice, "m2")
    handed_out = {
        sort: (await page(api, None, first=1, sort=sort))["pageInfo"]["endCursor"]
        for sort in ("NEWEST", "MOST_DOWNLOADED")
    }
    for sort, other in (("NEWEST", "MOST_DOWNLOADED"), ("MOST_DOWNLOADED", "NEWEST")):
        first = await page(api, None, first=1, sort=sort)
        assert first["pageInfo"]["hasNextPage"] is True
        # then garbage, forged positions (cursors are sealed: nothing decodable can be
        # made up) and a real cursor of the other sort are refused as INVALID_CURSOR,
        # never an internal error
        for after in [*MALFORMED_CURSORS, handed_out[other]]:
            code = await error_code(api, None, first=2, after=after, sort=sort)
            assert code == "INVALID_CURSOR", (sort, after)
        # and the cursor the API handed out works
        assert await names(api, None, after=first["pageInfo"]["endCursor"], sort=sort) == ["m1"]


# 6. modelVersionByHash -----------------------------------------------------------


def hashes(body: bytes) -> dict[str, str]:
    """sha256, autoV2 and autoV3 of a safetensors file, computed here."""
    header_length = int.from_bytes(body[:8], "little")
    sha = hashlib.sha256(body).hexdigest()
    return {
        "sha256": sha,
        "autoV2": sha[:10],
        "autoV3": hashlib.sha256(body[8 + header_length :]).hexdigest(),
    }


async def test_model_version_by_hash(api: Api) -> None:
    # given two published versions with different files, and a draft with a third
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    first_body, second_body, draft_body = weights(1), weights(2), weights(3)
    model_id, first_id = await published(api, alice, "Cats", body=first_body)
    second = await new_version(api, alice, model_id, name="v2")
    await api.upload_file(alice, second["id"], second_body)
    await api.publish(alice, second["id"])
    draft = await new_version(api, alice, model_id, name="v3")
    await api.upload_file(alice, draft["id"], draft_body)
    # the file's hashes as the API shows them are the ones computed from the bytes
    shown = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { sha256 autoV2 "
        "autoV3 } } } }",
        {"id": first_id},
    )
    assert shown["node"]["files"] == [hashes(first_body)]
    for who in (None, bob, alice):
        for body, version_id in ((first_body, first_id), (second_body, second["id"])):
            for value in hashes(body).values():
                # when somebody looks a file up by any of its hashes, in any case,
                # with spaces around
                for variant in (value, value.upper(), f"  {value}\n", f"\t{value.upper()} "):
                    found = (await api.gql(BY_HASH, {"h": variant}, token(who)))[
                        "modelVersionByHash"
                    ]
                    # then the version it belongs to is found
                    assert found is not None, (who, variant)
                    assert found["id"] == version_id
                    assert found["model"]["id"] == model_id
    # and a draft's file is nobody else's business
    for value in hashes(draft_body).values():
        for who in (None, bob):
            assert (await api.gql(BY_HASH, {"h": value}, token(who)))["modelVersionByHash"] is None
    # and unknown or malformed hashes are null, never an error
    sha = hashes(first_body)["sha256"]
    unknown = hashes(weights(99))
    for value in (
        unknown["sha256"],
        unknown["autoV2"],
        unknown["autoV3"],
        "",
        "   ",
        "zz",
        sha[:9],
        sha[:11],
        sha[:63],
        sha + "0",
        sha[:32] + " " + sha[32:],
        "sha256:" + sha,
        "0x" + sha[:62],
        "g" * 64,
        "g" * 10,
        sha[:63] + "\x00",
        sha[:9] + "\x00",
        "٠" * 64,
        "０" * 10,
        "%" * 10,
        "*" * 64,
        "a" * 10_000,
    ):
        body = await api.raw(BY_HASH, {"h": value})
        assert "errors" not in body, (value, body)
        assert body["data"]["modelVersionByHash"] is None, value


# 7. Architecture -----------------------------------------------------------------


ARCHITECTURES = {
    "sdxl-lora.safetensors": (
        {
            "ss_network_module": "networks.lora",
            "ss_network_dim": "16",
            "ss_network_alpha": "8.0",
            "ss_base_model_version": "sdxl_base_v1-0",
        },
        {
            "networkModule": "networks.lora",
            "networkDim": 16,
            "networkAlpha": 8.0,
            "baseModelVersion": "sdxl_base_v1-0",
            "modelspecArchitecture": None,
            "algo": None,
            "suggestedBaseModel": "SDXL_1_0",
            "suggestedType": "LORA",
        },
    ),
    "locon.safetensors": (
        {
            "ss_network_module": "lycoris.kohya",
            "ss_network_dim": "8",
            "ss_network_alpha": "4",
            "ss_network_args": '{"algo": "locon", "conv_dim": "4", "conv_alpha": "1"}',
            "ss_base_model_version": "sd_v1",
        },
        {
            "networkModule": "lycoris.kohya",
            "networkDim": 8,
            "networkAlpha": 4.0,
            "baseModelVersion": "sd_v1",
            "modelspecArchitecture": None,
            "algo": "locon",
            "suggestedBaseModel": "SD_1_5",
            "suggestedType": "LOCON",
        },
    ),
    "dora.safetensors": (
        {
            "ss_network_module": "networks.lora",
            "ss_network_dim": "32",
            "ss_network_alpha": "16",
            "ss_network_args": '{"dora_wd": "True"}',
            "modelspec.architecture": "flux-1-dev/lora",
        },
        {
            "networkModule": "networks.lora",
            "networkDim": 32,
            "networkAlpha": 16.0,
            "baseModelVersion": None,
            "modelspecArchitecture": "flux-1-dev/lora",
            "algo": None,
            "suggestedBaseModel": "FLUX_1_D",
            "suggestedType": "DORA",
        },
    ),
}


async def test_architecture_fields_come_from_the_header(api: Api) -> None:
    # given a version with three weights files whose metadata describe their training
    alice = await api.sign_up("alice")
    model = await new_model(api, alice, name="Cats")
    version = await new_version(api, alice, model["id"])
    for seed, (filename, (metadata, _)) in enumerate(ARCHITECTURES.items()):
        await api.upload_file(alice, version["id"], weights(seed, metadata), filename)
    # and one that says nothing
    await api.upload_file(alice, version["id"], weights(9), "plain.safetensors")
    # then the owner sees the architecture of each as soon as it arrives
    own = (await api.gql(ARCHITECTURE, {"id": version["id"]}, alice.token))["node"]["files"]
    shown = {f["filename"]: f["architecture"] for f in own}
    for filename, (_, expected) in ARCHITECTURES.items():
        assert shown[filename] == expected, filename
    plain = shown["plain.safetensors"]
    assert {k: v for k, v in plain.items() if k != "suggestedType"} == {
        "networkModule": None,
        "networkDim": None,
        "networkAlpha": None,
        "baseModelVersion": None,
        "modelspecArchitecture": None,
        "algo": None,
        "suggestedBaseModel": None,
    }
    # and once published, so does everybody
    await api.publish(alice, version["id"])
    public = (await api.gql(ARCHITECTURE, {"id": version["id"]}))["node"]["files"]
    assert {f["filename"]: f["architecture"] for f in public} == shown


# 8. Cost -------------------------------------------------------------------------


FRONT_PAGE = """
{ models(first: 50) { edges { node { id name description owner { id username }
  versions { id name status publishedAt files { id filename sha256 }
    trainingDataset { id filename sizeBytes sha256 visibility status expiresAt } } } } } }
"""


def models_document(first: int, version_fields: str) -> str:
    return (
        f"{{ models(first: {first}) {{ edges {{ node {{ id versions(first: 50) "
        f"{{ {version_fields} }} }} }} }} }}"
    )


async def test_files_and_header_metadata_count_towards_the_cost(api: Api) -> None:
    # given the default cost limit
    # when a document asks for every version's id (50 each) of a full page of models
    plain = await api.raw(models_document(100, "id"))
    # then that is allowed
    assert "errors" not in plain, plain
    # when it also asks for their files
    with_files = await api.raw(models_document(100, "id files { id filename sha256 }"))
    # then the files are counted and the document refused before it runs
    assert with_files["errors"][0]["extensions"]["code"] == "TOO_COSTLY", with_files
    assert with_files["errors"][0]["extensions"]["limit"] == 20_000
    assert "data" not in with_files or with_files["data"] is None
    # when it asks for the files' header metadata
    metadata = await api.raw(models_document(100, "files { headerMetadata { key value } }"))
    # then that is refused too, as costing more than the files' ids alone
    error = metadata["errors"][0]["extensions"]
    assert error["code"] == "TOO_COSTLY", metadata
    files_only = await api.raw(models_document(100, "files { id }"))
    assert files_only["errors"][0]["extensions"]["code"] == "TOO_COSTLY"
    assert error["actual"] > files_only["errors"][0]["extensions"]["actual"]
    # and the front page's document (ten versions each by default) is answered
    front = await api.raw(FRONT_PAGE)
    assert "errors" not in front, front
