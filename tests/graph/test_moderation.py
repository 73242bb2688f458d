"""Reports, takedowns, suspensions and the audit trail through the API (the app in
process, a real database): what each viewer sees before and after, and the answers that
must not tell anything apart. The same behaviour through a real `lorashelf serve`, with
the command line and downloads in flight, is in test_moderation_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storage import operators, takedowns
from tests.conftest import START, Api, Person, missing_id, sql_behind_the_back
from tests.graph.test_side_channels import sql_statements

REPORT = (
    "mutation($i: ReportContentInput!) { reportContent(input: $i) "
    "{ report { id reason details status } userErrors { field message code } } }"
)
TAKE_DOWN = (
    "mutation($i: TakeDownInput!) { takeDown(input: $i) "
    "{ subject { id kind name ownerUsername takenDown { reason at } } "
    "userErrors { field message code } } }"
)
RESTORE = (
    "mutation($i: RestoreInput!) { restore(input: $i) "
    "{ subject { id takenDown { reason } } userErrors { field message code } } }"
)
SUSPEND = (
    "mutation($i: SuspendUserInput!) { suspendUser(input: $i) "
    "{ subject { id suspended } userErrors { field message code } } }"
)
UNSUSPEND = (
    "mutation($i: UnsuspendUserInput!) { unsuspendUser(input: $i) "
    "{ subject { id suspended } userErrors { field message code } } }"
)
MODEL = (
    "query($id: ID!) { model(id: $id) { id name takenDown { reason at } "
    "versions { id takenDown { reason } trainingDataset { id } files { id } } } }"
)


async def given_operator(api: Api, name: str = "olga") -> Person:
    person = await api.sign_up(name)
    await operators.grant(name, now=START)
    return person


async def report(api: Api, who: Person, subject: str, reason: str = "COPYRIGHT") -> Any:
    data = await api.gql(REPORT, {"i": {"subjectId": subject, "reason": reason}}, who.token)
    return data["reportContent"]


async def test_reporting_what_you_cannot_see_answers_as_a_missing_id(api: Api) -> None:
    # given Alice's public model with a private dataset, and a draft of hers
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    model_id, version_id, private_id = await api.model_with_dataset(alice, "PRIVATE")
    draft_model = await api.create_model(alice, "Draft")
    draft_version = await api.create_version(alice, draft_model)
    # when Bob reports each of them, a missing id, a malformed one and a notification id
    hidden = [private_id, draft_model, draft_version]
    missing = [
        missing_id("TrainingDataset"),
        missing_id("Model"),
        "nonsense",
        missing_id("Notification"),
    ]
    answers = [await report(api, bob, subject) for subject in hidden + missing]
    # then every one is the same answer, word for word
    assert answers[0]["userErrors"][0]["code"] == "NOT_FOUND"
    assert all(answer == answers[0] for answer in answers)
    # and what he can see is reported
    done = await report(api, bob, model_id)
    assert done["userErrors"] == [] and done["report"]["status"] == "OPEN"
    # reporting it again while open gives the same report back
    again = await report(api, bob, model_id, reason="SPAM")
    assert again["report"]["id"] == done["report"]["id"]
    # and nobody reports their own content
    own = await report(api, alice, version_id)
    assert own["userErrors"][0]["code"] == "OWN_CONTENT"


@pytest.mark.env(LORASHELF_REPORT_RATE_PER_USER="3/hour")
async def test_reports_are_rate_limited_per_reporter(api: Api) -> None:
    # given three public models of Alice's
    alice, bob, carol = [await api.sign_up(n) for n in ("alice", "bob", "carol")]
    models = [(await api.model_with_dataset(alice, "PUBLIC"))[0] for _ in range(4)]
    # when Bob reports four times (a missing id counts like any other)
    answers = [await report(api, bob, m) for m in (*models[:2], missing_id("Model"), models[3])]
    # then the fourth is refused, and Carol still may report
    assert [a["userErrors"][0]["code"] if a["userErrors"] else "OK" for a in answers] == [
        "OK",
        "OK",
        "NOT_FOUND",
        "RATE_LIMITED",
    ]
    assert (await report(api, carol, models[3]))["userErrors"] == []


async def test_operator_mutations_are_forbidden_to_others_whatever_they_name(api: Api) -> None:
    # given Alice's public model, her private dataset, and Bob, who is not an operator
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    model_id, version_id, private_id = await api.model_with_dataset(alice, "PRIVATE")
    subjects = [model_id, version_id, private_id, missing_id("Model"), "nonsense"]
    for token in (bob.token, alice.token, None):
        answers = []
        for subject in subjects:
            for document, name, extra in (
                (TAKE_DOWN, "takeDown", {"destroyPrivateData": True}),
                (RESTORE, "restore", {}),
            ):
                data = await api.gql(
                    document, {"i": {"subjectId": subject, "reason": "x", **extra}}, token
                )
                answers.append(data[name])
        for document, name in ((SUSPEND, "suspendUser"), (UNSUSPEND, "unsuspendUser")):
            for user in (alice.id, missing_id("User"), "nonsense"):
                data = await api.gql(document, {"i": {"userId": user, "reason": "x"}}, token)
                answers.append(data[name])
        # then every answer is the same FORBIDDEN, and nothing changed
        assert {str(a) for a in answers} == {
            str(
                {
                    "subject": None,
                    "userErrors": [
                        {
                            "field": None,
                            "message": "Only operators of this site may do this.",
                            "code": "FORBIDDEN",
                        }
                    ],
                }
            )
        }
    for query in (
        "{ reports { edges { node { id } } } }",
        "{ auditLog { edges { node { id } } } }",
    ):
        body = await api.raw(query, token=bob.token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    seen = await api.gql(MODEL, {"id": model_id})
    assert seen["model"]["id"] == model_id


async def test_a_takedown_hides_from_everybody_but_the_owner_and_is_restored(api: Api) -> None:
    # given Alice's public model (public dataset) reported by Bob, and Olga the operator
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    olga = await given_operator(api)
    model_id, version_id, dataset_id = await api.model_with_dataset(alice, "PUBLIC")
    reported = (await report(api, bob, model_id))["report"]
    # when Olga takes the model down
    taken = (
        await api.gql(
            TAKE_DOWN,
            {
                "i": {
                    "subjectId": model_id,
                    "reason": "Infringes a trademark.",
                    "details": "ticket 7",
                }
            },
            olga.token,
        )
    )["takeDown"]
    assert taken["userErrors"] == []
    assert taken["subject"]["name"] == "Cats" and taken["subject"]["ownerUsername"] == "alice"
    # then nobody but Alice sees it, its version or its dataset, by any path
    for token in (None, bob.token, olga.token):
        assert (await api.gql(MODEL, {"id": model_id}, token))["model"] is None
        for node in (model_id, version_id, dataset_id):
            found = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": node}, token)
            assert found["node"] is None
        listed = await api.gql("{ models { edges { node { id } } } }", token=token)
        assert listed["models"]["edges"] == []
    mine = (await api.gql(MODEL, {"id": model_id}, alice.token))["model"]
    assert mine["takenDown"]["reason"] == "Infringes a trademark."
    # and Alice was told, Bob's report is closed as acted on
    notes = await api.gql(
        "{ viewer { notifications { edges { node { kind message } } } } }", token=alice.token
    )
    kinds = [e["node"]["kind"] for e in notes["viewer"]["notifications"]["edges"]]
    assert kinds == ["CONTENT_TAKEN_DOWN"]
    mine_reports = await api.gql(
        "{ viewer { reports { edges { node { id status resolvedAt subject { id } } } } } }",
        token=bob.token,
    )
    assert [e["node"]["status"] for e in mine_reports["viewer"]["reports"]["edges"]] == ["ACTIONED"]
    assert mine_reports["viewer"]["reports"]["edges"][0]["node"]["subject"] is None
    assert mine_reports["viewer"]["reports"]["edges"][0]["node"]["id"] == reported["id"]
    # when Olga restores it
    restored = (
        await api.gql(
            RESTORE, {"i": {"subjectId": model_id, "reason": "Licence shown."}}, olga.token
        )
    )["restore"]
    assert restored["userErrors"] == [] and restored["subject"]["takenDown"] is None
    # then everybody sees it again
    back = (await api.gql(MODEL, {"id": model_id}))["model"]
    assert back["id"] == model_id and back["versions"][0]["trainingDataset"] == {"id": dataset_id}


async def test_taking_down_a_version_hides_it_and_what_is_under_it(api: Api) -> None:
    alice = await api.sign_up("alice")
    olga = await given_operator(api)
    model_id, v1, d1 = await api.model_with_dataset(alice, "PUBLIC")
    v2 = await api.create_version(alice, model_id, "v2")
    await api.publish(alice, v2)
    done = await api.gql(
        TAKE_DOWN, {"i": {"subjectId": v1, "reason": "Leaked weights."}}, olga.token
    )
    assert done["takeDown"]["userErrors"] == []
    # the model stays, without the version, its files or its dataset
    anonymous = (await api.gql(MODEL, {"id": model_id}))["model"]
    assert [v["id"] for v in anonymous["versions"]] == [v2]
    assert (await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": d1}))["node"] is None
    owner = (await api.gql(MODEL, {"id": model_id}, alice.token))["model"]
    assert {v["id"]: v["takenDown"] for v in owner["versions"]}[v1] == {"reason": "Leaked weights."}
    # a second takedown, a file id, a user id, a private dataset: each its own clear answer
    again = await api.gql(TAKE_DOWN, {"i": {"subjectId": v1, "reason": "x"}}, olga.token)
    assert again["takeDown"]["userErrors"][0]["code"] == "ALREADY_TAKEN_DOWN"
    file_id = (
        owner["versions"][1]["files"][0]["id"]
        if owner["versions"][1]["id"] == v1
        else owner["versions"][0]["files"][0]["id"]
    )
    for subject, code in ((file_id, "INVALID_SUBJECT"), (alice.id, "INVALID_SUBJECT")):
        answer = await api.gql(TAKE_DOWN, {"i": {"subjectId": subject, "reason": "x"}}, olga.token)
        assert answer["takeDown"]["userErrors"][0]["code"] == code


async def test_destroying_private_data_deletes_it_unseen_and_answers_alike(api: Api) -> None:
    # given two published versions of Alice's, one with a private dataset, one without
    alice = await api.sign_up("alice")
    olga = await given_operator(api)
    model_id, with_private, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    without = await api.create_version(alice, model_id, "v2")
    await api.publish(alice, without)
    # when Olga takes both down, destroying private data
    answers = []
    for version in (with_private, without):
        data = await api.gql(
            TAKE_DOWN,
            {"i": {"subjectId": version, "reason": "Court order.", "destroyPrivateData": True}},
            olga.token,
        )
        answers.append(data["takeDown"])
    # then the answers differ only in which version they name
    for answer in answers:
        answer["subject"].pop("id")
        answer["subject"].pop("name")
        answer["subject"]["takenDown"].pop("at")
    assert answers[0] == answers[1]
    # and Alice's dataset is a tombstone deleted for the takedown, with its notice
    query = "query($id: ID!) { node(id: $id) { ... on TrainingDataset { status deletionReason downloadUrl } } }"
    for _ in range(100):
        dataset = (await api.gql(query, {"id": dataset_id}, alice.token))["node"]
        if dataset["status"] == "DELETED":
            break
    assert dataset == {"status": "DELETED", "deletionReason": "TAKEN_DOWN", "downloadUrl": None}


async def test_a_suspended_account_cannot_sign_in_and_its_content_is_hidden(api: Api) -> None:
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    olga = await given_operator(api)
    model_id, _, _ = await api.model_with_dataset(alice, "PUBLIC")
    done = await api.gql(SUSPEND, {"i": {"userId": alice.id, "reason": "Spam."}}, olga.token)
    assert done["suspendUser"] == {"subject": {"id": alice.id, "suspended": True}, "userErrors": []}
    # her sign-in ended, and signing in again is refused (to the right password only)
    response = await api.http.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"authorization": f"Bearer {alice.token}"},
    )
    assert response.status_code == 401
    login = "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code } } }"
    right = await api.gql(login, {"i": {"username": "alice", "password": "correct horse battery"}})
    wrong = await api.gql(login, {"i": {"username": "alice", "password": "wrong horse battery"}})
    assert right["logIn"]["userErrors"] == [{"code": "ACCOUNT_SUSPENDED"}]
    assert wrong["logIn"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    # her public content is hidden
    for token in (None, bob.token, olga.token):
        assert (await api.gql(MODEL, {"id": model_id}, token))["model"] is None
    # she is reinstated
    back = await api.gql(UNSUSPEND, {"i": {"userId": alice.id, "reason": "Appeal."}}, olga.token)
    assert back["unsuspendUser"]["subject"]["suspended"] is False
    assert (await api.gql(MODEL, {"id": model_id}))["model"]["id"] == model_id
    assert (
        await api.gql(login, {"i": {"username": "alice", "password": "correct horse battery"}})
    )["logIn"]["userErrors"] == []


async def test_the_audit_trail_is_append_only(api: Api, settings: Any) -> None:
    # given every kind of operator action, each recorded
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    olga = await given_operator(api)
    model_id, version_id, _ = await api.model_with_dataset(alice, "PUBLIC")
    rows = lambda: sql_behind_the_back(settings, "SELECT * FROM audit_entries ORDER BY id")  # noqa: E731
    reported = (await report(api, bob, version_id))["report"]["id"]
    steps = [
        (TAKE_DOWN, {"subjectId": model_id, "reason": "a"}),
        (RESTORE, {"subjectId": model_id, "reason": "b"}),
        (SUSPEND, {"userId": alice.id, "reason": "c"}),
        (UNSUSPEND, {"userId": alice.id, "reason": "d"}),
    ]
    seen = rows()
    for document, variables in steps:
        await api.mutate(
            document.split("(input")[0].split()[-1], document, {"i": variables}, olga.token
        )
        now = rows()
        # then each action appends exactly one row and leaves every earlier one as it was
        assert now[: len(seen)] == seen and len(now) == len(seen) + 1
        seen = now
    await api.mutate(
        "dismissReport",
        "mutation($i: DismissReportInput!) { dismissReport(input: $i) { report { status } userErrors { code } } }",
        {"i": {"reportId": reported, "reason": "duplicate"}},
        olga.token,
    )
    assert rows()[: len(seen)] == seen
    # and the database itself refuses to change or remove a row
    for statement in ("UPDATE audit_entries SET reason = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(Exception, match="append-only"):
            sql_behind_the_back(settings, statement)
    assert len(rows()) == len(seen) + 1  # the dismissal
    # operators see every entry with who acted; Alice those about her objects, without who
    log = await api.gql(
        "{ auditLog(first: 50) { edges { node { action actor reason subject { kind } } } } }",
        token=olga.token,
    )
    actions = [e["node"]["action"] for e in log["auditLog"]["edges"]]
    assert actions == [
        "DISMISS_REPORT",
        "UNSUSPEND_USER",
        "SUSPEND_USER",
        "RESTORE",
        "TAKE_DOWN",
        "GRANT_OPERATOR",
    ]
    assert {e["node"]["actor"] for e in log["auditLog"]["edges"][:-1]} == {"olga"}
    login = "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code } } }"
    signed_in = await api.mutate(
        "logIn", login, {"i": {"username": "alice", "password": "correct horse battery"}}
    )  # her sign-in ended with the suspension
    hers = await api.gql(
        "{ viewer { auditLog { edges { node { action actor details subject { kind name } } } } } }",
        token=signed_in["token"],
    )
    assert [e["node"]["action"] for e in hers["viewer"]["auditLog"]["edges"]] == [
        "DISMISS_REPORT",
        "UNSUSPEND_USER",
        "SUSPEND_USER",
        "RESTORE",
        "TAKE_DOWN",
    ]
    assert {e["node"]["actor"] for e in hers["viewer"]["auditLog"]["edges"]} == {None}


async def finished_after_answers() -> None:
    """Wait for the work takedowns leave to a task of their own after the answer."""
    while takedowns._finishing:
        await asyncio.gather(*takedowns._finishing)


OPERATOR_BY_ID = {
    "node": "query($id: ID!) { node(id: $id) { id } }",
    "reportContent": "mutation($id: ID!) { reportContent(input: {subjectId: $id, "
    "reason: PRIVACY}) { report { id } userErrors { code } } }",
    "takeDown": 'mutation($id: ID!) { takeDown(input: {subjectId: $id, reason: "x", '
    "destroyPrivateData: true}) { subject { id } userErrors { code } } }",
    "restore": 'mutation($id: ID!) { restore(input: {subjectId: $id, reason: "x"}) '
    "{ subject { id } userErrors { code } } }",
    "deleteDataset": "mutation($id: ID!) { deleteDataset(input: {datasetId: $id}) "
    "{ dataset { id } userErrors { code } } }",
}


@pytest.mark.parametrize("request_name", list(OPERATOR_BY_ID))
async def test_an_operator_asking_for_private_data_runs_the_sql_of_a_missing_id(
    api: Api, request_name: str
) -> None:
    # given Alice's private dataset, and Olga, an operator
    alice = await api.sign_up("alice")
    olga = await given_operator(api)
    _, _, private = await api.model_with_dataset(alice, "PRIVATE")
    document = OPERATOR_BY_ID[request_name]
    answers, statements = {}, {}
    for label, target in (("private", private), ("missing", missing_id("TrainingDataset"))):
        await api.gql(document, {"id": target}, olga.token)  # warm every cache first
        # when Olga sends the request about each id
        with sql_statements() as seen:
            answers[label] = await api.gql(document, {"id": target}, olga.token)
        statements[label] = seen
    # then the answers are the same, and so is the SQL (statement by statement)
    assert answers["private"] == answers["missing"], answers
    assert statements["private"], "no SQL seen: is tortoise still logging statements?"
    assert statements["private"] == statements["missing"]


@pytest.mark.parametrize("subject", ["Model", "ModelVersion"])
async def test_destroying_private_data_takes_the_work_of_destroying_none(
    api: Api, subject: str
) -> None:
    # given versions of Alice's with a private dataset and without any dataset (two of
    # each, the first of each to warm the caches), and Olga, an operator
    alice = await api.sign_up("alice")
    olga = await given_operator(api)
    targets: dict[str, list[str]] = {"private": [], "none": []}
    for _ in range(2):
        model_id, version_id, _ = await api.model_with_dataset(alice, "PRIVATE")
        targets["private"].append(model_id if subject == "Model" else version_id)
        model_id = await api.create_model(alice)
        version_id = await api.create_version(alice, model_id)
        await api.publish(alice, version_id)
        targets["none"].append(model_id if subject == "Model" else version_id)
    document = (
        "mutation($i: TakeDownInput!) { takeDown(input: $i) { subject { kind "
        "takenDown { reason } } userErrors { code } } }"
    )
    answers, statements = {}, {}
    for round_ in range(2):
        for label, ids in targets.items():
            variables = {"i": {"subjectId": ids[round_], "reason": "Court order."}}
            variables["i"]["destroyPrivateData"] = True  # type: ignore[index]
            # when Olga takes each down, destroying private data
            with sql_statements(skip_tasks=("lorashelf-takedown-after",)) as seen:
                answers[label] = await api.gql(document, variables, olga.token)
            statements[label] = seen
            await finished_after_answers()
    # then the answers are the same, and so is the SQL run before them
    assert answers["private"] == answers["none"], answers
    assert answers["private"]["takeDown"]["userErrors"] == []
    assert statements["private"] == statements["none"]
    # and the private datasets were deleted all the same (after the answers)
    datasets = await api.gql(
        "{ viewer { trainingDatasets { edges { node { status deletionReason } } } } }",
        token=alice.token,
    )
    assert [e["node"] for e in datasets["viewer"]["trainingDatasets"]["edges"]] == [
        {"status": "DELETED", "deletionReason": "TAKEN_DOWN"}
    ] * 2


@pytest.mark.parametrize("kind", ["Model", "ModelVersion"])
@pytest.mark.parametrize("request_name", ["node", "reportContent", "takeDown", "restore"])
async def test_an_operator_asking_for_a_draft_runs_the_sql_of_a_missing_id(
    api: Api, kind: str, request_name: str
) -> None:
    # given Alice's draft model with a draft version, and Olga, an operator
    alice = await api.sign_up("alice")
    olga = await given_operator(api)
    model_id = await api.create_model(alice, "Draft")
    version_id = await api.create_version(alice, model_id)
    draft, missing = (model_id, missing_id("Model"))
    if kind == "ModelVersion":
        draft, missing = version_id, missing_id("ModelVersion")
    document = OPERATOR_BY_ID[request_name]
    answers, statements = {}, {}
    for label, target in (("draft", draft), ("missing", missing)):
        await api.gql(document, {"id": target}, olga.token)  # warm every cache first
        with sql_statements() as seen:
            answers[label] = await api.gql(document, {"id": target}, olga.token)
        statements[label] = seen
    # then she is answered as for a missing id, after the same SQL
    assert answers["draft"] == answers["missing"], answers
    assert statements["draft"] == statements["missing"]
