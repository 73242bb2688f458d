"""The red-team's side-channel findings, one regression test each, written as the attack:
what the attacker does, and what she must not learn (or must not manage).

1. sequential ids (the bracket attack)    7. the owner's download history
2. timing of hidden vs missing ids        8. cursor overflow (forged cursors)
3. walking usernames through node()       9. password truncation
4. zip bomb with lying sizes             10. no bound on models per user
5. locking an owner out                  11. links following Host; links outliving logOut
6. slow bodies (against a real server)

Mallory is the attacker throughout; Alice is her victim.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import logging
import re
import select
import shutil
import socket
import struct
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from starlette.applications import Starlette

from graph.http import graphiql
from graph.http.app import create_app
from graph.schema import ids
from jobs.tasks import sweep
from storage.config.settings import Settings
from storage.db.enums import EventKind
from storage.retention.history import KEEP
from storage.runtime import NoScheduler
from tests import processes, timing
from tests.conftest import (
    Api,
    MutableClock,
    Person,
    dataset_blobs,
    make_zip,
    missing_id,
    raw_id,
)

Ctx = dict[str, Any]

DATASET = """
query($id: ID!) {
  node(id: $id) {
    ... on TrainingDataset { id status sha256 downloadUrl events { kind detail } }
  }
}
"""
NOTIFICATIONS = """
query($after: String) {
  viewer { notifications(first: 1, after: $after) {
    edges { cursor node { id kind } } pageInfo { endCursor hasNextPage }
  } }
}
"""
DELETE_DATASET = (
    "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
    "{ dataset { id } userErrors { field code message } } }"
)
SET_VISIBILITY = (
    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
    "{ dataset { id } userErrors { field code message } } }"
)
NODE = "query($id: ID!) { node(id: $id) { id } }"
USER_NODE = "query($id: ID!) { node(id: $id) { id ... on User { username } } }"
LOG_IN = (
    "mutation($i: LogInInput!) { logIn(input: $i) "
    "{ token user { username } userErrors { field code message } } }"
)
CREATE_MODEL = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { id } userErrors { field code message } } }"
)
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"
TYPE_NAMES = [name.encode() for name in ids.PREFIX]


async def dataset_of(api: Api, dataset_id: str, token: str | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (await api.gql(DATASET, {"id": dataset_id}, token))["node"]
    return node


async def download_url(api: Api, owner: Person, dataset_id: str) -> str:
    node = await dataset_of(api, dataset_id, owner.token)
    assert node is not None and node["downloadUrl"], node
    url: str = node["downloadUrl"]
    return url


def decoded(text: str) -> list[bytes]:
    """What ``text`` base64-decodes to (for a global ID: the part after its prefix)."""
    if re.fullmatch(r"[a-z]_[A-Za-z0-9_-]+", text):
        text = text[2:]
    found = []
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        with suppress(binascii.Error, ValueError):
            found.append(decode(padded))
    return found


def assert_opaque(text: str, *counters: int) -> None:
    """Nothing in ``text`` decodes to readable data: no type name, no "n:<key>" position
    of the given internal keys; its bytes are not text at all (a sealed or random value
    is not; a base64("Notification:12") id or a base64("cursor:12") cursor is)."""
    for raw in decoded(text):
        for name in TYPE_NAMES:
            assert name not in raw, (text, raw)
        for counter in counters:
            for shape in (f"n:{counter}", f".{counter}."):  # 3+ bytes: never by chance
                assert shape.encode() not in raw, (text, raw)
        # 16 random bytes are all printable ASCII with probability 0.37^16 ~ 1e-7
        assert len(raw) < 16 or not all(32 <= b < 127 for b in raw), (text, raw)


def assert_unrelated(*tokens: str) -> None:
    """No two tokens start alike: a counter or a key packed in front (then signed) would
    make tokens of neighbouring objects share their first characters; sealed ones start
    with a random nonce (4 equal characters by chance: 64^-4)."""
    starts = [token[:4] for token in tokens]
    assert len(set(starts)) == len(starts), tokens


def url_token(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def id_bits(global_id: str) -> int:
    """The 128 random bits behind a global ID (after its type prefix)."""
    prefix, _, public = global_id.partition("_")
    assert prefix in ids.TYPE_OF and re.fullmatch(r"[A-Za-z0-9_-]{22}", public), global_id
    raw = base64.urlsafe_b64decode(public + "==")
    assert len(raw) == 16
    return int.from_bytes(raw, "big")


# 1. Sequential ids: the bracket attack --------------------------------------------------
# (also tests/graph/test_privacy.py test_guessing_global_ids_reveals_nothing)


async def private_published(api: Api, owner: Person, name: str) -> tuple[str, str]:
    """(dataset ID, upload URL) of a private dataset of a version published now."""
    model_id = await api.create_model(owner, name)
    version_id = await api.create_version(owner, model_id)
    body = make_zip({f"{name}.txt": name.encode() * 50})
    started = await api.start_upload(owner, version_id, len(body), "PRIVATE")
    assert started["userErrors"] == []
    assert (await api.put(started["uploadUrl"], body)).status_code == 200
    await api.publish(owner, version_id)
    return started["dataset"]["id"], started["uploadUrl"]


async def reminders(api: Api, person: Person) -> list[dict[str, Any]]:
    """A person's notifications, newest first, each with its edge cursor."""
    found, after = [], None
    while True:
        page = (await api.gql(NOTIFICATIONS, {"after": after}, person.token))["viewer"][
            "notifications"
        ]
        found += [{**edge["node"], "cursor": edge["cursor"]} for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")
async def test_bracket_attack_shows_no_gap_in_mallorys_ids_cursors_or_links(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # (ids as base64("Notification:<pk>") used to show a gap of one in Mallory's own
    # notification ids exactly when Alice's reminder was written in between)
    mallory, alice = await api.sign_up("mallory"), await api.sign_up("alice")
    # given Mallory's private dataset published at t=0, Alice's at t=10, Mallory's at t=20
    before, upload_before = await private_published(api, mallory, "before")
    clock.advance(10)
    await private_published(api, alice, "victim")
    clock.advance(10)
    after, upload_after = await private_published(api, mallory, "after")
    # when the reminders (30 s before each end) are written at t=30, t=40 and t=50
    for _ in range(3):
        clock.advance(10)
        await sweep(ctx)
    mine = await reminders(api, mallory)
    assert [n["kind"] for n in mine] == ["DATASET_EXPIRING"] * 2
    theirs = await reminders(api, alice)
    assert [n["kind"] for n in theirs] == ["DATASET_EXPIRING"]
    # and Alice's reminder really was written between Mallory's two (the keys show it)
    keys = [await raw_id(n["id"], "Notification") for n in (mine[1], theirs[0], mine[0])]
    assert keys[0] < keys[1] < keys[2], keys
    # then nothing Mallory sees holds a counter: not her notification ids, not their
    # cursors, not her download and upload URLs
    links = [await download_url(api, mallory, d) for d in (before, after)]
    seen = [n["id"] for n in mine] + [n["cursor"] for n in mine]
    seen += [url_token(u) for u in [*links, upload_before, upload_after]]
    for text in seen:
        assert_opaque(text, *keys)
    # and her two notification ids are unrelated 128-bit numbers (consecutive keys would
    # differ by a little; these differ by more than 2^64 but with probability 2^-63)
    first, second = (id_bits(n["id"]) for n in mine)
    assert abs(first - second) > 2**64
    assert len(decoded(mine[0]["id"])[0]) == 16 and len(decoded(mine[0]["cursor"])[0]) > 16
    # and her tokens of one kind are unrelated to each other, even for the same object
    again = await download_url(api, mallory, before)
    assert_unrelated(*(n["cursor"] for n in mine))
    assert_unrelated(*(url_token(u) for u in [*links, again]))
    assert_unrelated(url_token(upload_before), url_token(upload_after))
    # (a sealed token is no id at all: it never passes as one)
    assert (await api.gql(NODE, {"id": url_token(links[0])}, mallory.token))["node"] is None


async def test_ids_are_128_random_bits_unordered_and_distinct(api: Api) -> None:
    # (sequential keys made ids guessable and counted rows)
    mallory = await api.sign_up("mallory")
    # given thirty models created one after the other
    made = [await api.create_model(mallory, f"m{n}") for n in range(30)]
    # then each id is a type prefix and 22 URL-safe characters (16 random bytes)
    numbers = [id_bits(model_id) for model_id in made]
    assert all(model_id.startswith("m_") and len(model_id) == 24 for model_id in made)
    # all distinct, in no order of creation, and with no shared leading characters
    assert len(set(made)) == len(made)
    assert numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True)
    assert len({model_id[:8] for model_id in made}) == len(made)
    # and spread over the whole 128-bit range (30 random values all below 2^120: 2^-240)
    assert max(numbers) >= 2**120


def one_character_away(global_id: str) -> list[str]:
    """Ids that differ from ``global_id`` by one character, at every position after the
    prefix (and one with the prefix of another type)."""
    prefix, _, public = global_id.partition("_")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    near = []
    for at in range(len(public)):
        replacement = alphabet[(alphabet.index(public[at]) + 1) % len(alphabet)]
        near.append(f"{prefix}_{public[:at]}{replacement}{public[at + 1 :]}")
    other = "m" if prefix != "m" else "d"
    return [*near, f"{other}_{public}"]


async def test_ids_one_character_away_from_real_ones_are_null_for_everybody(api: Api) -> None:
    # (neighbouring ids used to be the hidden rows next to a known one)
    alice, mallory = await api.sign_up("alice"), await api.sign_up("mallory")
    # given Alice's published model with a private dataset, and rows made just before
    # and after it that everybody may see (Mallory's published model, public dataset)
    await api.model_with_dataset(mallory, "PUBLIC")
    model_id, version_id, private_id = await api.model_with_dataset(alice, "PRIVATE")
    await api.model_with_dataset(mallory, "PUBLIC")
    for real in (model_id, version_id, private_id, alice.id):
        near = one_character_away(real)
        aliased = " ".join(f"n{i}: node(id: $n{i}) {{ id }}" for i in range(len(near)))
        document = (
            "query(" + ", ".join(f"$n{i}: ID!" for i in range(len(near))) + ") { " + aliased + " }"
        )
        variables = {f"n{i}": value for i, value in enumerate(near)}
        # when anybody, Mallory and Alice herself look them up
        for token in (None, mallory.token, alice.token):
            answers = await api.gql(document, variables, token)
            # then every neighbour is null
            assert set(answers.values()) == {None}, (real, token, answers)
        # while the real id answers for its owner
        assert (await api.gql(NODE, {"id": real}, alice.token))["node"] == {"id": real}


# 2. Timing: hidden and missing ids -------------------------------------------------------
# (the answers alone: tests/graph/test_privacy.py test_mutations_by_others_answer_as_for_missing_ids)


@contextmanager
def sql_statements(skip_tasks: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """The SQL statements run while the block runs (tortoise logs each one, with its
    parameters separately, on ``tortoise.db_client`` at DEBUG); not those run by tasks
    named in ``skip_tasks`` (work left to a task of its own, after the answer)."""
    logger = logging.getLogger("tortoise.db_client")
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with suppress(RuntimeError):  # no running loop: not from a task
                task = asyncio.current_task()
                if task is not None and task.get_name() in skip_tasks:
                    return
            args = record.args if isinstance(record.args, tuple) else ()
            seen.append(str(args[0]) if args else record.getMessage())

    handler = Collect(logging.DEBUG)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


TIMED_REQUESTS = {
    "deleteDataset": lambda dataset_id: (DELETE_DATASET, {"i": {"datasetId": dataset_id}}),
    "setDatasetVisibility": lambda dataset_id: (
        SET_VISIBILITY,
        {"i": {"datasetId": dataset_id, "visibility": "PUBLIC", "ownsRights": True}},
    ),
    "node": lambda dataset_id: (NODE, {"id": dataset_id}),
}


@pytest.mark.parametrize("request_name", list(TIMED_REQUESTS))
async def test_hidden_missing_and_malformed_ids_run_the_same_sql(
    api: Api, request_name: str
) -> None:
    # (a hidden dataset used to cost an extra query: the owner check after the lookup)
    alice, mallory = await api.sign_up("alice"), await api.sign_up("mallory")
    _, _, hidden = await api.model_with_dataset(alice, "PRIVATE")
    build = TIMED_REQUESTS[request_name]
    targets = {
        "hidden": hidden,
        "missing": missing_id("TrainingDataset"),
        "wrong type": missing_id("Model"),
        "malformed": hidden[:-1],
    }
    answers, statements = {}, {}
    for label, target in targets.items():
        document, variables = build(target)
        await api.gql(document, variables, mallory.token)  # warm every cache first
        # when Mallory sends the request about each id
        with sql_statements() as seen:
            answers[label] = await api.gql(document, variables, mallory.token)
        statements[label] = seen
    # then the answers are identical
    assert len({repr(answer) for answer in answers.values()}) == 1, answers
    # and so is the SQL: the same statements, in the same order (their parameters apart)
    assert statements["hidden"], "no SQL seen: is tortoise still logging statements?"
    assert statements["hidden"] == statements["missing"]
    if request_name == "node":
        # node() looks an id of another type up in that type's table (as many statements),
        # and answers a malformed id without asking the database at all: an id's shape is
        # public knowledge (graph/schema/ids.py), so skipping the query tells nothing
        assert len(statements["wrong type"]) == len(statements["hidden"])
        assert len(statements["malformed"]) <= len(statements["hidden"])
    else:
        assert statements["hidden"] == statements["wrong type"] == statements["malformed"]


async def test_hidden_and_missing_ids_take_the_same_time(api: Api) -> None:
    alice, mallory = await api.sign_up("alice"), await api.sign_up("mallory")
    _, _, hidden = await api.model_with_dataset(alice, "PRIVATE")
    missing = missing_id("TrainingDataset")
    for name in ("deleteDataset", "node"):
        document_of = TIMED_REQUESTS[name]

        def about(target: str) -> Callable[[int], Awaitable[float]]:
            async def measure(_n: int) -> float:
                document, variables = document_of(target)  # noqa: B023 - used at once
                started = time.perf_counter()
                await api.gql(document, variables, mallory.token)
                return time.perf_counter() - started

            return measure

        # when Mallory times the request about Alice's dataset against a missing id,
        # interleaved (after a warm-up)
        ratio, medians = await timing.same_time(about(hidden), about(missing))
        # then the medians are within noise of each other
        assert ratio < timing.TOLERANCE, (name, medians)


# 3. Username walk ------------------------------------------------------------------------


async def test_accounts_with_nothing_published_cannot_be_walked(api: Api) -> None:
    # (anonymous node(<User id>) used to answer every account)
    alice, bob, mallory = [await api.sign_up(n) for n in ("alice", "bob", "mallory")]
    # given Alice with only a draft model, and Bob with nothing at all
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    # when anybody or Mallory looks their ids up, then neither exists for them
    for person in (alice, bob):
        for token in (None, mallory.token):
            assert (await api.gql(USER_NODE, {"id": person.id}, token))["node"] is None
        # while each still sees themself
        own = (await api.gql(USER_NODE, {"id": person.id}, person.token))["node"]
        assert own == {"id": person.id, "username": person.username}
    # and once Alice publishes, everybody sees her (Bob, with nothing, still nobody)
    await api.publish(alice, version_id)
    for token in (None, mallory.token, bob.token):
        found = (await api.gql(USER_NODE, {"id": alice.id}, token))["node"]
        assert found == {"id": alice.id, "username": "alice"}
    for token in (None, mallory.token, alice.token):
        assert (await api.gql(USER_NODE, {"id": bob.id}, token))["node"] is None


# 4. Zip bomb with lying sizes ------------------------------------------------------------
# (the unit tests are in tests/storage/test_archives.py, e.g.
# test_lying_size_bomb_is_refused_after_inflating_little; the archive is built the same way)


def lying_bomb() -> bytes:
    """50 MiB of deflated zeros whose local and central headers claim 100 bytes (with
    the CRC of 100 zeros)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("zeros.bin"), bytes(50 << 20), zipfile.ZIP_DEFLATED)
    body = bytearray(buffer.getvalue())
    central = body.index(b"PK\x01\x02")
    struct.pack_into("<L", body, 14, zlib.crc32(bytes(100)))  # local header: crc
    struct.pack_into("<L", body, 22, 100)  # local header: uncompressed size
    struct.pack_into("<L", body, central + 16, zlib.crc32(bytes(100)))
    struct.pack_into("<L", body, central + 24, 100)
    return bytes(body)


async def test_a_zip_bomb_lying_about_its_sizes_is_refused_and_nothing_kept(
    api: Api, settings: Settings
) -> None:
    # given Mallory's pending dataset and a 50 KB archive whose headers say 100 bytes
    # but whose entry inflates to 50 MiB
    mallory = await api.sign_up("mallory")
    version_id = await api.create_version(mallory, await api.create_model(mallory))
    body = lying_bomb()
    assert len(body) < 100_000
    started = await api.start_upload(mallory, version_id, len(body))
    # when she uploads it
    response = await api.put(started["uploadUrl"], body)
    # then it is refused as a zip bomb
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ZIP_BOMB"
    # and nothing is stored: not the dataset's record (a new upload starts afresh), no
    # blob, no temp file
    assert await dataset_of(api, started["dataset"]["id"], mallory.token) is None
    assert dataset_blobs(settings.blob_dir) == set()
    tmp = settings.blob_dir / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


# 5. Lock-out ------------------------------------------------------------------------------
# (tests/storage/test_brute_force.py has the full set of log-in limits, e.g.
# test_an_attacker_hammering_from_one_address_cannot_lock_the_owner_out)

Client = Callable[[str], Api]


@pytest.fixture
async def from_address(
    settings: Settings, clock: MutableClock, database: None
) -> AsyncIterator[Client]:
    """``from_address("203.0.113.7")``: an Api whose requests come from that address."""
    app: Starlette = create_app(
        settings, clock=clock, scheduler=NoScheduler(), manage_database=False
    )
    opened: dict[str, Api] = {}

    def at(address: str) -> Api:
        if address not in opened:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            opened[address] = Api(httpx.AsyncClient(transport=transport, base_url="http://x"))
        return opened[address]

    yield at
    for client in opened.values():
        await client.http.aclose()


async def log_in(api: Api, username: str, password: str) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(LOG_IN, {"i": {"username": username, "password": password}})
    )["logIn"]
    return payload


@pytest.mark.env(LORASHELF_LOGIN_RATE_PER_USERNAME="3/minute")
async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(
    from_address: Client,
) -> None:
    # given Alice, and Mallory sending her ten wrong passwords from one address
    await from_address("198.51.100.1").sign_up("alice", PASSWORD)
    attacker = from_address("203.0.113.66")
    answers = [await log_in(attacker, "alice", WRONG) for _ in range(10)]
    codes = [a["userErrors"][0]["code"] for a in answers]
    # then Mallory's address is limited past three (even with the right password now)
    assert codes == ["INVALID_CREDENTIALS"] * 3 + ["RATE_LIMITED"] * 7
    assert (await log_in(attacker, "alice", PASSWORD))["userErrors"][0]["code"] == "RATE_LIMITED"
    # when Alice logs in from her own address
    own = await log_in(from_address("192.0.2.50"), "alice", PASSWORD)
    # then she gets in
    assert own["userErrors"] == [] and own["token"]
    assert own["user"]["username"] == "alice"


# 6. Slow bodies, against a real `lorashelf serve` ------------------------------------------

BODY_TIMEOUT = 2  # seconds
MIN_RATE = 1000  # bytes a second
GRACE = 1  # second
PER_ADDRESS = 3
HEAD_TIMEOUT = 2  # seconds
SEND_TIMEOUT = 2  # seconds
CONNECTIONS_PER_ADDRESS = 6
ANSWERED_WITHIN = 10  # seconds: the bound on how long a trickle may hold a connection


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Server]:
    """One real server for the module's slow-body tests, with small limits."""
    root = tmp_path_factory.mktemp("side-channels")
    env = {
        "LORASHELF_DATA_DIR": str(root / "var"),
        "LORASHELF_BODY_TIMEOUT": f"{BODY_TIMEOUT}s",
        "LORASHELF_UPLOAD_MIN_RATE": str(MIN_RATE),
        "LORASHELF_UPLOAD_GRACE": f"{GRACE}s",
        "LORASHELF_MAX_REQUESTS_PER_ADDRESS": str(PER_ADDRESS),
        "LORASHELF_HEAD_TIMEOUT": f"{HEAD_TIMEOUT}s",
        "LORASHELF_SEND_TIMEOUT": f"{SEND_TIMEOUT}s",
        "LORASHELF_MAX_CONNECTIONS_PER_ADDRESS": str(CONNECTIONS_PER_ADDRESS),
    }
    with processes.serve(env, root) as running:
        yield running


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Server]:
    """A real server behind a reverse proxy at 127.0.0.1, keeping idle connections 1 s
    and two connections per address."""
    root = tmp_path_factory.mktemp("proxied")
    env = {
        "LORASHELF_DATA_DIR": str(root / "var"),
        "LORASHELF_TRUSTED_PROXIES": "127.0.0.1",
        "LORASHELF_KEEP_ALIVE": "1s",
        "LORASHELF_MAX_CONNECTIONS_PER_ADDRESS": "2",
    }
    with processes.serve(env, root) as running:
        yield running


def blob_dir_of(server: processes.Server) -> Path:
    return server.log.parent / "var" / "blobs"  # its log is in its working directory


def connect(server: processes.Server, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the server from a chosen loopback address (all of 127/8 is
    loopback on Linux)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(ANSWERED_WITHIN)
    sock.connect(("127.0.0.1", server.port))
    return sock


def head(method: str, path: str, length: int, content_type: str = "application/json") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def trickle(sock: socket.socket, data: bytes, every: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time, ``every`` seconds apart, until the server answers
    (or ANSWERED_WITHIN passes); return what it answered and when (seconds)."""
    started = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # the server answered and closed: read what it said
            break
        readable, _, _ = select.select([sock], [], [], every)
        if readable or time.monotonic() - started > ANSWERED_WITHIN:
            break
    answer = read_answer(sock, started)
    return answer, time.monotonic() - started


def read_answer(sock: socket.socket, started: float) -> bytes:
    """The server's whole answer (head and Content-Length body), or what came of it
    until ANSWERED_WITHIN seconds after ``started``."""
    answer = b""
    while time.monotonic() - started < ANSWERED_WITHIN:
        head_end = answer.find(b"\r\n\r\n")
        if head_end >= 0:
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer[:head_end])
            if length is None or len(answer) >= head_end + 4 + int(length.group(1)):
                break
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_graphql_body_trickled_in_is_cut_with_408(server: processes.Server) -> None:
    # given Mallory's POST /graphql announcing 200 bytes, sent one every half second
    body = b'{"query": "{ __typename }"}'.ljust(200)
    with connect(server) as sock:
        sock.sendall(head("POST", "/graphql", len(body)))
        # when she trickles it
        answer, took = trickle(sock, body, every=0.5)
    # then the server answers 408 at the body deadline, not whenever she stops
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT - 0.5 <= took < ANSWERED_WITHIN, took


def pending_dataset(server: processes.Server, size: int) -> tuple[processes.Owner, str, str]:
    """(owner, version ID, upload URL) of a pending dataset of ``size`` bytes."""
    owner = processes.Owner.sign_up(server.url)
    model_id = owner.create_model()
    version_id = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return owner, version_id, start_dataset_upload(owner, version_id, size)


def start_dataset_upload(owner: processes.Owner, version_id: str, size: int) -> str:
    url: str = owner.mutate(
        "startDatasetUpload",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ uploadUrl userErrors { code message } } }",
        {
            "i": {
                "versionId": version_id,
                "filename": "slow.zip",
                "sizeBytes": size,
                "visibility": "PRIVATE",
            }
        },
    )["uploadUrl"]
    return url


def test_an_upload_trickled_in_is_cut_released_and_leaves_no_temp_file(
    server: processes.Server,
) -> None:
    # given Mallory's pending dataset of 20 KB
    body = processes.zip_bytes({"noise.bin": bytes(range(256)) * 80})
    owner, version_id, url = pending_dataset(server, len(body))
    path = url.removeprefix(server.url)
    tmp = blob_dir_of(server) / ".tmp"
    # when she PUTs it at a byte every half second (far below 1000 bytes a second)
    with connect(server) as sock:
        sock.sendall(head("PUT", path, len(body), "application/zip"))
        sock.sendall(body[:10])
        answer, took = trickle(sock, body[10:], every=0.5)
    # then the upload is cut soon after its grace period, as too slow
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"UPLOAD_TOO_SLOW" in answer, answer[:300]
    assert GRACE - 0.5 <= took < ANSWERED_WITHIN, took
    # and no temporary file is left behind
    processes.wait_for(
        lambda: not any(tmp.iterdir()), timeout=5, what="the upload's temp file to go"
    )
    # and the upload is released: a new URL can be asked for, and a body sent at speed
    # through it is taken
    again = start_dataset_upload(owner, version_id, len(body))
    put = httpx.put(again, content=body, timeout=10)
    assert put.status_code == 200, put.text
    assert put.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_one_address_at_its_limit_does_not_keep_another_out(server: processes.Server) -> None:
    # given Mallory holding three requests in flight from 127.0.0.1 (bodies announced,
    # never sent: each is held until the body deadline)
    held = [connect(server, "127.0.0.1") for _ in range(PER_ADDRESS)]
    try:
        for sock in held:
            sock.sendall(head("POST", "/graphql", 100))

        # when she sends one more from the same address
        def fourth() -> int:
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1")) as c:
                return c.get(f"{server.url}/healthz", timeout=5).status_code

        codes = processes.wait_for(
            lambda: (code := fourth()) == 429 and code,
            timeout=BODY_TIMEOUT - 0.5,
            interval=0.05,
            what="the fourth request from 127.0.0.1 to be refused",
        )
        # then it is refused with 429
        assert codes == 429
        # while another address is served at the same moment
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            served = other.get(f"{server.url}/healthz", timeout=5)
        assert served.status_code == 200, served.text
        # and the held requests are answered (408) and closed within the bound
        for sock in held:
            answer = read_answer(sock, time.monotonic())
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        for sock in held:
            sock.close()
    # and once they are over, the address is served again
    processes.wait_for(lambda: fourth() == 200, timeout=5, what="127.0.0.1 served again")


CLIENT_EXPIRY = httpx.Limits().keepalive_expiry  # httpx's default: 5 s


def healthz_on(sock: socket.socket) -> bytes:
    """The answer to a keep-alive ``GET /healthz`` sent on an open connection."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return read_answer(sock, time.monotonic())


def served_again(server: processes.Server, address: str) -> None:
    """Wait until a connection from ``address`` is served (its bound no longer held)."""

    def served() -> bool:
        with connect(server, address) as again:
            return healthz_on(again).startswith(b"HTTP/1.1 200")

    processes.wait_for(served, timeout=5, what=f"{address} served again")


def test_a_connection_idle_as_long_as_clients_keep_theirs_is_still_served(
    server: processes.Server,
) -> None:
    # given a client's kept-alive connection, answered once
    assert CLIENT_EXPIRY is not None
    with connect(server) as sock:
        assert healthz_on(sock).startswith(b"HTTP/1.1 200"), "first answer"
        # when it lies idle a second past the time httpx keeps an idle connection
        time.sleep(CLIENT_EXPIRY + 1)
        # then the server has not closed it: the next request on it is answered (a server
        # that closes first races the client, whose request meets a reset it cannot
        # safely retry when it is a POST)
        assert healthz_on(sock).startswith(b"HTTP/1.1 200"), "answer after the idle time"


def test_an_idle_connection_is_closed_after_the_configured_keep_alive(
    proxied: processes.Server,
) -> None:
    # given serve holding idle connections for 1 s
    with connect(proxied) as sock:
        assert healthz_on(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        # when the client sends nothing more
        readable, _, _ = select.select([sock], [], [], ANSWERED_WITHIN)
        # then the server closes the connection once the second has passed
        assert readable and sock.recv(1) == b"", "the connection is still open"
        assert 1 - 0.5 <= time.monotonic() - started < ANSWERED_WITHIN


def closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sent before closing ``sock`` (b"" for nothing) and when, waiting
    at most ``seconds``; the time is ``seconds`` when it stays open."""
    started = time.monotonic()
    received = b""
    while (left := started + seconds - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except OSError:  # reset: closed
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    return received, seconds


def test_a_connection_that_never_sends_a_head_is_closed_at_the_deadline(
    server: processes.Server,
) -> None:
    # given Mallory's connection, opened and left silent
    with connect(server) as sock:
        # when she sends nothing
        said, took = closed_within(sock, ANSWERED_WITHIN)
    # then the server closes it when the head is due, saying nothing
    assert said == b""
    assert HEAD_TIMEOUT - 0.5 <= took < ANSWERED_WITHIN, took


def test_a_head_trickled_in_is_cut_with_408(server: processes.Server) -> None:
    # given Mallory's request head, long enough to take far past the deadline
    head_bytes = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 40 + b"\r\n\r\n"
    with connect(server) as sock:
        # when she sends it a byte every half second
        answer, took = trickle(sock, head_bytes, every=0.5)
    # then the server answers 408 at the head's deadline, and never reads the rest
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEAD_TIMEOUT - 0.5 <= took < ANSWERED_WITHIN, took


def test_a_kept_alive_connection_owes_each_head_from_its_first_byte(
    server: processes.Server,
) -> None:
    # given a connection that was answered once
    with connect(server) as sock:
        assert healthz_on(sock).startswith(b"HTTP/1.1 200")
        # when it lies idle longer than a head may take (the keep-alive's time, not
        # the head's), then starts a head and stalls
        time.sleep(HEAD_TIMEOUT + 0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer, took = closed_within(sock, ANSWERED_WITHIN)
    # then the server waited for the head from its first byte, and cut it with 408
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEAD_TIMEOUT - 0.5 <= took < ANSWERED_WITHIN, took


def test_pipelined_requests_are_answered_and_their_connection_kept(
    server: processes.Server,
) -> None:
    # given two requests sent at once on one connection, the second with a body
    body = b'{"query": "{ __typename }"}'
    second = head("POST", "/graphql", len(body)) + body
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + second)
        # then both are answered, in order
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2 or not answers.rstrip().endswith(b"}"):
            readable, _, _ = select.select([sock], [], [], ANSWERED_WITHIN)
            chunk = sock.recv(65536) if readable else b""
            assert chunk, answers
            answers += chunk
        first, rest = answers.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200") and rest.startswith(b"200"), answers
        assert b"__typename" in rest, answers
        # and the connection, owing no head, is kept past a head's deadline
        said, took = closed_within(sock, HEAD_TIMEOUT + 1)
        assert (said, took) == (b"", HEAD_TIMEOUT + 1)


def test_a_client_that_closes_its_side_after_its_request_gets_the_answer(
    server: processes.Server,
) -> None:
    # given a client that sends a whole request and then closes its sending side
    # (shutdown(SHUT_WR), as `nc -N` and some health checkers do)
    body = b'{"query": "{ __typename }"}'
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        head("POST", "/graphql", len(body)) + body,
    ):
        with connect(server) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            # then the answer comes, whole, and the connection is closed after it
            said, took = closed_within(sock, ANSWERED_WITHIN)
            assert said.startswith(b"HTTP/1.1 200"), (request, said)
            assert took < ANSWERED_WITHIN, "left open after the answer"
            if request.startswith(b"POST"):
                assert said.rstrip().endswith(b'{"data":{"__typename":"Query"}}'), said


def test_a_client_that_closes_its_side_mid_request_is_closed(server: processes.Server) -> None:
    # given a client that closes its sending side with its head or its body half sent
    for partial in (b"GET /healthz HTTP/1.1\r\nHo", head("POST", "/graphql", 100) + b"{"):
        with connect(server) as sock:
            sock.sendall(partial)
            sock.shutdown(socket.SHUT_WR)
            # then the server closes the connection at once (nothing more can come)
            said, took = closed_within(sock, ANSWERED_WITHIN)
            assert took < HEAD_TIMEOUT, (said, took)


def test_the_rest_of_a_body_answered_early_is_due_at_the_head_deadline(
    server: processes.Server,
) -> None:
    # given Mallory's request announcing a body of a megabyte, answered before its body
    with connect(server) as sock:
        sock.sendall(head("GET", "/healthz", 1_000_000) + b"a")
        assert read_answer(sock, time.monotonic()).startswith(b"HTTP/1.1 200")
        # when she sends no more of it
        said, took = closed_within(sock, ANSWERED_WITHIN)
    # then the connection is closed when the rest was due
    assert said == b""
    assert HEAD_TIMEOUT - 0.5 <= took < ANSWERED_WITHIN, took


def test_a_connection_idle_after_a_late_body_is_closed_at_the_keep_alive(
    proxied: processes.Server,
) -> None:
    # given a request answered before its ten-byte body, whose body then arrives
    with connect(proxied) as sock:
        sock.sendall(head("GET", "/healthz", 10))
        assert read_answer(sock, time.monotonic()).startswith(b"HTTP/1.1 200")
        sock.sendall(b"0123456789")
        # when the connection then lies idle
        said, took = closed_within(sock, ANSWERED_WITHIN)
    # then it is closed at the keep-alive's end (1 s), as after any answer
    assert said == b"" and took < ANSWERED_WITHIN, took


def big_static_file() -> str:
    """The path of the largest file serve has to send without a login (GraphiQL's
    script, fetched by the set-up: `lorashelf fetch-graphiql`)."""
    files = sorted(graphiql.STATIC_DIR.rglob("*.js"), key=lambda p: p.stat().st_size)
    assert files and files[-1].stat().st_size > 1_000_000, "run `lorashelf fetch-graphiql`"
    return f"{graphiql.URL_PREFIX}/{files[-1].relative_to(graphiql.STATIC_DIR).as_posix()}"


def test_a_client_that_reads_nothing_is_dropped_at_the_send_deadline(
    server: processes.Server,
) -> None:
    # given Mallory asking for a file of megabytes on connections whose window is tiny
    path = big_static_file()
    size = (graphiql.STATIC_DIR / path.removeprefix(graphiql.URL_PREFIX + "/")).stat().st_size
    held = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.7", 0))
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        held.append(sock)
    try:
        # when she reads none of it for longer than the send deadline
        time.sleep(SEND_TIMEOUT + 2)
        # then the server has dropped each connection: what she can read then is cut
        # short of the file (a reset ends it)
        for sock in held:
            sock.settimeout(ANSWERED_WITHIN)
            received = 0
            with suppress(OSError):
                while chunk := sock.recv(65536):
                    received += len(chunk)
            assert received < size, f"{received} of {size} bytes: the answer waited for her"
    finally:
        for sock in held:
            sock.close()


def test_one_address_holds_a_bounded_number_of_connections(server: processes.Server) -> None:
    # given Mallory holding as many silent connections as one address may, from 127.0.0.3
    held = [connect(server, "127.0.0.3") for _ in range(CONNECTIONS_PER_ADDRESS)]
    try:
        # when she opens one more from the same address, and sends a request on it
        with connect(server, "127.0.0.3") as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            said, _ = closed_within(extra, ANSWERED_WITHIN)
        # then it is refused at once with 429 and closed
        assert said.startswith(b"HTTP/1.1 429"), said[:200]
        # while another address is served
        with connect(server, "127.0.0.4") as other:
            assert healthz_on(other).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()

    # and once hers are closed, her address is served again
    served_again(server, "127.0.0.3")


def test_a_trusted_proxy_is_not_held_to_the_bound_on_connections(
    proxied: processes.Server,
) -> None:
    # given a reverse proxy (trusted) at 127.0.0.1, where every client's connection
    # arrives, and a bound of two connections per address
    # when it holds four connections open at once
    socks = [connect(proxied, "127.0.0.1") for _ in range(4)]
    try:
        # then every one of them is served
        assert [healthz_on(sock)[:12] for sock in socks] == [b"HTTP/1.1 200"] * 4
    finally:
        for sock in socks:
            sock.close()
    # while an address it does not trust is held to the bound
    untrusted = [connect(proxied, "127.0.0.5") for _ in range(3)]
    try:
        said = [closed_within(sock, 0.5)[0] for sock in untrusted]
        assert [s[:12] for s in said] == [b"", b"", b"HTTP/1.1 429"]
    finally:
        for sock in untrusted:
            sock.close()


def test_a_websocket_counts_against_its_address_until_it_closes(
    proxied: processes.Server,
) -> None:
    # given two subscriptions' sockets open from 127.0.0.6 (the bound is two)
    url = proxied.url.replace("http://", "ws://") + "/graphql"
    sockets = [
        websocket.create_connection(
            url, subprotocols=["graphql-transport-ws"], socket=connect(proxied, "127.0.0.6")
        )
        for _ in range(2)
    ]
    try:
        # when the address opens one more connection
        with connect(proxied, "127.0.0.6") as extra:
            said, _ = closed_within(extra, ANSWERED_WITHIN)
        # then the upgraded connections still count: it is refused
        assert said.startswith(b"HTTP/1.1 429"), said[:200]
    finally:
        for ws in sockets:
            ws.close()

    # and once they are closed, they no longer count
    served_again(proxied, "127.0.0.6")


def account_codes(
    server: processes.Server, mutation: str, inputs: list[dict[str, str]], addresses: list[str]
) -> list[str]:
    """Each input sent as ``mutation`` through the proxy for its own forwarded address: the
    first error code of each answer, or "OK"."""
    query = (
        f"mutation($i: {mutation[0].upper()}{mutation[1:]}Input!) "
        f"{{ {mutation}(input: $i) {{ token userErrors {{ code }} }} }}"
    )
    codes = []
    with httpx.Client(base_url=server.url, timeout=ANSWERED_WITHIN) as http:
        for given, address in zip(inputs, addresses, strict=True):
            answer = http.post(
                "/graphql",
                json={"query": query, "variables": {"i": given}},
                headers={"x-forwarded-for": address},
            )
            errors = answer.json()["data"][mutation]["userErrors"]
            codes.append(errors[0]["code"] if errors else "OK")
    return codes


def test_a_guesser_moving_through_one_ipv6_64_is_limited_as_one_client(
    proxied: processes.Server,
) -> None:
    # given a guesser whose network hands out a /64 (2001:db8:64::/64), behind the proxy,
    # and the default limits: 10 sign-ups an hour, 30 log-ins a minute per client
    def own_address(n: int) -> str:
        return f"2001:db8:64::{n + 1:x}"

    # when it signs up from a new address of the /64 each time
    signups = [
        {"username": f"six-four-{n}", "password": "correct horse battery"} for n in range(11)
    ]
    codes = account_codes(proxied, "signUp", signups, [own_address(n) for n in range(11)])
    # then the eleventh is refused as from the same client
    assert codes == ["OK"] * 10 + ["RATE_LIMITED"], codes

    # when it guesses passwords, each from yet another address of the /64
    guesses = [{"username": f"six-four-{n % 10}", "password": f"guess {n}"} for n in range(31)]
    addresses = [own_address(100 + n) for n in range(31)]
    codes = account_codes(proxied, "logIn", guesses, addresses)
    # then past thirty it is refused, whatever the address
    assert codes == ["INVALID_CREDENTIALS"] * 30 + ["RATE_LIMITED"], codes

    # while a client in the next /64 still signs up and logs in
    neighbour = ["2001:db8:64:1::1"]
    assert account_codes(proxied, "signUp", [signups[0] | {"username": "next-64"}], neighbour) == [
        "OK"
    ]
    assert account_codes(proxied, "logIn", [signups[0] | {"username": "next-64"}], neighbour) == [
        "OK"
    ]


# 7. The owner's download history ---------------------------------------------------------
# (also tests/graph/test_downloads.py test_download_is_recorded_in_the_owners_history)


def event_kinds(node: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in node["events"]]


async def test_ranged_requests_through_one_link_are_one_download(api: Api) -> None:
    # (a link used to record a download per request: 105 `bytes=0-0` requests pushed
    # the upload and publish out of the 100-entry history)
    alice = await api.sign_up("alice")
    _, _, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    url = await download_url(api, alice, dataset_id)
    # when 105 ranged requests go through the one link
    for n in range(105):
        response = await api.http.get(url, headers={"range": f"bytes={n % 3}-{n % 3}"})
        assert response.status_code == 206
    # then the history shows one download, after the whole lifecycle
    node = await dataset_of(api, dataset_id, alice.token)
    assert node is not None
    assert event_kinds(node) == ["UPLOAD_STARTED", "UPLOADED", "PUBLISHED", "DOWNLOADED"]


async def test_fresh_links_cannot_push_the_lifecycle_out_of_the_history(api: Api) -> None:
    alice = await api.sign_up("alice")
    _, _, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    # when forty fresh links are each used once, from byte 0
    for _ in range(40):
        url = await download_url(api, alice, dataset_id)
        assert (await api.http.get(url, headers={"range": "bytes=0-0"})).status_code == 206
    # then at most KEEP[DOWNLOADED] downloads are kept, and the lifecycle is all there
    node = await dataset_of(api, dataset_id, alice.token)
    assert node is not None
    kinds = event_kinds(node)
    assert kinds.count("DOWNLOADED") == KEEP[EventKind.DOWNLOADED] < 40
    assert kinds[:3] == ["UPLOAD_STARTED", "UPLOADED", "PUBLISHED"]


async def test_a_ranged_first_request_is_recorded_with_the_address_it_came_from(
    from_address: Client,
) -> None:
    # (ranged requests that skipped byte 0 recorded nothing; every download was
    # recorded as "by the owner")
    alice = await from_address("198.51.100.1").sign_up("alice")
    bob = await from_address("198.51.100.2").sign_up("bob")
    owner_api = from_address("198.51.100.1")
    _, _, dataset_id = await owner_api.model_with_dataset(alice, "PUBLIC")
    # when Alice's link is used from 203.0.113.9, its first request skipping byte 0
    url = await download_url(owner_api, alice, dataset_id)
    leaked = from_address("203.0.113.9")
    assert (await leaked.http.get(url, headers={"range": "bytes=1-"})).status_code == 206
    # and Bob downloads the public dataset through his own link
    node = await dataset_of(owner_api, dataset_id, bob.token)
    assert node is not None and node["events"] is None  # (only the owner sees history)
    assert (await from_address("192.0.2.77").http.get(node["downloadUrl"])).status_code == 200
    # then Alice's history has both: hers naming the address, Bob's naming nobody
    mine = await dataset_of(owner_api, dataset_id, alice.token)
    assert mine is not None
    downloads = [e["detail"] for e in mine["events"] if e["kind"] == "DOWNLOADED"]
    assert downloads[0] == "through a link issued to you, from 203.0.113.9"
    assert len(downloads) == 2 and "issued to you" not in downloads[1]
    assert "192.0.2.77" not in downloads[1]


# 8. Cursor overflow ------------------------------------------------------------------------
# (also tests/graph/test_catalogue.py test_malformed_cursors_are_invalid_cursor and
# tests/graph/test_consistency.py test_malformed_cursors_are_clear_errors)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


HUGE = "9223372036854775808"
FORGED_CURSORS = [
    b64(f"n:{HUGE}"),
    b64(f"cursor:{HUGE}"),
    b64(f"Notification:{HUGE}"),
    b64(f"e:{HUGE}.{HUGE}"),
    b64(f"download_count:{HUGE}.1"),
    b64("n:" + "9" * 400),
    base64.b64encode(f"cursor:{HUGE}".encode()).decode(),
    "",
    "!!!",
    "\x00",
    "é" * 10,
    "A" * 5000,
    base64.urlsafe_b64encode(bytes(range(60))).decode(),
]
CONNECTIONS = {
    "models": "query($c: String) { models(first: 1, after: $c) "
    "{ edges { cursor } pageInfo { endCursor } } }",
    "trainingDatasets": "query($c: String) { viewer { trainingDatasets(first: 1, after: $c) "
    "{ edges { cursor } pageInfo { endCursor } } } }",
    "notifications": "query($c: String) { viewer { notifications(first: 1, after: $c) "
    "{ edges { cursor } pageInfo { endCursor } } } }",
    "User.models": "query($c: String, $u: ID!) { node(id: $u) { ... on User { "
    "models(first: 1, after: $c) { edges { cursor } pageInfo { endCursor } } } } }",
}
# Cursors of listings of other objects (a model is a model in models and User.models).
OTHER = {
    "models": ("trainingDatasets", "notifications"),
    "User.models": ("trainingDatasets", "notifications"),
    "trainingDatasets": ("models", "notifications"),
    "notifications": ("models", "trainingDatasets"),
}


def end_cursor(data: dict[str, Any]) -> str | None:
    """The endCursor anywhere in a connection answer."""
    for value in data.values():
        if isinstance(value, dict):
            if "endCursor" in value:
                cursor: str | None = value["endCursor"]
                return cursor
            found = end_cursor(value)
            if found is not None:
                return found
    return None


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")
async def test_forged_cursors_are_invalid_cursor_on_every_connection(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given Mallory with two published models, two datasets and two notifications
    mallory = await api.sign_up("mallory")
    for _ in range(2):
        await api.model_with_dataset(mallory, "PRIVATE")
        clock.advance(1)
    clock.advance(30)
    await sweep(ctx)
    real: dict[str, str] = {}
    for name, document in CONNECTIONS.items():
        data = await api.gql(document, {"c": None, "u": mallory.id}, mallory.token)
        cursor = end_cursor(data)
        assert cursor is not None, (name, data)
        real[name] = cursor
        # (the real cursor works)
        assert end_cursor(await api.gql(document, {"c": cursor, "u": mallory.id}, mallory.token))
    # when she sends forged cursors, and real ones of other listings, to every connection
    sent = [(repr(c[:40]), c) for c in FORGED_CURSORS]
    wrong = []
    for name, document in CONNECTIONS.items():
        for label, after in [*sent, *((f"a {o} cursor", real[o]) for o in OTHER[name])]:
            body = await api.raw(document, {"c": after, "u": mallory.id}, mallory.token)
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            if codes != ["INVALID_CURSOR"]:
                wrong.append((name, label, codes or "accepted"))
    # then each is INVALID_CURSOR, never an internal error, never read as a position
    assert wrong == [], wrong


# 9. Password truncation ------------------------------------------------------------------
# (also tests/storage/test_brute_force.py test_the_whole_password_is_compared)


async def test_a_longer_password_starting_with_the_real_one_does_not_log_in(api: Api) -> None:
    # given Alice, whose password is 1,024 characters (the longest allowed)
    secret = hashlib.sha512(b"alice").hexdigest() * 8
    assert len(secret) == 1024
    alice = await api.sign_up("alice", secret)
    # when Mallory logs in with it followed by anything
    for attempt in (secret + "anything", secret + "\x00", secret + secret):
        answer = await log_in(api, "alice", attempt)
        # then she does not get in
        assert answer["token"] is None
        assert [e["code"] for e in answer["userErrors"]] == ["INVALID_CREDENTIALS"]
    # and such a password does not pass as the current one for changePassword either
    changed = (
        await api.gql(
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) "
            "{ token userErrors { code } } }",
            {"i": {"currentPassword": secret + "x", "newPassword": "mallory was here"}},
            alice.token,
        )
    )["changePassword"]
    assert changed == {"token": None, "userErrors": [{"code": "INVALID_CREDENTIALS"}]}
    # while the exact password still works
    assert (await log_in(api, "alice", secret))["token"]


# 10. No bound on models per user -----------------------------------------------------------
# (the text bounds also in tests/graph/test_catalogue.py, e.g. NAME_TOO_LONG)


async def create_model(api: Api, who: Person, name: str, description: str = "") -> list[str]:
    payload = (
        await api.gql(CREATE_MODEL, {"i": {"name": name, "description": description}}, who.token)
    )["createModel"]
    return [e["code"] for e in payload["userErrors"]]


@pytest.mark.env(LORASHELF_MAX_MODELS_PER_USER="3")
async def test_models_per_user_and_their_text_are_bounded(api: Api) -> None:
    mallory, bob = await api.sign_up("mallory"), await api.sign_up("bob")
    # when Mallory sends a name and a description one character too long
    assert await create_model(api, mallory, "n" * 201) == ["NAME_TOO_LONG"]
    assert await create_model(api, mallory, "ok", "d" * 20_001) == ["DESCRIPTION_TOO_LONG"]
    # (the longest allowed are taken)
    assert await create_model(api, mallory, "n" * 200, "d" * 20_000) == []
    # and then fires six creations at once
    answers = await asyncio.gather(*(create_model(api, mallory, f"m{n}") for n in range(6)))
    # then only two more are made (three in all), the rest refused with QUOTA_MODELS
    assert sorted(map(tuple, answers)) == [()] * 2 + [("QUOTA_MODELS",)] * 4
    listed = await api.gql(
        "{ viewer { models(first: 100) { edges { node { id } } } } }", token=mallory.token
    )
    assert len(listed["viewer"]["models"]["edges"]) == 3
    # and an update cannot grow a name past the bound either
    some_model = listed["viewer"]["models"]["edges"][0]["node"]["id"]
    updated = await api.gql(
        "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { code } } }",
        {"i": {"modelId": some_model, "name": "n" * 201}},
        mallory.token,
    )
    assert updated["updateModel"]["userErrors"] == [{"code": "NAME_TOO_LONG"}]
    # while Bob is unaffected
    assert await create_model(api, bob, "mine") == []


# 11. Links and Host; links after logOut and changePassword ---------------------------------

UPLOAD_URLS = """
mutation($d: StartDatasetUploadInput!, $f: StartModelFileUploadInput!) {
  startDatasetUpload(input: $d) { uploadUrl userErrors { code } }
  startModelFileUpload(input: $f) { uploadUrl userErrors { code } }
}
"""
VERSION_LINKS = """
query($id: ID!) {
  node(id: $id) { ... on ModelVersion {
    trainingDataset { downloadUrl } files { downloadUrl }
  } }
}
"""


async def links_for_a_spoofed_host(api: Api) -> list[str]:
    """Upload and download URLs Alice gets with ``Host: evil.example:1`` (and forwarded
    host headers) on her requests."""
    alice = await api.sign_up("alice")
    spoofed = {
        "authorization": f"Bearer {alice.token}",
        "host": "evil.example:1",
        "x-forwarded-host": "evil.example:1",
        "x-forwarded-proto": "https",
    }

    async def post(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = await api.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=spoofed
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]

    model_id = await api.create_model(alice)
    _, published, _ = await api.model_with_dataset(alice, "PRIVATE")
    draft = await api.create_version(alice, model_id)
    uploads = await post(
        UPLOAD_URLS,
        {
            "d": {
                "versionId": draft,
                "filename": "a.zip",
                "sizeBytes": 100,
                "visibility": "PRIVATE",
            },
            "f": {"versionId": draft, "filename": "a.safetensors", "sizeBytes": 100},
        },
    )
    version = (await post(VERSION_LINKS, {"id": published}))["node"]
    links = [
        uploads["startDatasetUpload"]["uploadUrl"],
        uploads["startModelFileUpload"]["uploadUrl"],
        version["trainingDataset"]["downloadUrl"],
        *(f["downloadUrl"] for f in version["files"]),
    ]
    assert all(links) and len(links) == 4, links
    return links


async def test_links_never_follow_the_host_header(api: Api) -> None:
    # (links used to be built from Host: a forged Host made victims upload elsewhere)
    links = await links_for_a_spoofed_host(api)
    for link in links:
        assert "evil.example" not in link
        assert link.startswith(("/uploads/", "/downloads/")), link  # relative: no host


@pytest.mark.env(LORASHELF_PUBLIC_URL="https://api.example.com")
async def test_links_use_the_configured_public_url_whatever_the_host(api: Api) -> None:
    links = await links_for_a_spoofed_host(api)
    for link in links:
        assert "evil.example" not in link
        assert link.startswith(
            ("https://api.example.com/uploads/", "https://api.example.com/downloads/")
        ), link


async def test_a_download_link_dies_with_the_sign_in_it_was_made_for(api: Api) -> None:
    # (a link copied from a session used to keep working after logOut)
    alice = await api.sign_up("alice")
    _, _, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    second = (await log_in(api, "alice", PASSWORD))["token"]
    url = await download_url(api, alice, dataset_id)
    other_url = await download_url(api, Person("alice", second, alice.id), dataset_id)
    assert (await api.http.get(url)).status_code == 200
    # when Alice logs out of the first sign-in
    logged_out = await api.gql("mutation { logOut { ok userErrors { code } } }", token=alice.token)
    assert logged_out["logOut"] == {"ok": True, "userErrors": []}
    # then its link is gone, while the other sign-in's link still works
    gone = await api.http.get(url)
    assert gone.status_code == 404 and gone.json()["error"] == "NOT_FOUND"
    assert (await api.http.get(other_url)).status_code == 200


async def test_changing_the_password_ends_every_sign_in_and_its_links(api: Api) -> None:
    alice = await api.sign_up("alice")
    _, _, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    # given a second sign-in (a stolen token, say) and links minted for both
    stolen = (await log_in(api, "alice", PASSWORD))["token"]
    old_tokens = [alice.token, stolen]
    old_urls = [
        await download_url(api, Person("alice", t, alice.id), dataset_id) for t in old_tokens
    ]
    # when Alice changes her password
    changed = (
        await api.gql(
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) "
            "{ token user { username } userErrors { code } } }",
            {"i": {"currentPassword": PASSWORD, "newPassword": "a brand new passphrase"}},
            alice.token,
        )
    )["changePassword"]
    assert changed["userErrors"] == [] and changed["user"] == {"username": "alice"}
    new_token = changed["token"]
    assert new_token not in old_tokens
    # then every old token is refused (401: the client is told to sign in again)
    for token in old_tokens:
        refused = await api.http.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # and every old link is gone
    for url in old_urls:
        assert (await api.http.get(url)).status_code == 404
    # while the new token works, and so do links made for it
    assert (await api.gql("{ viewer { username } }", token=new_token))["viewer"] == {
        "username": "alice"
    }
    fresh = await download_url(api, Person("alice", new_token, alice.id), dataset_id)
    assert (await api.http.get(fresh)).status_code == 200
    # and the old password no longer logs in, the new one does
    assert (await log_in(api, "alice", PASSWORD))["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
    assert (await log_in(api, "alice", "a brand new passphrase"))["token"]


def test_the_answer_to_an_upload_never_measures_the_free_space(tmp_path: Path) -> None:
    # given a disk with a gigabyte above the configured minimum, and datasets of up to
    # two gigabytes allowed
    headroom = 1 << 30
    free = shutil.disk_usage(tmp_path).free
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_MIN_FREE_BYTES": str(free - headroom),
        "LORASHELF_MAX_DATASET_BYTES": "2GiB",
    }
    with processes.serve(env, tmp_path) as running:
        mallory = processes.Owner.sign_up(running.url)
        version_id = mallory.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": mallory.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
        )["version"]["id"]

        def answer(size: int) -> Any:
            return mallory.gql(
                "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
                "{ uploadUrl userErrors { code } } }",
                {
                    "i": {
                        "versionId": version_id,
                        "filename": "probe.zip",
                        "sizeBytes": size,
                        "visibility": "PRIVATE",
                    }
                },
            )["startDatasetUpload"]["userErrors"]

        # when Mallory asks to upload a kilobyte, then a size beyond the free headroom
        # (sizes asked one after another would bisect the free space: the bytes other
        # people's private uploads take, and their deletions give back)
        small, large = answer(1024), answer(headroom + headroom // 2)
    # then both get the same answer: whether the largest upload allowed would fit
    assert small == large == [{"code": "STORAGE_FULL"}]
