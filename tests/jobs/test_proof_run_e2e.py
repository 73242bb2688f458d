"""The proof run in CI (tests/proof_scenario.py): PostgreSQL, Redis, a local S3, two
``serve`` and two ``worker`` processes; 300 private datasets with weights files whose
windows end while a worker is SIGKILLed mid-burst, Redis restarts, PostgreSQL restarts
and the object store is away for 30 s. Every dataset is deleted exactly once, access
ends at ``expiresAt`` for every one, nothing of theirs is left in the bucket, no
acknowledged write is lost and no answer is a 500 or ``INTERNAL_ERROR``. The same run
at a bigger size is ``bench/run.py --only proof``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proof_scenario import Plan, run

pytestmark = pytest.mark.postgres_only(
    reason="restarts its own PostgreSQL server under two serves and two workers"
)


def test_the_proof_run_keeps_every_promise_through_four_faults(tmp_path: Path) -> None:
    # Reminders 15 s before the window's end (the bench keeps 10 s): a reminder whose
    # queued job went with Redis is enqueued again by the sweep that runs when the
    # worker is back on ARQ; measured at most 2.4 s late at 1,000 datasets on a quiet
    # machine (docs/deploy/scaling.md), and CI's machine is shared. Here none may be
    # lost or doubled.
    outcome = run(tmp_path, Plan(datasets=300, users=24, reminder=15))

    assert outcome.problems == [], outcome.problems[:20]
    # the faults met the run: the run saw busy answers, and every window had ended
    assert [f["name"] for f in outcome.faults] == [
        "object store stopped",
        "worker SIGKILL",
        "Redis restart",
        "PostgreSQL restart",
        "object store back",
    ]
    assert outcome.answers.codes["TRY_AGAIN"] + outcome.answers.statuses[503] > 0
    assert len(outcome.deleted_late) == 300 and len(outcome.bytes_late) == 300
    assert outcome.answers.acknowledged["publishModelVersion"] == 300
