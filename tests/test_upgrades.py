"""Upgrades keep everything.

An earlier lorashelf (a main that ran in the field before releases, and the last
release) is built into a virtualenv of its own (tests/releases.py). Its real `lorashelf
serve` writes a realistic data dir and database through its API with a real HTTP
client: two accounts, a model with weights files (where that release has them),
private and public datasets with their bytes, a draft's private dataset, an owner's
deletion (a tombstone), a dataset that expired (deleted, its notice read), and one
mid-window whose reminder was sent; then it stops. Today's `lorashelf serve` starts on
the same data dir (SQLite) or database (with --db=postgres) and every object must be
there as it was: sign-in, visibility, expiry to the microsecond, bytes, history,
notifications; and the retention work goes on (the mid-window dataset is deleted on
time, its reminder not sent again).

Each release writes its data once per backend; the releases run side by side, so the
module costs about one retention window, not three.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import postgres, processes, releases
from tests.conftest import make_safetensors, make_zip, migrate_to, missing_id
from tests.processes import gql, now_utc, parse_time

# Mains that ran in the field before releases began (first deployments; the last
# unreleased main), then the last release.
EARLIER = {"673a58e": "673a58e", "685ae05": "685ae05"}
LAST = "last-release"
LABELS = (*EARLIER, LAST)

PASSWORD = "correct horse battery"
# What the old release runs with: the defaults first, then short windows so that a
# dataset expires, and one is reminded, within seconds. Today's code keeps the last
# settings (an operator keeps the configuration across an upgrade).
CATALOGUE = {}
EXPIRING = {"LORASHELF_PRIVATE_RETENTION": "4s", "LORASHELF_REMINDERS": "3s"}
# (long enough for three upgrades side by side on a busy 2-core machine: each runs its
# migrations, the encryption of its blobs' keys included, before it serves)
MID_WINDOW = {"LORASHELF_PRIVATE_RETENTION": "75s", "LORASHELF_REMINDERS": "70s"}
DRAFT_RETENTION = timedelta(days=30)  # the default: a draft's private dataset

VERSIONS = ("v1-private", "v2-public", "v3-deleted", "v4-draft", "v5-expired", "v6-mid-window")
# A training-data key as a tool may spell it: an older release showed it to everybody,
# an upgrade withholds it from the files already stored.
VARIANT_KEY, VARIANT_VALUE = "SS_DATASET_DIRS ", '{"zq_variant_dir_5120": {"n_repeats": 2}}'
TRAINING_KEYS = {
    "ss_tag_frequency": '{"cats": {"cat": 3}}',
    VARIANT_KEY: VARIANT_VALUE,
    "ss_network_dim": "4",
}
PUBLIC_KEYS = {"ss_network_dim": "8", "ss_output_name": "zq_public_cats_2231"}
NEW_ID = re.compile(r"^[a-z]_[A-Za-z0-9_-]{22}$")


# The old release's API ------------------------------------------------------------


class Api:
    """A real HTTP client on a running server, whichever release it is."""

    def __init__(self, url: str):
        self.url = url

    def gql(
        self, query: str, variables: Mapping[str, Any] | None = None, token: str | None = None
    ) -> Any:
        return gql(self.url, query, variables, token, timeout=30)

    def mutate(self, name: str, query: str, variables: Mapping[str, Any], token: str) -> Any:
        payload = self.gql(query, variables, token)[name]
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload

    def link(self, url: str) -> str:
        return str(httpx.URL(self.url).join(url))  # earlier releases gave relative links

    def put(self, url: str, body: bytes) -> None:
        answer = httpx.put(self.link(url), content=body, timeout=30)
        assert answer.status_code == 200, answer.text

    def get(self, url: str, token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.link(url), headers=headers, timeout=30)


@dataclass(frozen=True)
class Features:
    """What the old release's API offers (read from the schema it committed)."""

    files: bool  # weights files (and publishing needs one)
    base_model: bool  # createModelVersion takes a baseModel

    @classmethod
    def of(cls, old: releases.Build) -> Features:
        schema = old.schema()
        version_input = re.search(r"input CreateModelVersionInput \{(.*?)\n\}", schema, re.S)
        assert version_input is not None
        return cls(
            files="startModelFileUpload" in schema,
            base_model=re.search(r"\bbaseModel\b", version_input.group(1)) is not None,
        )


def owner_view(features: Features, *, today: bool = False) -> str:
    """Everything the owner sees of her account (the same document for both releases).

    ``today``: the files' hash and size as the old releases showed them to the owner, the
    public file's, which today's code names ``publicSha256``/``publicSizeBytes`` (since
    0.2.0 the owner's ``sha256``/``sizeBytes`` describe the original she downloads).
    """
    files = ""
    if features.files and today:
        files = "files { id filename sha256: publicSha256 sizeBytes: publicSizeBytes }"
    elif features.files:
        files = "files { id filename sha256 sizeBytes }"
    return f"""{{ viewer {{ username unreadNotificationCount
      models(first: 10) {{ edges {{ node {{ id name description
        versions {{ id name status publishedAt {files}
          trainingDataset {{ id filename sizeBytes sha256 visibility status expiresAt deletedAt
            deletionReason createdAt uploadedAt events {{ kind at detail }} }} }} }} }} }}
      notifications(first: 100) {{ edges {{ node {{ id kind message createdAt readAt
        dataset {{ id filename }} }} }} }} }} }}"""


@dataclass
class Written:
    """What the old release was given, and what its owner saw just before it stopped."""

    features: Features
    tokens: dict[str, str] = field(default_factory=dict)  # username -> bearer token
    datasets: dict[str, bytes] = field(default_factory=dict)  # version name -> zip bytes
    weights: dict[str, bytes] = field(default_factory=dict)  # version name -> file bytes
    old_ids: dict[str, str] = field(default_factory=dict)  # version name -> dataset id
    seen: dict[str, Any] = field(default_factory=dict)  # alice's view, from the old server
    model: str = ""  # alice's model (old id)


def write(api: Api, features: Features, written: Written, phase: str) -> None:
    """One phase of life on the old release, through its API."""
    alice = written.tokens.get("alice", "")

    def create_version(model_id: str, name: str, token: str) -> str:
        given: dict[str, Any] = {"modelId": model_id, "name": name}
        if features.base_model:
            given["baseModel"] = "SDXL_1_0"
        return api.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": given},
            token,
        )["version"]["id"]

    def weights(version_id: str, name: str, metadata: dict[str, str] | None = None) -> None:
        if not features.files:
            return
        body = make_safetensors(metadata)
        started = api.mutate(
            "startModelFileUpload",
            "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
            "{ uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": f"{name}.safetensors",
                    "sizeBytes": len(body),
                }
            },
            alice,
        )
        api.put(started["uploadUrl"], body)
        written.weights[name] = body

    def dataset(version_id: str, name: str, visibility: str) -> None:
        body = make_zip({f"images/{name}.txt": f"{name} ".encode() * 300})
        given = {
            "versionId": version_id,
            "filename": f"{name}.zip",
            "sizeBytes": len(body),
            "visibility": visibility,
            "ownsRights": visibility == "PUBLIC",
        }
        started = api.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id } uploadUrl userErrors { code message } } }",
            {"i": given},
            alice,
        )
        api.put(started["uploadUrl"], body)
        written.datasets[name] = body
        written.old_ids[name] = started["dataset"]["id"]

    def publish(version_id: str) -> None:
        api.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"versionId": version_id}},
            alice,
        )

    def version(name: str, visibility: str | None, *, published: bool = True, **meta: str) -> None:
        version_id = create_version(written.model, name, alice)
        weights(version_id, name, meta or None)
        if visibility:
            dataset(version_id, name, visibility)
        if published:
            publish(version_id)

    def dataset_view(name: str) -> dict[str, Any]:
        node = api.gql(
            "query($id: ID!) { node(id: $id) { ... on TrainingDataset "
            "{ status deletedAt downloadUrl } } }",
            {"id": written.old_ids[name]},
            alice,
        )["node"]
        assert node is not None
        return node

    def notifications(name: str, kind: str) -> list[dict[str, Any]]:
        edges = api.gql(
            "{ viewer { notifications(first: 100) { edges { node { id kind dataset { id } } } } } }",
            token=alice,
        )["viewer"]["notifications"]["edges"]
        return [
            e["node"]
            for e in edges
            if e["node"]["kind"] == kind
            and (e["node"]["dataset"] or {}).get("id") == written.old_ids[name]
        ]

    if phase == "catalogue":
        for username in ("alice", "bob"):
            written.tokens[username] = api.mutate(
                "signUp",
                "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { code message } } }",
                {"i": {"username": username, "password": PASSWORD}},
                "",
            )["token"]
        alice = written.tokens["alice"]
        written.model = api.mutate(
            "createModel",
            "mutation($i: CreateModelInput!) { createModel(input: $i) "
            "{ model { id } userErrors { code message } } }",
            {"i": {"name": "Upgrade cats", "description": "a LoRA kept across upgrades"}},
            alice,
        )["model"]["id"]
        version("v1-private", "PRIVATE", **TRAINING_KEYS)
        version("v2-public", "PUBLIC", **PUBLIC_KEYS)
        version("v3-deleted", "PRIVATE")
        api.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
            "{ dataset { id } userErrors { code message } } }",
            {"i": {"datasetId": written.old_ids["v3-deleted"]}},
            alice,
        )
        version("v4-draft", "PRIVATE", published=False)
        # downloads: the owner her private dataset, bob the public one (history entries)
        assert (
            api.get(dataset_view("v1-private")["downloadUrl"]).content
            == written.datasets["v1-private"]
        )
        public = api.gql(
            "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
            {"id": written.old_ids["v2-public"]},
            written.tokens["bob"],
        )["node"]
        assert api.get(public["downloadUrl"]).content == written.datasets["v2-public"]
        # bob has a draft of his own, which nobody else may see
        api.mutate(
            "createModel",
            "mutation($i: CreateModelInput!) { createModel(input: $i) "
            "{ model { id } userErrors { code message } } }",
            {"i": {"name": "Bob's draft", "description": "not yet"}},
            written.tokens["bob"],
        )["model"]["id"]
    elif phase == "expiring":
        version("v5-expired", "PRIVATE")
        processes.wait_for(
            lambda: dataset_view("v5-expired")["deletedAt"],
            timeout=30,
            what="the old release to delete v5-expired",
        )
        # the owner reads the deletion notice (the reminder, if any came, stays unread)
        notice = processes.wait_for(
            lambda: notifications("v5-expired", "DATASET_DELETED"),
            timeout=10,
            what="v5's deletion notice",
        )
        api.mutate(
            "markNotificationsRead",
            "mutation($i: MarkNotificationsReadInput!) { markNotificationsRead(input: $i) "
            "{ notifications { id } userErrors { code message } } }",
            {"i": {"ids": [notice[0]["id"]]}},
            alice,
        )
    else:
        version("v6-mid-window", "PRIVATE")
        processes.wait_for(
            lambda: notifications("v6-mid-window", "DATASET_EXPIRING"),
            timeout=20,
            what="the old release to remind of v6-mid-window",
        )
        written.seen["alice"] = api.gql(owner_view(features), token=alice)["viewer"]


# One upgrade: the old release writes, today's serve starts ------------------------


@dataclass
class Upgrade:
    label: str
    commit: str
    written: Written
    server: processes.Server
    data_dir: Path
    database_url: str | None  # PostgreSQL's; None: SQLite in the data dir
    started_at: datetime  # when today's serve was started on the old data
    # the owner's first look at today's serve, taken while the mid-window dataset was
    # still open (later, under load, its window may have ended and changed her view)
    first_look: dict[str, Any]
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.server.url)

    @property
    def features(self) -> Features:
        return self.written.features

    def token(self, username: str) -> str:
        return self.written.tokens[username]


def _upgrade(
    label: str, commit: str, workdir: Path, database_url: str | None, stack: ExitStack
) -> Upgrade:
    old = releases.build(commit)
    features = Features.of(old)
    data_dir = workdir / "var"
    # the owner's whole view in one document: more than the default cost limit allows
    base = {"LORASHELF_DATA_DIR": str(data_dir), "LORASHELF_MAX_COST": "1000000"}
    if database_url is not None:
        base["LORASHELF_DATABASE_URL"] = database_url
        # The operator's first step on PostgreSQL (serve migrated only SQLite at first).
        migrated = releases.run_old(old, "migrate", env=base, cwd=workdir)
        if label == "673a58e":
            # Its first migration named a field where PostgreSQL needs the column: it
            # never ran on PostgreSQL (nothing was written). Its rows on PostgreSQL are
            # made with that one index corrected: today's 0001, otherwise the same.
            assert migrated.returncode != 0 and 'column "owner" does not exist' in migrated.stderr
            migrate_to(database_url, "0001_initial")
        else:
            assert migrated.returncode == 0, migrated.stderr
    written = Written(features)
    for phase, settings in (
        ("catalogue", CATALOGUE),
        ("expiring", EXPIRING),
        ("mid-window", MID_WINDOW),
    ):
        with releases.serve_old(old, {**base, **settings}, workdir) as running:
            write(Api(running.url), features, written, phase)
    started_at = now_utc()
    # (three upgrades at once, each applying every migration since its release: given
    # time to start on a busy machine)
    server = stack.enter_context(
        processes.serve({**base, **MID_WINDOW}, cwd=workdir, healthy_within=120)
    )
    # the mid-window dataset crosses the upgrade still open (today's code must end it)
    view = Api(server.url).gql(owner_view(features, today=True), token=written.tokens["alice"])
    crossing = by_version(view["viewer"])["v6-mid-window"]["trainingDataset"]
    assert crossing["status"] == "AVAILABLE" and now_utc() < parse_time(crossing["expiresAt"])
    return Upgrade(
        label, commit, written, server, data_dir, database_url, started_at, view["viewer"]
    )


@pytest.fixture(scope="module")
def upgraded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Upgrade | BaseException]]:
    """Every release of LABELS upgraded to today's code (side by side, in threads); a
    release whose upgrade failed maps to its error (its tests fail with it)."""
    cluster: postgres.Cluster | None = None
    if request.config.getoption("--db") == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
    commits: dict[str, str | BaseException] = {}
    for label in LABELS:
        try:
            commits[label] = (
                releases.last_release().commit
                if label == LAST
                else releases.commit_of(EARLIER[label])
            )
            releases.build(str(commits[label]))  # one at a time: pip is heavy, then cached
        except BaseException as exc:  # noqa: BLE001 - the release's tests fail with it
            commits[label] = exc
    databases: list[str] = []
    lock = threading.Lock()
    workdirs = {label: tmp_path_factory.mktemp(label) for label in LABELS}
    with ExitStack() as stack:

        def one(label: str) -> Upgrade:
            commit = commits[label]
            if isinstance(commit, BaseException):
                raise commit
            url = None
            if cluster is not None:
                with lock:
                    name = cluster.empty_database()
                    databases.append(name)
                url = cluster.url(name)
            own = ExitStack()
            with lock:
                stack.enter_context(own)
            return _upgrade(label, commit, workdirs[label], url, own)

        results: dict[str, Upgrade | BaseException] = {}
        with ThreadPoolExecutor(len(LABELS)) as pool:
            futures = {label: pool.submit(one, label) for label in LABELS}
            for label, future in futures.items():
                try:
                    results[label] = future.result()
                except BaseException as exc:  # noqa: BLE001
                    results[label] = exc
        yield results
    for name in databases:
        assert cluster is not None
        cluster.drop_database(name)


@pytest.fixture(params=LABELS)
def upgrade(
    request: pytest.FixtureRequest, upgraded: dict[str, Upgrade | BaseException]
) -> Upgrade:
    found = upgraded[request.param]
    if isinstance(found, BaseException):
        raise found
    return found


# Checks ----------------------------------------------------------------------------


def by_version(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The owner's versions by name (one model), with the model's fields beside them."""
    models = [edge["node"] for edge in view["models"]["edges"]]
    assert [m["name"] for m in models] == ["Upgrade cats"]
    return {v["name"]: v for v in models[0]["versions"]}


def instant(value: Any) -> datetime | None:
    """A DateTime of the API (ISO 8601 with an offset), else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def times_equal(before: Any, after: Any) -> bool:
    """Equal values, DateTimes compared as instants (to the microsecond)."""
    then, now = instant(before), instant(after)
    if then is not None and now is not None:
        return then == now
    return bool(before == after)


def same(before: Any, after: Any, where: str, *, ignore: frozenset[str] = frozenset()) -> None:
    """``after`` holds ``before`` exactly (ids aside when they were re-issued)."""
    if isinstance(before, dict):
        assert isinstance(after, dict), where
        for key, value in before.items():
            if key not in ignore:
                same(value, after[key], f"{where}.{key}", ignore=ignore)
    elif isinstance(before, list):
        assert isinstance(after, list) and len(before) == len(after), (
            f"{where}: {before} != {after}"
        )
        for n, (b, a) in enumerate(zip(before, after, strict=True)):
            same(b, a, f"{where}[{n}]", ignore=ignore)
    else:
        assert times_equal(before, after), f"{where}: {before!r} became {after!r}"


def ids_kept(upgrade: Upgrade) -> bool:
    """Whether the old release already had today's ids (random public ids)."""
    return all(NEW_ID.match(i) for i in upgrade.written.old_ids.values())


def test_every_account_still_signs_in(upgrade: Upgrade) -> None:
    # the bearer tokens the old release gave out still work (their format did not change)
    for username in ("alice", "bob"):
        viewer = upgrade.api.gql("{ viewer { username } }", token=upgrade.token(username))["viewer"]
        assert viewer == {"username": username}
        # and the password signs in too
        signed = upgrade.api.mutate(
            "logIn",
            "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code message } } }",
            {"i": {"username": username, "password": PASSWORD}},
            "",
        )
        assert upgrade.api.gql("{ viewer { username } }", token=signed["token"])["viewer"] == viewer


def without_public_file(version: Mapping[str, Any]) -> dict[str, Any]:
    files = [
        {k: v for k, v in f.items() if k not in ("sha256", "sizeBytes")} for f in version["files"]
    ]
    return {**version, "files": files}


def test_the_owner_finds_everything_as_it_was(upgrade: Upgrade) -> None:
    # given what the owner saw on the old release just before it stopped
    before = upgrade.written.seen["alice"]
    # when she looks after the upgrade (while the mid-window dataset is still open)
    after = upgrade.first_look
    # then every version, dataset (expiry to the microsecond, history) and notification is there
    ignore = frozenset() if ids_kept(upgrade) else frozenset({"id"})
    old_versions, new_versions = by_version(before), by_version(after)
    assert sorted(old_versions) == sorted(new_versions) == sorted(VERSIONS)
    for name, version in old_versions.items():
        if version["trainingDataset"]["expiresAt"] is None and name == "v4-draft":
            # the oldest release gave a draft's dataset no window: see the next test
            version = {**version, "trainingDataset": {**version["trainingDataset"]}}
            del version["trainingDataset"]["expiresAt"]
        new = new_versions[name]
        if name == "v1-private" and upgrade.features.files:
            # the file everybody else downloads lost a training-data key spelled as a
            # tool may spell it (withheld since): its public hash and size changed
            version, new = (without_public_file(v) for v in (version, new))
        same(version, new, name, ignore=ignore)
    same(before["notifications"], after["notifications"], "notifications", ignore=ignore)
    assert after["unreadNotificationCount"] == before["unreadNotificationCount"]
    assert {n["node"]["kind"] for n in after["notifications"]["edges"]} == {
        "DATASET_EXPIRING",
        "DATASET_DELETED",
    }
    states = {n: (v["trainingDataset"] or {}).get("status") for n, v in new_versions.items()}
    assert states == {
        "v1-private": "AVAILABLE",
        "v2-public": "AVAILABLE",
        "v3-deleted": "DELETED",
        "v4-draft": "AVAILABLE",
        "v5-expired": "DELETED",
        "v6-mid-window": "AVAILABLE",
    }
    assert new_versions["v3-deleted"]["trainingDataset"]["deletionReason"] == "OWNER_REQUEST"
    assert new_versions["v5-expired"]["trainingDataset"]["deletionReason"] == "EXPIRED"


def test_a_draft_dataset_without_a_window_gets_the_draft_lifetime_from_the_upgrade(
    upgrade: Upgrade,
) -> None:
    # given the draft's private dataset (the oldest release kept it without a window)
    before = by_version(upgrade.written.seen["alice"])["v4-draft"]["trainingDataset"]

    def expiry() -> str | None:
        view = upgrade.api.gql(owner_view(upgrade.features), token=upgrade.token("alice"))
        found: str | None = by_version(view["viewer"])["v4-draft"]["trainingDataset"]["expiresAt"]
        return found

    after = processes.wait_for(expiry, timeout=20, what="the draft dataset's window")
    if before["expiresAt"] is not None:
        # then a window it had is kept to the microsecond
        assert parse_time(after) == parse_time(before["expiresAt"])
    else:
        # then the first sweep gives it the draft lifetime, from the upgrade on
        assert (
            upgrade.started_at + DRAFT_RETENTION <= parse_time(after) <= now_utc() + DRAFT_RETENTION
        )


def test_nobody_else_sees_more_than_before(upgrade: Upgrade) -> None:
    api, bob, alice = upgrade.api, upgrade.token("bob"), upgrade.token("alice")
    mine = by_version(api.gql(owner_view(upgrade.features), token=alice)["viewer"])
    private = mine["v1-private"]["trainingDataset"]["id"]
    public = mine["v2-public"]["trainingDataset"]["id"]
    for token, models in ((bob, ["Bob's draft", "Upgrade cats"]), (None, ["Upgrade cats"])):
        # a private dataset is nobody else's to see: by id, or on its version
        assert (
            api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": private}, token)["node"]
            is None
        )
        catalogue = api.gql(
            "{ models(first: 50) { edges { node { name versions { name trainingDataset { id } } } } } }",
            token=token,
        )["models"]["edges"]
        # bob's draft is his alone
        assert [edge["node"]["name"] for edge in catalogue] == models
        cats = next(e["node"] for e in catalogue if e["node"]["name"] == "Upgrade cats")
        seen = {v["name"]: v["trainingDataset"] for v in cats["versions"]}
        # the published versions only: the draft is the owner's; private datasets are null
        assert sorted(seen) == [
            "v1-private",
            "v2-public",
            "v3-deleted",
            "v5-expired",
            "v6-mid-window",
        ]
        assert seen["v2-public"] == {"id": public}
        assert all(seen[n] is None for n in seen if n != "v2-public")
    # bob still has his draft
    own = api.gql("{ viewer { models(first: 10) { edges { node { name } } } } }", token=bob)
    assert [e["node"]["name"] for e in own["viewer"]["models"]["edges"]] == ["Bob's draft"]
    if upgrade.features.files:
        # the weights file's training-data keys are still the owner's only
        query = (
            "query($id: ID!) { node(id: $id) { ... on ModelVersion "
            "{ files { headerMetadata { key value } downloadUrl } } } }"
        )
        version_id = mine["v1-private"]["id"]
        for token, expected in ((alice, TRAINING_KEYS), (bob, {"ss_network_dim": "4"})):
            files = api.gql(query, {"id": version_id}, token)["node"]["files"]
            shown = {e["key"]: e["value"] for e in files[0]["headerMetadata"]}
            assert shown == expected
            # (the key spelled as a tool may spell it too: in the field and in the bytes)
            body = api.get(files[0]["downloadUrl"]).content
            assert (b"zq_variant_dir_5120" in body) == (token == alice)
            # and a file with nothing to withhold shows its metadata to everybody still
            files = api.gql(query, {"id": mine["v2-public"]["id"]}, token)["node"]["files"]
            assert {e["key"]: e["value"] for e in files[0]["headerMetadata"]} == PUBLIC_KEYS


def test_every_byte_is_still_there(upgrade: Upgrade) -> None:
    api, alice = upgrade.api, upgrade.token("alice")
    files = "files { sha256 sizeBytes downloadUrl }" if upgrade.features.files else ""
    view = api.gql(
        f"{{ viewer {{ models(first: 10) {{ edges {{ node {{ versions {{ name {files} "
        "trainingDataset { status sha256 downloadUrl } } } } } } }",
        token=alice,
    )["viewer"]
    for version in view["models"]["edges"][0]["node"]["versions"]:
        name = version["name"]
        dataset = version["trainingDataset"]
        if dataset["status"] == "AVAILABLE":
            # the owner downloads exactly what was uploaded
            body = api.get(dataset["downloadUrl"]).content
            expected = upgrade.written.datasets[name]
            assert (
                hashlib.sha256(body).hexdigest()
                == hashlib.sha256(expected).hexdigest()
                == dataset["sha256"]
            )
        else:
            assert dataset["downloadUrl"] is None
        for weights in version.get("files", []):
            # the owner downloads the file as uploaded (training-data keys included)
            body = api.get(weights["downloadUrl"]).content
            assert body == upgrade.written.weights[name]
            # and her sha256 and sizeBytes describe that file
            assert hashlib.sha256(body).hexdigest() == weights["sha256"]
            assert len(body) == weights["sizeBytes"]
    # and anybody downloads the public dataset
    anonymous = api.gql(
        "{ models(first: 5) { edges { node { versions { name trainingDataset { downloadUrl } } } } } }"
    )["models"]["edges"][0]["node"]["versions"]
    public = next(v for v in anonymous if v["name"] == "v2-public")["trainingDataset"]
    assert api.get(public["downloadUrl"]).content == upgrade.written.datasets["v2-public"]


def test_the_stored_plaintext_is_sealed_in_place_and_still_downloads(upgrade: Upgrade) -> None:
    # given the old release's blobs, stored in plaintext (the sweep seals a few at a time)
    env = {"LORASHELF_DATA_DIR": str(upgrade.data_dir)}
    if upgrade.database_url is not None:
        env["LORASHELF_DATABASE_URL"] = upgrade.database_url
    # when encrypt-existing runs beside the server
    done = processes.lorashelf(
        "encrypt-existing", env=env, cwd=upgrade.data_dir.parent, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # then none is left in plaintext: no stored file holds an uploaded body's bytes
    status = processes.lorashelf(
        "encrypt-existing", "--status", env=env, cwd=upgrade.data_dir.parent
    )
    assert status.returncode == 0, status.stdout
    bodies = [*upgrade.written.datasets.values(), *upgrade.written.weights.values()]
    stored = [p.read_bytes() for p in (upgrade.data_dir / "blobs").rglob("*") if p.is_file()]
    assert not [b for b in bodies if any(b[-64:] in s for s in stored)]
    # and the owner still downloads exactly what was uploaded
    test_every_byte_is_still_there(upgrade)


def test_an_id_from_before_random_ids_answers_like_a_missing_one(upgrade: Upgrade) -> None:
    api, alice = upgrade.api, upgrade.token("alice")
    old = upgrade.written.old_ids["v1-private"]
    found = api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": old}, alice)["node"]
    if ids_kept(upgrade):
        # ids of a release with random public ids are kept
        assert found == {"id": old}
        return
    # an id of the oldest release finds nothing, even for the owner
    assert found is None
    # and a mutation on it answers exactly as on an id that never existed
    delete = (
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
        "{ dataset { id } userErrors { field code message } } }"
    )
    on_old = api.gql(delete, {"i": {"datasetId": old}}, alice)["deleteDataset"]
    on_missing = api.gql(delete, {"i": {"datasetId": missing_id("TrainingDataset")}}, alice)[
        "deleteDataset"
    ]
    assert on_old == on_missing and on_old["userErrors"][0]["code"] == "NOT_FOUND"


def test_the_database_has_exactly_a_new_databases_schema(upgrade: Upgrade, tmp_path: Path) -> None:
    # an upgraded database and a new one are the same (edited migrations were repaired)
    if upgrade.database_url is None:
        fresh = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
        from storage.db import connection as db

        postgres.run_async(lambda: db.migrate(fresh))
        assert sqlite_schema(upgrade.data_dir / "lorashelf.sqlite3") == sqlite_schema(
            tmp_path / "fresh.sqlite3"
        )
    else:
        template = upgrade.database_url.rsplit("/", 1)[0] + f"/{postgres.TEMPLATE}"
        assert postgres_schema(upgrade.database_url) == postgres_schema(template)


def test_retention_goes_on_where_the_old_release_left_it(upgrade: Upgrade) -> None:
    # given the mid-window dataset, reminded by the old release
    api, alice = upgrade.api, upgrade.token("alice")
    seen = by_version(upgrade.written.seen["alice"])["v6-mid-window"]["trainingDataset"]
    expires_at = parse_time(seen["expiresAt"])  # still open when today's serve started
    version_id = by_version(api.gql(owner_view(upgrade.features), token=alice)["viewer"])[
        "v6-mid-window"
    ]["id"]
    query = (
        "query($id: ID!) { node(id: $id) { ... on ModelVersion { trainingDataset "
        "{ id status expiresAt deletedAt deletionReason downloadUrl } } } }"
    )
    # when its window ends under today's code
    processes.sleep_until(expires_at)

    def deleted() -> dict[str, Any] | None:
        dataset: dict[str, Any] = api.gql(query, {"id": version_id}, alice)["node"][
            "trainingDataset"
        ]
        return dataset if dataset["deletedAt"] else None

    tombstone = processes.wait_for(deleted, timeout=20, what="v6-mid-window to be deleted")
    # then it is deleted on time, as expired, at the expiry the old release set
    assert tombstone["status"] == "DELETED" and tombstone["deletionReason"] == "EXPIRED"
    assert parse_time(tombstone["expiresAt"]) == expires_at
    assert expires_at <= parse_time(tombstone["deletedAt"]) <= expires_at + timedelta(seconds=10)
    assert tombstone["downloadUrl"] is None
    # and its bytes are gone from the blob store
    digest = hashlib.sha256(upgrade.written.datasets["v6-mid-window"]).hexdigest()
    blobs = [p for p in (upgrade.data_dir / "blobs").rglob("*") if p.is_file()]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() != digest for p in blobs)
    # and the owner was told once: the old release's reminder is not sent again
    edges = api.gql(
        "{ viewer { notifications(first: 100) { edges { node { kind dataset { id } } } } } }",
        token=alice,
    )["viewer"]["notifications"]["edges"]
    about = [
        e["node"]["kind"]
        for e in edges
        if (e["node"]["dataset"] or {}).get("id") == tombstone["id"]
    ]
    assert sorted(about) == ["DATASET_DELETED", "DATASET_EXPIRING"]


# Schemas ---------------------------------------------------------------------------


def sqlite_schema(path: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()


def postgres_schema(url: str) -> list[str]:
    """pg_dump's schema, without the random key of its \\restrict lines."""
    dumped = subprocess.run(
        [str(postgres.binaries() / "pg_dump"), "--schema-only", "--no-owner", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        line for line in dumped.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
