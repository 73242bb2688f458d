"""Section proof: the proof run (issue 21) at a bigger size than CI's.

    .venv/bin/python bench/proof_run.py                  # 1,000 datasets, 30 users
    .venv/bin/python bench/proof_run.py --datasets 600
    .venv/bin/python bench/run.py --only proof           # the same, into results.md

PostgreSQL, Redis, a local S3 (moto behind a forwarder), two ``serve`` and two
``worker`` processes; private datasets with weights files published in bursts with a
20 s window, so windows end while one worker is SIGKILLed just after a burst fell due,
Redis restarts, PostgreSQL restarts and the object store is away for 30 s. The scenario
is tests/proof_scenario.py, the one the CI test (tests/jobs/test_proof_run_e2e.py)
runs at 300 datasets: this module imports it from tests/ and only sizes it and writes
its numbers (lateness of ``deletedAt`` and of the bytes' removal against ``expiresAt``,
answers by status and code, the faults and when they came, every broken promise).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from common import log  # noqa: E402

from tests.proof_scenario import Plan, percentiles  # noqa: E402
from tests.proof_scenario import run as run_scenario  # noqa: E402

USERS_PER_DATASETS = 1 / 33  # a few dozen users: 30 for 1,000 datasets


def run(workdir: Path, datasets: int = 1000) -> dict[str, Any]:
    """The scenario at ``datasets`` datasets; its numbers (results.json's ``proof``)."""
    folder = workdir / "proof"
    folder.mkdir(parents=True, exist_ok=True)
    plan = Plan(datasets=datasets, users=max(24, math.ceil(datasets * USERS_PER_DATASETS)))
    outcome = run_scenario(folder, plan, log=log)

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        p50, p99, most = percentiles(values)
        return {"p50": p50, "p99": p99, "max": most, "min": min(values), "n": len(values)}

    answers = outcome.answers
    return {
        "plan": plan.__dict__,
        "deleted_late": spread(outcome.deleted_late),
        "bytes_late": spread(outcome.bytes_late),
        "reminders_late": spread(outcome.reminders_late),
        "statuses": {str(k): v for k, v in sorted(answers.statuses.items())},
        "codes": dict(answers.codes.most_common()),
        "acknowledged": dict(answers.acknowledged),
        "retries": answers.retries,
        "downloads": {k: dict(v) for k, v in outcome.downloads.items()},
        "faults": outcome.faults,
        "phases": outcome.phases,
        "problems": outcome.problems,
        "summary": outcome.summary(),
    }


def section(proof: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks/results.md (bench/report.py)."""
    lines = ["## The proof run: two serves, two workers, four faults", ""]
    if not proof.get("plan"):
        return [*lines, f"Not measured: {proof.get('error', 'no result')}", ""]
    plan = proof["plan"]
    phases = proof["phases"]
    lines += [
        f"{plan['datasets']:,} private datasets with a weights file each, uploaded to drafts "
        f"by {plan['users']} users, then published in {plan['bursts']} bursts "
        f"{plan['gap']:g} s apart (window {plan['retention']} s, reminder {plan['reminder']} s "
        "before its end, sweep every 5 s), on PostgreSQL + Redis + a local S3 (moto behind "
        "a TCP forwarder) with two `serve` and two `worker` processes sharing them. The "
        "faults come while the windows end. Clients spread their requests over both "
        "servers and retry `TRY_AGAIN` (and 503 with `Retry-After`) with a bounded "
        "back-off. The same scenario (tests/proof_scenario.py) runs in CI at 300 datasets "
        "(`tests/jobs/test_proof_run_e2e.py`); here `bench/proof_run.py`. Phases: start "
        f"{phases.get('start', 0):.0f} s, drafts {phases.get('drafts', 0):.0f} s, publishing "
        f"and faults {phases.get('faults', 0):.0f} s, waiting and checks "
        f"{phases.get('checks', 0):.0f} s.",
        "",
        "| fault | at (s after the first publish) | took |",
        "|---|---:|---:|",
    ]
    lines += [f"| {f['name']} | {f['at']:.1f} | {f['seconds']:.1f} s |" for f in proof["faults"]]
    lines += [
        "",
        "| late against `expiresAt` | n | min | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("deleted_late", "`deletedAt` (the claim: access ended)"),
        ("bytes_late", "the object gone from the bucket (listed every second)"),
        ("reminders_late", "the reminder's notice (against its due time)"),
    ):
        s = proof.get(key)
        if s:
            lines.append(
                f"| {label} | {s['n']} | {s['min']:.2f} s | {s['p50']:.2f} s | "
                f"{s['p99']:.2f} s | {s['max']:.2f} s |"
            )
    statuses = ", ".join(f"{k}: {v:,}" for k, v in proof["statuses"].items())
    codes = ", ".join(f"`{k}`: {v:,}" for k, v in proof["codes"].items()) or "none"
    acked = ", ".join(f"{k}: {v:,}" for k, v in proof["acknowledged"].items())
    downloads = "; ".join(
        f"{kind} expiry: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        for kind, counts in proof["downloads"].items()
    )
    lines += [
        "",
        f"Answers by HTTP status: {statuses}. Error codes: {codes}; "
        f"{proof['retries']:,} retries. Acknowledged writes (each checked afterwards): "
        f"{acked}. The old download links: {downloads}.",
        "",
    ]
    if proof["problems"]:
        lines += ["**Broken promises:**", ""] + [f"- {p}" for p in proof["problems"][:30]]
    else:
        lines.append(
            "Every promise held: each dataset deleted once (one tombstone, one `DELETED` "
            "event, one notice, one reminder), access ended at `expiresAt`, nothing of theirs "
            "left in the bucket, every acknowledged write there, no 500 or `INTERNAL_ERROR`."
        )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorashelf-proof-") as workdir:
        result = run(Path(workdir), args.datasets)
    print(json.dumps(result, indent=1, default=str))
    print("\n".join(section(result)))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
