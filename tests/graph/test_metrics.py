"""The operations view: ``/metrics`` counts what happened and reads the backlog from the
database, and never names a user, a dataset or a file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from graph.http.app import create_app
from graph.http.metrics import MAX_OPERATIONS, metrics_app
from jobs.tasks import expire_dataset, sweep
from storage.config.settings import Settings
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock, make_zip, raw_id, set_visibility

RETENTION = 3600
pytestmark = pytest.mark.env(
    LORASHELF_PRIVATE_RETENTION=f"{RETENTION}s", LORASHELF_REMINDERS="600s"
)


@pytest.fixture
def app(settings: Settings, clock: MutableClock, database: None) -> Starlette:
    return create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The ``api`` fixture's client, on an app this module can also run jobs for (the
    embedded runner's ``ctx``: the app's own runtime, so its registry)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def job_ctx(app: Starlette) -> dict[str, Any]:
    return {"runtime": app.state.services.runtime}


Scrape = Callable[[], Awaitable[str]]


@pytest.fixture
def scrape(app: Starlette) -> Scrape:
    """``/metrics`` of the ``api`` fixture's app, as its metrics port serves it."""

    async def scraped() -> str:
        return await scrape_app(app)

    return scraped


async def scrape_app(app: Starlette) -> str:
    transport = httpx.ASGITransport(app=metrics_app(app.state.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter not moved yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and label in sample.labels
    }


async def test_a_named_query_is_counted_and_timed_by_its_operation_name(
    api: Api, scrape: Scrape
) -> None:
    # given a signed-in client
    alice = await api.sign_up()  # (an unnamed mutation)
    before = await scrape()
    # when it runs a named query twice and an unnamed one once
    for _ in range(2):
        await api.gql("query WhoAmI { viewer { id } }", token=alice.token)
    await api.gql("{ viewer { id } }", token=alice.token)
    # then each is counted under its name, and timed
    text = await scrape()
    assert value(text, "lorashelf_graphql_requests_total", operation="WhoAmI") == 2
    unnamed = [
        value(t, "lorashelf_graphql_requests_total", operation="anonymous") for t in (before, text)
    ]
    assert unnamed[1] - unnamed[0] == 1
    assert value(text, "lorashelf_graphql_request_duration_seconds_count", operation="WhoAmI") == 2


async def test_operation_names_are_bounded_the_rest_counted_as_other(
    api: Api, scrape: Scrape
) -> None:
    # given a client that names every operation differently
    alice = await api.sign_up()
    extra = 10
    for n in range(MAX_OPERATIONS + extra):
        await api.gql(f"query Op{n} {{ viewer {{ id }} }}", token=alice.token)
    # when scraped
    text = await scrape()
    # then only the first names are labels; the others are one "other"
    names = label_values(text, "lorashelf_graphql_requests_total", "operation")
    assert len(names - {"other", "anonymous"}) == MAX_OPERATIONS
    assert value(text, "lorashelf_graphql_requests_total", operation="other") >= extra


async def test_errors_are_counted_by_their_code(api: Api, scrape: Scrape) -> None:
    # given a malformed cursor, a query that does not validate and a revoked token
    alice = await api.sign_up()
    bad = await api.raw(
        'query Listing { models(first: 1, after: "garbage") { edges { cursor } } }',
        token=alice.token,
    )
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    invalid = await api.raw("query Broken { noSuchField }", token=alice.token)
    assert "errors" in invalid
    refused = await api.http.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={"authorization": "Bearer nope"}
    )
    assert refused.status_code == 401
    # when scraped
    text = await scrape()
    # then each is counted under its code ("NONE" when it has none)
    assert value(text, "lorashelf_graphql_errors_total", code="INVALID_CURSOR") == 1
    assert value(text, "lorashelf_graphql_errors_total", code="NONE") == 1
    assert value(text, "lorashelf_graphql_errors_total", code="UNAUTHENTICATED") == 1


async def test_uploads_are_counted_without_their_sizes_and_private_bytes_never(
    api: Api, scrape: Scrape
) -> None:
    # given a private dataset and a weights file uploaded by their owner
    alice = await api.sign_up()
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    body = make_zip({"a.txt": b"x" * 5000})
    dataset_id = await api.upload(alice, version_id, body=body)
    weights = await api.upload_file(alice, version_id)
    assert weights
    # when the owner downloads the private dataset
    found = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
        {"id": dataset_id},
        alice.token,
    )
    download = await api.http.get(found["node"]["downloadUrl"])
    assert download.status_code == 200
    # then the uploads and the private download are counted, none by its size
    text = await scrape()
    assert value(text, "lorashelf_uploads_total", kind="dataset") == 1
    assert value(text, "lorashelf_uploads_total", kind="file") == 1
    assert value(text, "lorashelf_private_downloads_total", kind="dataset") == 1
    assert value(text, "lorashelf_download_bytes_total", kind="dataset") == 0
    assert "lorashelf_upload_bytes" not in text
    # when the version is published with the dataset made public, and anybody
    # downloads it
    await api.publish(alice, version_id)
    await set_visibility(api, alice, dataset_id, "PUBLIC")
    link = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
        {"id": dataset_id},
    )
    assert (await api.http.get(link["node"]["downloadUrl"])).content == body
    # then those bytes (anybody's to download) are counted
    text = await scrape()
    assert value(text, "lorashelf_download_bytes_total", kind="dataset") == len(body)


async def test_backlog_deletions_and_lateness_after_an_expiry(
    api: Api, clock: MutableClock, job_ctx: dict[str, Any], scrape: Scrape
) -> None:
    # given a published private dataset
    alice = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(alice)
    text = await scrape()
    assert value(text, "lorashelf_datasets", status="AVAILABLE") == 1
    assert value(text, "lorashelf_retention_overdue_datasets") == 0
    # when its window ends and nothing has deleted it yet (no runner here)
    late = 42
    clock.advance(RETENTION + late)
    # then the backlog shows it, and the reminder that was never sent
    text = await scrape()
    assert value(text, "lorashelf_retention_overdue_datasets") == 1
    assert value(text, "lorashelf_retention_due_reminders") == 1
    # when the expiry job runs in this process
    assert await expire_dataset(job_ctx, await raw_id(dataset_id))
    # then the deletion is counted with how late it came, and the backlog is empty
    text = await scrape()
    assert value(text, "lorashelf_retention_overdue_datasets") == 0
    assert value(text, "lorashelf_datasets", status="DELETED") == 1
    assert value(text, "lorashelf_dataset_deletions_total", reason="EXPIRED") == 1
    assert value(text, "lorashelf_deletion_lateness_seconds_count") == 1
    assert value(text, "lorashelf_deletion_lateness_seconds_sum") == pytest.approx(late)
    assert value(text, "lorashelf_deletion_lateness_seconds_bucket", le="15.0") == 0
    assert value(text, "lorashelf_deletion_lateness_seconds_bucket", le="60.0") == 1


async def test_reminders_and_sweeps_are_counted(
    api: Api, clock: MutableClock, job_ctx: dict[str, Any], scrape: Scrape
) -> None:
    # given a published private dataset whose reminder is due
    alice = await api.sign_up()
    await api.model_with_dataset(alice)
    clock.advance(RETENTION - 600 + 1)
    # when the sweep runs in this process
    done = await sweep(job_ctx)
    assert done.get("reminded") == 1
    # then the reminder (on time) and the sweep are counted; none is due any more
    text = await scrape()
    assert value(text, "lorashelf_reminders_sent_total", late="false") == 1
    assert value(text, "lorashelf_reminders_sent_total", late="true") == 0
    assert value(text, "lorashelf_sweep_duration_seconds_count") == 1
    assert value(text, "lorashelf_retention_due_reminders") == 0


async def test_metrics_name_no_user_dataset_or_file(
    api: Api, clock: MutableClock, job_ctx: dict[str, Any], scrape: Scrape
) -> None:
    # given (the attack) a user, a model, a private dataset and a file with distinctive
    # names, used in every way the metrics count: operations named after them too
    username = "zz_mallory_secret_user"
    alice = await api.sign_up(username)
    model_id = await api.create_model(alice, name="ZZ Secret Model Qx")
    version_id = await api.create_version(alice, model_id, name="zz-secret-version")
    payload = await api.start_upload(
        alice, version_id, len(make_zip()), filename="zz_secret_dataset.zip"
    )
    assert (await api.put(payload["uploadUrl"], make_zip())).status_code == 200
    dataset_id = payload["dataset"]["id"]
    file_id = await api.upload_file(alice, version_id, filename="zz_secret_weights.safetensors")
    await api.publish(alice, version_id)
    await api.raw(
        "query($id: ID!) { node(id: $id) { id } }", {"id": "zz_secret_probe"}, alice.token
    )
    await api.raw('query zz_secret_dataset_probe { node(id: "x") { id } }', token=alice.token)
    clock.advance(RETENTION + 1)
    await expire_dataset(job_ctx, await raw_id(dataset_id))
    # when /metrics is scraped, as anybody could if it were exposed
    text = await scrape()
    # then no name, id or filename from that user appears in it
    secrets = [
        username,
        "ZZ Secret Model Qx",
        "zz-secret-version",
        "zz_secret_dataset.zip",
        "zz_secret_weights",
        dataset_id,
        file_id,
        model_id,
        version_id,
        alice.id,
        alice.token,
    ]
    for secret in secrets:
        assert secret not in text, secret
    # (an operation name is the client's own word, never a row's: it may be shown)
    assert value(text, "lorashelf_dataset_deletions_total", reason="EXPIRED") == 1


async def test_readyz_checks_the_object_store(api: Api) -> None:
    # when readiness is asked
    response = await api.http.get("/readyz")
    # then the object store is among the checks (no Redis configured: not checked), and
    # nothing but words: no number that moves with anybody's uploads
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "disk": "ok", "objectStore": "ok"},
    }


async def test_each_app_has_its_own_registry(
    settings: Settings, clock: MutableClock, api: Api, scrape: Scrape
) -> None:
    # given a second app in the same process
    other = create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
    alice = await api.sign_up()
    # when the first one answers a named query
    await api.gql("query OnlyHere { viewer { id } }", token=alice.token)
    # then only its registry counted it
    elsewhere = await scrape_app(other)
    assert value(await scrape(), "lorashelf_graphql_requests_total", operation="OnlyHere") == 1
    assert value(elsewhere, "lorashelf_graphql_requests_total", operation="OnlyHere") == 0
