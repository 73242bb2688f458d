"""Which writes move the public generation (and so end the anonymous cache's reuse, a
change an anonymous observer can time): every one that changes what anonymous viewers
see, and none that changes only what its owner sees.

The mutations are enumerated from the schema, not listed by hand: a mutation without
cases here fails :func:`test_every_mutation_has_its_cases`, so a new one is classified
before it ships. Each case sets its scene, then runs one write and compares the
generation (read from the database) before and after it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tortoise.transactions import in_transaction

from graph.schema.build import build_schema
from storage import operators
from storage.config.settings import load_settings
from storage.db import public_generation
from storage.db.site import OutgoingMail
from tests.conftest import SET_VISIBILITY, START, Api, Person, make_zip

MAIL = {  # e-mail configured (nothing is sent in process: the queue is read)
    "LORASHELF_SMTP_URL": "smtp://mailer:secret@127.0.0.1:1",
    "LORASHELF_MAIL_FROM": "lorashelf <noreply@example.test>",
    "LORASHELF_PUBLIC_URL": "https://shelf.example.test",
}


@dataclass(frozen=True)
class Case:
    mutation: str
    moves: bool  # whether anonymous viewers see the difference
    what: str
    act: Callable[[Api], Awaitable[Callable[[], Awaitable[Any]]]]  # scene, then the write
    env: dict[str, str] | None = None  # configuration the case needs

    @property
    def id(self) -> str:
        return f"{self.mutation}: {self.what}"


CASES: list[Case] = []


def case(
    mutation: str, *, moves: bool, what: str, env: dict[str, str] | None = None
) -> Callable[[Any], Any]:
    def register(act: Callable[[Api], Awaitable[Callable[[], Awaitable[Any]]]]) -> Any:
        CASES.append(Case(mutation, moves, what, act, env))
        return act

    return register


def run(api: Api, name: str, document: str, variables: dict[str, Any], who: Person | None):
    """The write: a mutation that must succeed."""

    async def write() -> Any:
        return await api.mutate(name, document, variables, who.token if who else None)

    return write


def mutation(name: str, fields: str = "userErrors { code message }") -> str:
    input_type = name[0].upper() + name[1:] + "Input"
    return f"mutation($i: {input_type}!) {{ {name}(input: $i) {{ {fields} }} }}"


async def draft(api: Api) -> tuple[Person, str, str]:
    """An owner with a model that has one draft version (nothing published)."""
    owner = await api.sign_up()
    model_id = await api.create_model(owner)
    return owner, model_id, await api.create_version(owner, model_id)


async def published(api: Api, visibility: str = "PRIVATE") -> tuple[Person, str, str, str]:
    """An owner with a published version and its dataset (private by default)."""
    owner = await api.sign_up()
    model_id, version_id, dataset_id = await api.model_with_dataset(owner, visibility)
    return owner, model_id, version_id, dataset_id


# Accounts and the inbox: never anything anonymous viewers see ---------------------


@case("signUp", moves=False, what="a new account")
async def _(api: Api) -> Any:
    document = mutation("signUp", "token userErrors { code }")
    return run(
        api, "signUp", document, {"i": {"username": "newbie", "password": "pw long enough"}}, None
    )


@case("logIn", moves=False, what="signing in")
async def _(api: Api) -> Any:
    await api.sign_up("alice", "correct horse battery")
    variables = {"i": {"username": "alice", "password": "correct horse battery"}}
    return run(api, "logIn", mutation("logIn", "token userErrors { code }"), variables, None)


@case("logOut", moves=False, what="signing out")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    return run(api, "logOut", "mutation { logOut { ok userErrors { code } } }", {}, owner)


@case("changePassword", moves=False, what="a new password")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    variables = {"i": {"currentPassword": "correct horse battery", "newPassword": "another one!!"}}
    return run(
        api,
        "changePassword",
        mutation("changePassword", "token userErrors { code }"),
        variables,
        owner,
    )


@case("markNotificationsRead", moves=False, what="an empty inbox marked read")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    return run(
        api, "markNotificationsRead", mutation("markNotificationsRead"), {"i": {"ids": []}}, owner
    )


# Models ------------------------------------------------------------------------------


@case("createModel", moves=False, what="a model without versions")
async def _(api: Api) -> Any:
    owner = await api.sign_up()
    variables = {"i": {"name": "Hidden", "description": "not yet"}}
    return run(api, "createModel", mutation("createModel"), variables, owner)


@case("updateModel", moves=False, what="a model with nothing published")
async def _(api: Api) -> Any:
    owner, model_id, _ = await draft(api)
    return run(
        api,
        "updateModel",
        mutation("updateModel"),
        {"i": {"modelId": model_id, "name": "Renamed"}},
        owner,
    )


@case("updateModel", moves=True, what="a published model")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    return run(
        api,
        "updateModel",
        mutation("updateModel"),
        {"i": {"modelId": model_id, "name": "Renamed"}},
        owner,
    )


@case("deleteModel", moves=False, what="a model with nothing published")
async def _(api: Api) -> Any:
    owner, model_id, _ = await draft(api)
    await api.upload(owner, await api.create_version(owner, model_id, "v2"), "PRIVATE")
    return run(api, "deleteModel", mutation("deleteModel"), {"i": {"modelId": model_id}}, owner)


@case("deleteModel", moves=True, what="a published model")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    return run(api, "deleteModel", mutation("deleteModel"), {"i": {"modelId": model_id}}, owner)


# Versions ------------------------------------------------------------------------------


@case("createModelVersion", moves=False, what="a draft of a published model")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    variables = {"i": {"modelId": model_id, "name": "v2", "baseModel": "SDXL_1_0"}}
    return run(api, "createModelVersion", mutation("createModelVersion"), variables, owner)


@case("updateModelVersion", moves=False, what="a draft renamed")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    variables = {"i": {"versionId": version_id, "name": "renamed"}}
    return run(api, "updateModelVersion", mutation("updateModelVersion"), variables, owner)


@case("updateModelVersion", moves=False, what="a draft of a published model renamed")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    version_id = await api.create_version(owner, model_id, "v2")
    variables = {"i": {"versionId": version_id, "name": "renamed"}}
    return run(api, "updateModelVersion", mutation("updateModelVersion"), variables, owner)


@case("updateModelVersion", moves=True, what="a published version renamed")
async def _(api: Api) -> Any:
    owner, _, version_id, _ = await published(api)
    variables = {"i": {"versionId": version_id, "name": "renamed"}}
    return run(api, "updateModelVersion", mutation("updateModelVersion"), variables, owner)


@case("publishModelVersion", moves=True, what="a draft published")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    await api.upload_file(owner, version_id)
    variables = {"i": {"versionId": version_id}}
    return run(api, "publishModelVersion", mutation("publishModelVersion"), variables, owner)


@case("deleteModelVersion", moves=False, what="a draft with a private dataset")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    version_id = await api.create_version(owner, model_id, "v2")
    await api.upload(owner, version_id, "PRIVATE")
    variables = {"i": {"versionId": version_id}}
    return run(api, "deleteModelVersion", mutation("deleteModelVersion"), variables, owner)


@case("deleteModelVersion", moves=True, what="a published version")
async def _(api: Api) -> Any:
    owner, model_id, version_id, _ = await published(api)
    await api.publish(owner, await api.create_version(owner, model_id, "v2"))
    variables = {"i": {"versionId": version_id}}
    return run(api, "deleteModelVersion", mutation("deleteModelVersion"), variables, owner)


# Weights files ---------------------------------------------------------------------------


@case("startModelFileUpload", moves=False, what="a draft's file")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    variables = {"i": {"versionId": version_id, "filename": "lora.safetensors", "sizeBytes": 100}}
    return run(api, "startModelFileUpload", mutation("startModelFileUpload"), variables, owner)


@case("deleteModelFile", moves=False, what="a draft's file")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    file_id = await api.upload_file(owner, version_id)
    variables = {"i": {"fileId": file_id}}
    return run(api, "deleteModelFile", mutation("deleteModelFile"), variables, owner)


@case("setPrimaryModelFile", moves=False, what="a draft's second file made primary")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    await api.upload_file(owner, version_id)
    second = await api.upload_file(owner, version_id, filename="other.safetensors")
    variables = {"i": {"fileId": second}}
    return run(api, "setPrimaryModelFile", mutation("setPrimaryModelFile"), variables, owner)


@case("setPrimaryModelFile", moves=True, what="a published version's second file made primary")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    await api.upload_file(owner, version_id)
    second = await api.upload_file(owner, version_id, filename="other.safetensors")
    await api.publish(owner, version_id)
    variables = {"i": {"fileId": second}}
    return run(api, "setPrimaryModelFile", mutation("setPrimaryModelFile"), variables, owner)


# Training datasets --------------------------------------------------------------------------


@case("startDatasetUpload", moves=False, what="a draft's public dataset")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    variables = {
        "i": {
            "versionId": version_id,
            "filename": "data.zip",
            "sizeBytes": 100,
            "visibility": "PUBLIC",
            "ownsRights": True,
        }
    }
    return run(api, "startDatasetUpload", mutation("startDatasetUpload"), variables, owner)


def visibility(dataset_id: str, value: str) -> dict[str, Any]:
    return {"i": {"datasetId": dataset_id, "visibility": value, "ownsRights": value == "PUBLIC"}}


@case("setDatasetVisibility", moves=False, what="a draft's dataset made public")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    dataset_id = await api.upload(owner, version_id, "PRIVATE")
    return run(api, "setDatasetVisibility", SET_VISIBILITY, visibility(dataset_id, "PUBLIC"), owner)


@case("setDatasetVisibility", moves=False, what="a private dataset made private again")
async def _(api: Api) -> Any:
    owner, _, _, dataset_id = await published(api)
    return run(
        api, "setDatasetVisibility", SET_VISIBILITY, visibility(dataset_id, "PRIVATE"), owner
    )


@case("setDatasetVisibility", moves=True, what="a published version's dataset made public")
async def _(api: Api) -> Any:
    owner, _, _, dataset_id = await published(api)
    return run(api, "setDatasetVisibility", SET_VISIBILITY, visibility(dataset_id, "PUBLIC"), owner)


@case("setDatasetVisibility", moves=True, what="a published version's dataset made private")
async def _(api: Api) -> Any:
    owner, _, _, dataset_id = await published(api, "PUBLIC")
    return run(
        api, "setDatasetVisibility", SET_VISIBILITY, visibility(dataset_id, "PRIVATE"), owner
    )


@case("deleteDataset", moves=False, what="a draft's private dataset")
async def _(api: Api) -> Any:
    owner, _, version_id = await draft(api)
    dataset_id = await api.upload(owner, version_id, "PRIVATE")
    return run(
        api, "deleteDataset", mutation("deleteDataset"), {"i": {"datasetId": dataset_id}}, owner
    )


@case("deleteDataset", moves=False, what="a published version's private dataset")
async def _(api: Api) -> Any:
    owner, _, _, dataset_id = await published(api)
    return run(
        api, "deleteDataset", mutation("deleteDataset"), {"i": {"datasetId": dataset_id}}, owner
    )


@case("deleteDataset", moves=True, what="a published version's public dataset")
async def _(api: Api) -> Any:
    owner, _, _, dataset_id = await published(api, "PUBLIC")
    return run(
        api, "deleteDataset", mutation("deleteDataset"), {"i": {"datasetId": dataset_id}}, owner
    )


# The account as a whole ----------------------------------------------------------


@case("requestDataExport", moves=False, what="an export of everything the caller owns")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    return run(api, "requestDataExport", mutation("requestDataExport"), {"i": {}}, owner)


@case("deleteAccount", moves=False, what="an account with nothing published")
async def _(api: Api) -> Any:
    owner, *_ = await draft(api)
    variables = {"i": {"password": "correct horse battery"}}
    return run(api, "deleteAccount", mutation("deleteAccount"), variables, owner)


@case("deleteAccount", moves=True, what="an account with a published model")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    variables = {"i": {"password": "correct horse battery"}}
    return run(api, "deleteAccount", mutation("deleteAccount"), variables, owner)


# E-mail: the caller's own account -----------------------------------------------

SET_EMAIL = mutation("setEmail")


@case("setEmail", moves=False, what="an address set", env=MAIL)
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    return run(api, "setEmail", SET_EMAIL, {"i": {"email": "owner@example.test"}}, owner)


@case("verifyEmail", moves=False, what="an address confirmed through its link", env=MAIL)
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    await api.mutate("setEmail", SET_EMAIL, {"i": {"email": "owner@example.test"}}, owner.token)
    mail = await OutgoingMail.filter(recipient="owner@example.test").order_by("-id").first()
    assert mail is not None
    link = re.search(r"https://\S+", mail.text_body)
    assert link is not None
    token = parse_qs(urlsplit(link.group(0)).query)["token"][0]
    return run(api, "verifyEmail", mutation("verifyEmail"), {"i": {"token": token}}, None)


@case("setEmailPreferences", moves=False, what="reminders turned off")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    variables = {"i": {"reminders": False}}
    return run(api, "setEmailPreferences", mutation("setEmailPreferences"), variables, owner)


# Running a site: reports and the operators' actions ------------------------------


async def operator(api: Api) -> Person:
    person = await api.sign_up("olga")
    await operators.grant("olga", now=START)
    return person


async def reported(api: Api) -> tuple[Person, str]:
    """An operator and an open report on somebody's public model."""
    _, model_id, *_ = await published(api)
    reporter, olga = await api.sign_up(), await operator(api)
    variables = {"i": {"subjectId": model_id, "reason": "SPAM"}}
    document = mutation("reportContent", "report { id } userErrors { code message }")
    payload = await api.mutate("reportContent", document, variables, reporter.token)
    return olga, payload["report"]["id"]


async def taken_down(api: Api, owner: Person, subject: str, olga: Person) -> None:
    variables = {"i": {"subjectId": subject, "reason": "copyright"}}
    await api.mutate("takeDown", mutation("takeDown"), variables, olga.token)


async def suspended(api: Api, who: Person, olga: Person) -> None:
    variables = {"i": {"userId": who.id, "reason": "abuse"}}
    await api.mutate("suspendUser", mutation("suspendUser"), variables, olga.token)


@case("reportContent", moves=False, what="a public model reported")
async def _(api: Api) -> Any:
    _, model_id, *_ = await published(api)
    reporter = await api.sign_up()
    variables = {"i": {"subjectId": model_id, "reason": "SPAM"}}
    return run(api, "reportContent", mutation("reportContent"), variables, reporter)


@case("dismissReport", moves=False, what="a report dismissed")
async def _(api: Api) -> Any:
    olga, report_id = await reported(api)
    variables = {"i": {"reportId": report_id, "reason": "fine"}}
    return run(api, "dismissReport", mutation("dismissReport"), variables, olga)


@case("takeDown", moves=True, what="a public model")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    variables = {"i": {"subjectId": model_id, "reason": "copyright"}}
    return run(api, "takeDown", mutation("takeDown"), variables, olga)


@case("takeDown", moves=True, what="a public version, destroying its private data")
async def _(api: Api) -> Any:
    owner, _, version_id, _ = await published(api)
    olga = await operator(api)
    variables = {"i": {"subjectId": version_id, "reason": "x", "destroyPrivateData": True}}
    return run(api, "takeDown", mutation("takeDown"), variables, olga)


@case("takeDown", moves=False, what="a model of a suspended account (hidden already)")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    await suspended(api, owner, olga)
    variables = {"i": {"subjectId": model_id, "reason": "copyright"}}
    return run(api, "takeDown", mutation("takeDown"), variables, olga)


@case("publishModelVersion", moves=False, what="a draft of a taken-down model (hidden)")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    await taken_down(api, owner, model_id, olga)
    version_id = await api.create_version(owner, model_id, "v2")
    await api.upload_file(owner, version_id)
    variables = {"i": {"versionId": version_id}}
    return run(api, "publishModelVersion", mutation("publishModelVersion"), variables, owner)


@case("restore", moves=True, what="a taken-down model")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    await taken_down(api, owner, model_id, olga)
    variables = {"i": {"subjectId": model_id, "reason": "appeal upheld"}}
    return run(api, "restore", mutation("restore"), variables, olga)


@case("restore", moves=False, what="a version under a model still taken down")
async def _(api: Api) -> Any:
    owner, model_id, version_id, _ = await published(api)
    olga = await operator(api)
    await taken_down(api, owner, version_id, olga)
    await taken_down(api, owner, model_id, olga)
    variables = {"i": {"subjectId": version_id, "reason": "appeal upheld"}}
    return run(api, "restore", mutation("restore"), variables, olga)


@case("suspendUser", moves=True, what="an account with a public model")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    olga = await operator(api)
    variables = {"i": {"userId": owner.id, "reason": "abuse"}}
    return run(api, "suspendUser", mutation("suspendUser"), variables, olga)


@case("suspendUser", moves=False, what="an account whose only model is taken down")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    await taken_down(api, owner, model_id, olga)
    variables = {"i": {"userId": owner.id, "reason": "abuse"}}
    return run(api, "suspendUser", mutation("suspendUser"), variables, olga)


@case("unsuspendUser", moves=True, what="an account with a public model")
async def _(api: Api) -> Any:
    owner, *_ = await published(api)
    olga = await operator(api)
    await suspended(api, owner, olga)
    variables = {"i": {"userId": owner.id, "reason": "appeal upheld"}}
    return run(api, "unsuspendUser", mutation("unsuspendUser"), variables, olga)


@case("unsuspendUser", moves=False, what="an account whose only model is taken down")
async def _(api: Api) -> Any:
    owner, model_id, *_ = await published(api)
    olga = await operator(api)
    await taken_down(api, owner, model_id, olga)
    await suspended(api, owner, olga)
    variables = {"i": {"userId": owner.id, "reason": "appeal upheld"}}
    return run(api, "unsuspendUser", mutation("unsuspendUser"), variables, olga)


def mutations_in_the_schema() -> set[str]:
    schema = build_schema(load_settings({}, create=False))._schema
    assert schema.mutation_type is not None
    return set(schema.mutation_type.fields)


def test_every_mutation_has_its_cases() -> None:
    # every mutation of the schema is classified here (a new one fails until it is)
    assert {c.mutation for c in CASES} == mutations_in_the_schema()
    # and every one has a case that shows it does not move for what nobody else sees
    # (private work, or work on something hidden: a draft, a taken-down model)
    quiet = {c.mutation for c in CASES if not c.moves}
    assert quiet == mutations_in_the_schema()


@pytest.mark.parametrize(
    "write",
    [pytest.param(c, id=c.id, marks=[pytest.mark.env(**c.env)] if c.env else []) for c in CASES],
)
async def test_the_generation_moves_exactly_for_what_anonymous_viewers_see(
    api: Api, write: Case
) -> None:
    # given the scene
    act = await write.act(api)
    before = await public_generation.current()
    # when the write is made
    await act()
    # then the generation moved if, and only if, anonymous viewers see a difference
    moved = await public_generation.current() != before
    assert moved == write.moves, f"{write.id}: moved={moved}"


async def test_a_finished_upload_to_a_draft_moves_nothing(api: Api) -> None:
    # given a draft with a public dataset and a weights file about to arrive
    owner, _, version_id = await draft(api)
    started = await api.start_upload(owner, version_id, len(make_zip()), "PUBLIC")
    before = await public_generation.current()
    # when the bytes arrive (PUT), then nothing anonymous viewers see changed
    assert (await api.put(started["uploadUrl"], make_zip())).status_code == 200
    await api.upload_file(owner, version_id)
    assert await public_generation.current() == before


@pytest.mark.postgres_only(reason="the generation is a sequence there, taken before commit")
async def test_a_generation_read_while_a_public_change_is_in_flight_ends_with_its_commit(
    database: None,
) -> None:
    # given a public change that has taken its generation and not yet committed
    taken, commit = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with in_transaction():
            await public_generation.advance()
            taken.set()
            await commit.wait()

    before = await public_generation.current()
    making = asyncio.create_task(change())
    await asyncio.wait_for(taken.wait(), timeout=10)
    # when a reader (another connection) reads the generation meanwhile, an answer it
    # computes now lacks the change
    during = await public_generation.current()
    # then once the change commits, the generation read is another one: the answer
    # computed during the change is never reused after it
    commit.set()
    await asyncio.wait_for(making, timeout=10)
    after = await public_generation.current()
    assert after not in (before, during)
    # and with nothing in flight the generation is settled: the same read twice
    assert await public_generation.current() == after


@pytest.mark.postgres_only(reason="the generation is a sequence there, taken before commit")
async def test_public_changes_at_the_same_time_do_not_wait_for_each_other(
    database: None,
) -> None:
    # given one public change that has taken its generation and stays open
    taken, commit = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with in_transaction():
            await public_generation.advance()
            taken.set()
            await commit.wait()

    first = asyncio.create_task(change())
    await asyncio.wait_for(taken.wait(), timeout=10)
    # when another public change is made meanwhile, then it commits without waiting
    # for the first (a lock on one row would hold it until the first commits)
    async with in_transaction():
        await asyncio.wait_for(public_generation.advance(), timeout=5)
    commit.set()
    await asyncio.wait_for(first, timeout=10)
    # and a rolled-back change moves it too (harmless: a cache miss, never a stale hit)
    before = await public_generation.current()
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await public_generation.advance()
            raise RuntimeError("rolled back")
    assert await public_generation.current() != before
