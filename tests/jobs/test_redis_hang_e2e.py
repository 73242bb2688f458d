"""A hung Redis (redis-server SIGSTOPped: it keeps its port, accepts connections and
answers nothing), with real `lorashelf serve` / `lorashelf worker` processes: a hang
is noticed as a lost Redis is (timeouts and pings, not only closed connections), the
fallbacks take over while it lasts, and everything goes back to Redis after it.

The bounds are the named constants below, each with why it is what it is.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from tests.jobs.test_faults import (
    ARQ_LATE,
    ARQ_RESUME,
    OUTAGE_LATE,
    log_text,
    site,
    worker_check,
)
from tests.lifecycle import (
    assert_deleted_once,
    deletions_late,
    draft,
    lateness,
    publish,
    summary,
)
from tests.live import DATASET_CHANGED, NOTIFICATION_ADDED, over_network
from tests.processes import (
    Owner,
    RedisServer,
    now_utc,
    parse_time,
    serve,
    wait_for,
    wait_for_deletion,
    worker,
)

# The worker's ARQ commands give up after 5 s (jobs/worker.py REDIS_TIMEOUT); its
# embedded runner then starts. Windows end after that, plus margin for a slow start.
NOTICED = 5.0 + 3.0
# A live subscriber on another serve hears of a notice written during a hang: the
# listener's pings find the hang within 3 s (jobs/adapters/bus.py HEALTH_TIMEOUT), and
# then every subscriber re-reads every 2 s (AWAY_POLL); plus margin.
HEARD_DURING_HANG = 2.0 + 2.0
# After SIGCONT: the listener tries again with back-off (at most 10 s, RECONNECT_MAX),
# each try up to 2 s; plus margin.
RELISTENED = 10.0 + 2.0 + 3.0


def test_worker_deletes_on_time_while_redis_hangs_then_returns_to_arq(
    tmp_path: Path, redis: RedisServer
) -> None:
    retention = 14
    data_dir = tmp_path / "var"
    # serve never covers here (grace 60 s): whatever is deleted on time, the worker did.
    env = site(data_dir, LORASHELF_REDIS_URL=redis.url, LORASHELF_PRIVATE_RETENTION=f"{retention}s")
    with serve(env, cwd=tmp_path) as server, worker(env, cwd=tmp_path) as running:
        # given three private datasets published now, and one draft kept for later
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        drafts = [draft(owner, model) for _ in range(4)]
        published = [publish(owner, d) for d in drafts[:3]]
        later = drafts[3]

        # when Redis hangs before any window ends
        redis.pause()
        hung = now_utc()
        first_due = min(p.expires_at for p in published)
        assert (first_due - hung).total_seconds() > NOTICED, "setup too slow for the hang"

        # then each dataset is deleted on time by the worker, Redis still hung
        late = deletions_late(owner, published, within=OUTAGE_LATE)
        print(summary("deletions while Redis hangs (late by)", late))
        assert min(late) >= 0 and max(late) < OUTAGE_LATE, late
        assert running.proc.poll() is None, "the worker died during the hang"
        assert "Redis lost" in running.output()
        assert "expired and deleted" not in log_text(server.log), "serve deleted, not the worker"

        # when Redis resumes
        redis.resume()
        back = time.monotonic()

        # then the worker goes back to ARQ: `--check` answers 0 again
        wait_for(
            lambda: worker_check(env, tmp_path) == 0,
            timeout=ARQ_RESUME,
            interval=0.5,
            what="`lorashelf worker --check` to answer 0 after Redis resumed",
        )
        print(f"[faults] worker back on ARQ {time.monotonic() - back:.1f}s after SIGCONT")
        assert "Redis is back" in running.output()
        arq_jobs_before = running.output().count("expire_dataset(")

        # and a dataset published now is deleted on time through a deferred ARQ job
        after = publish(owner, later)
        tombstone = wait_for_deletion(owner, after.dataset_id, timeout=retention + ARQ_LATE + 2)
        assert 0 <= lateness(tombstone, after.expires_at) < ARQ_LATE
        assert running.output().count("expire_dataset(") > arq_jobs_before, "not through ARQ"
        time.sleep(0.5)
        assert running.proc.poll() is None
        assert_deleted_once(owner, [*published, after])


def test_live_subscribers_hear_what_is_written_while_redis_hangs_and_after(
    tmp_path: Path, redis: RedisServer
) -> None:
    retention = 14
    env = site(
        tmp_path / "var", LORASHELF_REDIS_URL=redis.url, LORASHELF_PRIVATE_RETENTION=f"{retention}s"
    )
    with (
        serve(env, cwd=tmp_path) as writer,
        serve(env, cwd=tmp_path) as reader,
        worker(env, cwd=tmp_path),
    ):
        # given an owner (using one server) with three private datasets, and a draft's
        owner = Owner.sign_up(writer.url)
        model = owner.create_model()
        kept = draft(owner, model)
        published = [publish(owner, draft(owner, model)) for _ in range(3)]
        # and subscribed, on the other server, to their notifications and the kept one
        live, sock = over_network(reader.url)
        try:
            live.init({"Authorization": f"Bearer {owner.token}"})
            live.subscribe("notes", NOTIFICATION_ADDED)
            live.subscribe("kept", DATASET_CHANGED, {"id": kept.dataset_id})
            live.data("kept", "datasetChanged")

            # when Redis hangs before the three windows end (the worker deletes them
            # through its fallback, and cannot publish that it did)
            redis.pause()
            assert (min(p.expires_at for p in published) - now_utc()).total_seconds() > NOTICED

            # then each deletion notice reaches the subscriber during the hang, within
            # seconds of being written: the listener noticed the hang, and the
            # subscribers re-read from the database
            heard = {}
            for _ in published:
                wait = max(0.0, (max(p.expires_at for p in published) - now_utc()).total_seconds())
                arrived, notice = live.data("notes", "notificationAdded", timeout=wait + 8)
                assert notice["kind"] == "DATASET_DELETED", notice
                delay = (arrived - parse_time(notice["createdAt"])).total_seconds()
                heard[notice["dataset"]["id"]] = delay
            print(summary("notices heard while Redis hangs (after written)", list(heard.values())))
            assert set(heard) == {p.dataset_id for p in published}
            assert max(heard.values()) < HEARD_DURING_HANG, heard
            assert "lost Redis" in log_text(reader.log)

            # when Redis resumes and the listener listens again
            redis.resume()
            resumed = time.monotonic()
            wait_for(
                lambda: log_text(reader.log).count("live updates: listening on Redis") >= 2,
                timeout=RELISTENED,
                interval=0.2,
                what="the reader's listener to subscribe again after SIGCONT",
            )
            print(f"[faults] listener back {time.monotonic() - resumed:.1f}s after SIGCONT")

            # then a change made through the other server arrives through Redis at once
            payload = owner.mutate(
                "deleteDataset",
                "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
                "{ userErrors { code message } } }",
                {"i": {"datasetId": kept.dataset_id}},
            )
            assert payload["userErrors"] == []
            deleted = now_utc()
            arrived, gone = live.data("kept", "datasetChanged", timeout=5)
            assert (gone["status"], gone["deletionReason"]) == ("DELETED", "OWNER_REQUEST")
            assert arrived - deleted < timedelta(seconds=1)
            # and no notice was lost or heard twice
            live.nothing_for("notes", 1.0)
        finally:
            sock.close()
        assert_deleted_once(owner, published)
