"""The operations view of real processes: ``lorashelf serve`` logging JSON lines with
request ids, and ``lorashelf worker --metrics-port`` scraped over HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import (
    Owner,
    free_port,
    redis_server,
    serve,
    wait_for,
    wait_for_deletion,
    worker,
    zip_bytes,
)


def json_lines(log: Path) -> list[dict[str, object]]:
    """Every line of a process's output as JSON; fails on any line that is not."""
    records = []
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_serve_logs_only_json_lines_with_the_request_id(tmp_path: Path) -> None:
    # given serve configured for JSON logs
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_LOG_FORMAT": "json"}
    with serve(env, tmp_path) as server:
        # when a signed-in client makes a request (an anonymous answer may come from the
        # shared cache, without an id of its own), and one is refused
        owner = Owner.sign_up(server.url)
        answer = httpx.post(
            f"{server.url}/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"authorization": f"Bearer {owner.token}"},
        )
        request_id = answer.headers["x-request-id"]
        httpx.get(f"{server.url}/no-such-page")
        wait_for(
            lambda: request_id in server.log.read_text(),
            timeout=5,
            what="the request's access log line",
        )
    # then every line serve wrote (start-up, banner, access log, shutdown) is one JSON object
    records = json_lines(server.log)
    assert len(records) >= 4
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    # and the request's lines carry its id: the access log line among them
    own = [r for r in records if r.get("request_id") == request_id]
    assert any(
        r["logger"] == "uvicorn.access" and "POST /graphql" in str(r["message"]) for r in own
    )
    assert any("lorashelf" in str(r["message"]) for r in records if r["logger"] == "lorashelf")


def test_worker_serves_its_metrics_on_the_metrics_port(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        # given serve and a worker with a metrics port each, a private window of a few
        # seconds
        port, serve_port = free_port(), free_port()
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_REDIS_URL": redis.url,
            "LORASHELF_PRIVATE_RETENTION": "3s",
            "LORASHELF_LOG_FORMAT": "json",
        }
        with (
            serve(env, tmp_path, args=["--metrics-port", str(serve_port)]) as server,
            worker(env, tmp_path, args=["--metrics-port", str(port)]) as running,
        ):
            owner = Owner.sign_up(server.url)
            published = owner.publish_private_dataset()
            # when the worker deletes the dataset at the end of its window
            wait_for_deletion(owner, published.dataset_id, timeout=20)
            # then its metrics, on loopback, count the deletion and its sweeps
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            assert samples[("lorashelf_dataset_deletions_total", (("reason", "EXPIRED"),))] == 1
            assert samples[("lorashelf_deletion_lateness_seconds_count", ())] == 1
            assert samples[("lorashelf_sweep_duration_seconds_count", ())] >= 1
            # and serve's /metrics reads the queue depth from Redis and the backlog
            served = httpx.get(f"http://127.0.0.1:{serve_port}/metrics", timeout=5).text
            assert "lorashelf_queue_depth " in served
            assert "lorashelf_retention_overdue_datasets 0.0" in served
            ready = httpx.get(f"{server.url}/readyz", timeout=5).json()
            assert ready["checks"]["redis"] == "ok"
        # and the worker logged JSON lines only
        json_lines(running.log)


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_are_not_on_the_api_port_and_show_no_private_upload_size(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    # given serve started as a fresh clone's README says, and once with a metrics port
    with serve(env, tmp_path) as plain:
        # when an anonymous poller asks the API's port for /metrics
        anonymous = httpx.get(f"{plain.url}/metrics", timeout=5)
        banner = plain.log.read_text()
    # then there is none, and the banner said where metrics are (nowhere, by default)
    assert anonymous.status_code == 404
    assert "metrics:       off (serve --metrics-port P serves them on 127.0.0.1:P)" in banner
    port = free_port()
    with serve(env, tmp_path, args=["--metrics-port", str(port)]) as server:
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert f"metrics:       {metrics} (not on the API's port)" in server.log.read_text()
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 404
        # given what the operator's poller and a stranger's /readyz see before
        before = samples_of(httpx.get(metrics, timeout=5).text)
        ready_before = httpx.get(f"{server.url}/readyz", timeout=5).content
        # when somebody uploads a private dataset of a distinctive size, and a weights
        # file whose header holds training data, and downloads the dataset
        owner = Owner.sign_up(server.url)
        body = zip_bytes({"images/cat.txt": os.urandom(123_457)})
        published = owner.publish_private_dataset(body=body)
        assert httpx.get(published.download_url, timeout=10).content == body
        after = samples_of(httpx.get(metrics, timeout=5).text)
        ready_after = httpx.get(f"{server.url}/readyz", timeout=5).content
    # then no sample moved by the dataset's size (nor is any such counter there)
    moved = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith("lorashelf_")
        and not key[0].endswith("_created")  # when a series was made: a timestamp
        and after[key] != before.get(key, 0.0)
    }
    assert all(abs(delta) < 1000 for delta in moved.values()), moved
    # and /readyz said the same words before and after: nothing to measure
    assert (
        ready_before
        == ready_after
        == b'{"status":"ok","checks":{"database":"ok","disk":"ok","objectStore":"ok"}}'
    )
