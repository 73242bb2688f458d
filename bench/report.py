"""``docs/benchmarks/results.md`` and its charts, from the results of one run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common import fmt_num, fmt_ratio, median, ratio

MODE_LABEL = {
    "floor": "floor",
    "uncached": "lorashelf uncached (POST + nonce)",
    "cached": "lorashelf cached (POST repeated)",
    "revalidated": "lorashelf revalidated (If-None-Match)",
    "signed-in": "lorashelf signed in, owns nothing private (POST repeated)",
    "owner-full": "lorashelf signed in, owns a private dataset on the page, cache off",
}
COLOURS = {
    "floor": "#4c72b0",
    "uncached": "#dd8452",
    "cached": "#55a868",
    "revalidated": "#8172b3",
    "signed-in": "#c44e52",
    "owner-full": "#937860",
}


def ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# Charts ------------------------------------------------------------------------------


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_front(loads: list[dict[str, Any]], out: Path, *, by: str) -> str | None:
    """Throughput (top) and latency (bottom, p50 solid, p99 dashed) of the front page,
    against page size (one panel per concurrency) or concurrency (one per page size)."""
    rows = [ld for ld in loads if ld["doc"].startswith("front") and "+" not in ld["doc"]]
    if not rows:
        return None
    sizes = sorted({int(ld["doc"].removeprefix("front")) for ld in rows})
    conc = sorted({ld["concurrency"] for ld in rows})
    panels, xs = (conc, sizes) if by == "page" else (sizes, conc)
    if len(xs) < 2:
        return None
    plt = _plt()
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7), squeeze=False)
    for col, panel in enumerate(panels):
        top, bottom = axes[0][col], axes[1][col]
        for mode in MODE_LABEL:
            points = []
            for x in xs:
                size, c = (x, panel) if by == "page" else (panel, x)
                found = [
                    ld
                    for ld in rows
                    if ld["mode"] == mode and ld["doc"] == f"front{size}" and ld["concurrency"] == c
                ]
                if found and found[0]["requests"]:
                    points.append((x, found[0]))
            if not points:
                continue
            px = [p[0] for p in points]
            top.plot(px, [p[1]["rps"] for p in points], "o-", color=COLOURS[mode],
                     label=MODE_LABEL[mode])  # fmt: skip
            bottom.plot(px, [p[1]["p50_ms"] for p in points], "o-", color=COLOURS[mode],
                        label=f"{MODE_LABEL[mode]} p50")  # fmt: skip
            bottom.plot(px, [p[1]["p99_ms"] for p in points], "s--", color=COLOURS[mode],
                        alpha=0.7, label=f"{MODE_LABEL[mode]} p99")  # fmt: skip
        title = f"concurrency {panel}" if by == "page" else f"first: {panel}"
        xlabel = "page size (first:)" if by == "page" else "concurrent connections"
        top.set_title(f"front page, {title}")
        for ax in (top, bottom):
            ax.set_yscale("log")
            ax.set_xticks(xs)
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
        top.set_ylabel("requests/s (log)")
        bottom.set_ylabel("latency ms (log)")
    # the legend where every mode is drawn (the signed-in modes: first: 50 only)
    fullest = max(range(len(panels)), key=lambda col: len(axes[0][col].get_lines()))
    axes[0][fullest].legend(fontsize=6)
    axes[1][fullest].legend(fontsize=5)
    fig.tight_layout()
    name = "front_by_page_size.png" if by == "page" else "front_by_concurrency.png"
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def chart_transfers(rows: list[dict[str, Any]], out: Path) -> str | None:
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = []
    values = []
    colours = []
    for row in rows:
        for key, label, colour in (
            ("upload_mb_s", "PUT upload", "#dd8452"),
            ("cp_fsync_mb_s", "cp + fsync", "#4c72b0"),
            ("download_mb_s", "GET download", "#55a868"),
            ("cp_mb_s", "cp", "#8da0cb"),
        ):
            labels.append(f"{row['label']}\n{label}")
            values.append(row[key])
            colours.append(colour)
    ax.bar(range(len(values)), values, color=colours)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("MB/s")
    ax.set_title("dataset transfers through serve vs cp on the same disk")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "transfers.png", dpi=90)
    plt.close(fig)
    return "transfers.png"


def chart_sweep(sizes: list[dict[str, Any]], out: Path) -> str | None:
    """Left: one sweep against the plain delete of the same rows, per table size. Right:
    what grows with the table: ms per deletion and each what-is-due query's ms."""
    if not sizes:
        return None
    plt = _plt()
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = range(len(sizes))
    ax.bar([x - 0.2 for x in xs], [s["sweep_s"] for s in sizes], 0.4, label="jobs.tasks.sweep",
           color="#dd8452")  # fmt: skip
    ax.bar([x + 0.2 for x in xs], [s["baseline_s"] for s in sizes], 0.4,
           label="baseline: DELETE + unlink", color="#4c72b0")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(list(xs), [f"{s['rows']:,} rows\n{s['deleted']:,} deleted" for s in sizes])
    ax.set_ylabel("seconds (log)")
    ax.set_title("one sweep vs a plain delete of the same rows")
    ax.legend()
    ax.grid(True, axis="y", which="both", alpha=0.3)
    rows = [s["rows"] for s in sizes]
    per = [s["sweep_s"] * 1000 / s["deleted"] if s["deleted"] else math.nan for s in sizes]
    right.plot(rows, per, "o-", color="#dd8452", linewidth=2, label="sweep: ms per deletion")
    for name in sizes[-1]["queries"]:
        right.plot(rows, [s["queries"][name]["ms"] for s in sizes], ".--", alpha=0.7,
                   label=f"{name} (ms)")  # fmt: skip
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(rows, [f"{r:,}" for r in rows])
    right.set_xlabel("datasets in the table")
    right.set_ylabel("ms (log)")
    right.set_title("flat lines: cost follows the work, not the table")
    right.legend(fontsize=7)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=90)
    plt.close(fig)
    return "sweep.png"


def chart_catalogue(rows: list[dict[str, Any]], models: int, out: Path) -> str | None:
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["p95_ms"] for r in rows], 0.4, color="#dd8452",
           label="lorashelf p95 (HTTP)")  # fmt: skip
    ax.bar([x + 0.2 for x in xs], [r["sql_p95_ms"] for r in rows], 0.4, color="#4c72b0",
           label="hand-written SQL p95")  # fmt: skip
    ax.axhline(50, color="#c44e52", linestyle="--", label="target: 50 ms")
    ax.set_xticks(list(xs), [r["key"] for r in rows], fontsize=8, rotation=20)
    ax.set_ylabel("ms")
    ax.set_title(f"catalogue listings at {models:,} models (page of 20)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "catalogue.png", dpi=90)
    plt.close(fig)
    return "catalogue.png"


def chart_lateness(late: dict[str, Any], out: Path) -> str | None:
    values = late.get("lateness_ms") or []
    if not values:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sorted(values), [100 * (i + 1) / len(values) for i in range(len(values))])
    ax.set_xlabel("deletedAt - expiresAt (ms)")
    ax.set_ylabel("% of datasets deleted")
    ax.set_title(f"{late['n']:,} private datasets due within one second (embedded runner)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "lateness.png", dpi=90)
    plt.close(fig)
    return "lateness.png"


# Markdown -------------------------------------------------------------------------


def find(loads: list[dict[str, Any]], doc: str, mode: str, c: int) -> dict[str, Any] | None:
    for ld in loads:
        if ld["doc"] == doc and ld["mode"] == mode and ld["concurrency"] == c:
            return ld
    return None


MET = {True: "**met**", False: "**missed**", None: "not measured"}


def _plans_use_indexes(plans: list[list[str]]) -> bool:
    """No full scan of a table (``SCAN t`` without an index) in any plan."""
    for plan in plans:
        for step in plan:
            if step.startswith("SCAN ") and "INDEX" not in step and "VIRTUAL" not in step:
                return False
    return True


def targets(results: dict[str, Any]) -> list[str]:
    """Issue 11's targets: the measured number, the target, met or missed."""
    rows: list[tuple[str, str, str, bool | None]] = []
    front = results.get("front") or {}
    loads = front.get("loads", [])
    if front:
        identity = front.get("identity", {})
        ok = bool(identity.get("checked")) and not identity.get("failures")
        rows.append(
            (
                "1. front page (first: 50, with and without files) and model page pass the "
                "default cost and depth limits",
                "answered under the defaults: "
                + ", ".join(f"`{k}`" for k in identity.get("checked", []))
                if ok
                else "refused or different: " + "; ".join(identity.get("failures", []))[:300],
                "all answered",
                ok,
            )
        )
    instr = front.get("instructions", {})
    value = instr.get("front50:uncached")
    rows.append(
        (
            "2. CPU instructions per front-page request (first: 50, uncached, callgrind)",
            f"{value / 1e6:.1f} M" if value else "–",
            "≤ 50 M",
            (value <= 50e6) if value else None,
        )
    )
    sql = front.get("inproc", {})
    few, many = sql.get("front5:uncached"), sql.get("front50:uncached")
    if few and many:
        rows.append(
            (
                "2. SQL statements per page, whatever its size (first: 5 vs first: 50)",
                f"{few['sql_per_request']:g} vs {many['sql_per_request']:g}",
                "the same",
                few["sql_per_request"] == many["sql_per_request"],
            )
        )
    for mode, goal, label in (
        ("uncached", 0.15, "2. front page (first: 50) requests/s, uncached"),
        ("cached", 1.0, "3. front page (first: 50) requests/s, repeated anonymous (cached)"),
    ):
        for c in sorted({ld["concurrency"] for ld in loads}):
            base, ld = find(loads, "front50", "floor", c), find(loads, "front50", mode, c)
            if base and ld and base["rps"]:
                r = ratio(ld["rps"], base["rps"])
                rows.append(
                    (
                        f"{label}, concurrency {c}",
                        f"{ld['rps']:.1f} vs floor {base['rps']:.0f} = {fmt_ratio(r)}",
                        f"≥ {goal:g}× the floor",
                        r >= goal,
                    )
                )
    probe = (front.get("cache_probe") or {}).get("front50")
    if probe:
        has = bool(probe.get("persisted_queries")) and bool(probe.get("etag"))
        has = has and "cache-control" in {k.lower() for k in probe.get("headers", {})}
        rows.append(
            (
                "3. anonymous GET with automatic persisted queries, `ETag`, `Cache-Control`",
                probe.get("note", ""),
                "all three",
                has,
            )
        )
    tr = results.get("transfers") or {}
    for row in tr.get("rows", []):
        if row["label"] != "1 GiB":
            continue
        peak_mb = (
            max(row["upload_rss_above_idle_mib"], row["download_rss_above_idle_mib"]) * 1.048576
        )
        rows.append(
            (
                "4. serve's peak RSS above idle while 1 GiB goes up and comes back down",
                f"{peak_mb:.1f} MB",
                "≤ 50 MB",
                peak_mb <= 50,
            )
        )
        for key, base, what in (
            ("upload", "cp_fsync", "upload (PUT) vs `cp` + fsync"),
            ("download", "cp", "download (GET) vs `cp`"),
        ):
            r = ratio(row[f"{key}_mb_s"], row[f"{base}_mb_s"])
            rows.append(
                (
                    f"4. 1 GiB {what}",
                    f"{row[f'{key}_mb_s']:.0f} vs {row[f'{base}_mb_s']:.0f} MB/s = {fmt_ratio(r)}",
                    "≥ 0.66×",
                    r >= 0.66,
                )
            )
        plain = row.get("plaintext")
        for key, what in (("upload", "upload (PUT)"), ("download", "download (GET)")):
            if not plain:
                continue
            r = ratio(row[f"{key}_mb_s"], plain[f"{key}_mb_s"])
            rows.append(
                (
                    f"20. 1 GiB {what} encrypted vs the release before encryption",
                    f"{row[f'{key}_mb_s']:.0f} vs {plain[f'{key}_mb_s']:.0f} MB/s = {fmt_ratio(r)}",
                    "≥ 0.85×",
                    r >= 0.85,
                )
            )
    if tr and not any(r["label"] == "1 GiB" for r in tr.get("rows", [])):
        rows.append(("4. 1 GiB transfer", "not run (" + ("; ".join(tr.get("skipped", []))
                     or "not in this run's sizes") + ")",
                     "≤ 50 MB, ≥ 0.66×", None))  # fmt: skip
    sw = results.get("sweep") or {}
    sizes = sw.get("sizes", [])
    if sizes:
        largest = sizes[-1]
        plans = [p for q in largest["queries"].values() for p in q["plans"]]
        scans = sorted(
            name for name, q in largest["queries"].items() if not _plans_use_indexes(q["plans"])
        )
        rows.append(
            (
                "5. the sweep's what-is-due queries use their indexes on SQLite "
                f"({largest['rows']:,} rows)",
                "full scans in " + ", ".join(scans) if scans else f"{len(plans)} plans, no scan",
                "indexes only",
                _plans_use_indexes(plans),
            )
        )
        constant = largest.get("constant_indexes")
        if constant is not None:
            rows.append(
                (
                    "5. every declared index is on the columns it names (SQLite schema made "
                    "by the app's migrations)",
                    (
                        f"{len(constant)} on a constant string instead: "
                        + "; ".join(f"`{c['sql'].split(' ON ', 1)[1]}`" for c in constant)
                    )
                    if constant
                    else "all",
                    "all",
                    not constant,
                )
            )
        pg = results.get("pgplans") or {}
        if pg:
            pg_plans = [
                [line.strip() for line in plan]
                for plans in (pg.get("queries") or {}).values()
                for plan in plans
            ]
            empty = set(pg.get("empty_tables") or [])
            seq = sorted(
                {line.split(" on ")[1].split()[0] for plan in pg_plans for line in plan
                 if "Seq Scan on " in line} - empty
            )  # fmt: skip
            if pg.get("skipped"):
                measured, met = f"skipped: {pg['skipped']}", None
            elif pg.get("error"):
                measured = "failed: " + pg["error"].strip().splitlines()[-1][:200]
                met = False
            else:
                measured = (
                    f"sequential scans of {', '.join(seq)}"
                    if seq
                    else f"{len(pg_plans)} plans, no sequential scan"
                )
                met = not seq
                if pg.get("migrate_error"):
                    measured += (
                        " (on the models' schema with index columns named as the database "
                        "names them: the app's migrations fail there: "
                        f"`{pg['migrate_error'][:160]}`)"
                    )
                    met = False
            rows.append(
                (
                    f"5. the what-is-due queries' plans on PostgreSQL ({pg.get('rows', 0):,} rows)",
                    measured,
                    "plans shown, indexes only",
                    met,
                )
            )
        events = sw.get("events_probe") or []
        if events:
            big = events[-1]
            rows.append(
                (
                    "5. a deletion's own statements use indexes "
                    "(`storage.retention.history.record`'s "
                    f"pruning DELETE, {big['events']:,} events)",
                    f"{ms(big['ms'])} ms, plan: {'; '.join(big['plan'])}",
                    "indexes only",
                    _plans_use_indexes([big["plan"]]),
                )
            )
        if len(sizes) > 1:
            small = sizes[0]

            def per(entry: dict[str, Any]) -> float:
                return entry["sweep_s"] * 1000 / entry["deleted"] if entry["deleted"] else math.nan

            growth = {
                name: ratio(largest["queries"][name]["ms"], small["queries"][name]["ms"])
                for name in largest["queries"]
                if name in small["queries"]
            }
            if growth:
                worst = max(growth, key=lambda k: growth[k])
                rows.append(
                    (
                        "5. the what-is-due queries' time does not grow with the table: "
                        f"{largest['rows']:,} vs {small['rows']:,} rows, the worst query",
                        f"`{worst}`: {ms(largest['queries'][worst]['ms'])} vs "
                        f"{ms(small['queries'][worst]['ms'])} ms = {fmt_ratio(growth[worst])} "
                        "(all: "
                        + ", ".join(f"{k} {fmt_ratio(v)}" for k, v in growth.items())
                        + ")",
                        "≤ 2× (flat, within this machine's noise)",
                        growth[worst] <= 2,
                    )
                )
            r = ratio(per(largest), per(small))
            rows.append(
                (
                    "5. the sweep's cost follows the work due, not the table: ms per deletion "
                    f"at {largest['rows']:,} rows vs {small['rows']:,}",
                    f"{per(largest):.1f} vs {per(small):.1f} ms = {fmt_ratio(r)}",
                    "≤ 2× (flat, within this machine's noise)",
                    r <= 2,
                )
            )
            if len(events) > 1:
                r = ratio(events[-1]["ms"], events[0]["ms"])
                rows.append(
                    (
                        "5. ... and with realistic event histories: the pruning DELETE at "
                        f"{events[-1]['rows']:,} vs {events[0]['rows']:,} rows",
                        f"{ms(events[-1]['ms'])} vs {ms(events[0]['ms'])} ms = {fmt_ratio(r)}",
                        "≤ 2×",
                        r <= 2,
                    )
                )
            r = ratio(largest["sweep_s"], largest["baseline_s"])
            rows.append(
                (
                    f"5. one sweep vs plain `DELETE ... WHERE` + `unlink` of the same "
                    f"{largest['deleted']:,} rows ({largest['rows']:,}-row table)",
                    f"{largest['sweep_s']:.1f} s vs {largest['baseline_s'] * 1000:.0f} ms = "
                    f"{fmt_ratio(r)}",
                    "none stated (for scale)",
                    None,
                )
            )
    cat = results.get("catalogue") or {}
    if cat.get("rows"):
        worst = max(cat["rows"], key=lambda r: r["p95_ms"])
        models = (cat.get("built") or {}).get("models", 0)
        rows.append(
            (
                f"5. catalogue search and filters p95 at {models:,} models (worst of "
                f"{len(cat['rows'])} listings: {worst['label']})",
                f"{ms(worst['p95_ms'])} ms",
                "< 50 ms at 100,000 models",
                worst["p95_ms"] < 50 if models >= 100_000 else None,
            )
        )
    late = results.get("lateness") or {}
    if late.get("max_ms") is not None:
        rows.append(
            (
                f"6. deletion lateness, {late['n']:,} datasets due in the same second",
                f"median {ms(late['median_ms'])}, p95 {ms(late['p95_ms'])}, max "
                f"{ms(late['max_ms'])} ms ({late['deleted']}/{late['n']} deleted)",
                "none stated (measured)",
                None,
            )
        )
    elapsed = results.get("elapsed_s")
    if elapsed is not None and not results.get("carried"):  # the whole run only
        rows.append(
            (
                f"6. this benchmark's run time on {results['machine']['nproc']} cores",
                f"{elapsed / 60:.1f} min",
                "< 10 min",
                elapsed < 600,
            )
        )
    lines = [
        "## Issue 11's targets",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
    ]
    for what, measured, goal, met in rows:
        verdict = MET[met] if met is not None else ("–" if "none" in goal else MET[None])
        lines.append(f"| {what} | {measured} | {goal} | {verdict} |")
    return lines + [""]


def signed_in_targets(results: dict[str, Any]) -> list[str]:
    """Issue 22's targets: signed-in pages, the uncached read path, miss coalescing."""
    front = results.get("front") or {}
    loads = front.get("loads", [])
    rows: list[tuple[str, str, str, bool | None]] = []
    for mode, goal, label in (
        ("signed-in", 1.0, "signed-in front page (first: 50), viewer owns nothing private"),
        (
            "owner-full",
            0.15,
            "signed-in front page (first: 50), viewer owns a private dataset on the page, "
            "`LORASHELF_PUBLIC_CACHE=0` (the full path)",
        ),
    ):
        for c in sorted({ld["concurrency"] for ld in loads if ld["mode"] == mode}):
            base, ld = find(loads, "front50", "floor", c), find(loads, "front50", mode, c)
            if base and ld and base["rps"]:
                r = ratio(ld["rps"], base["rps"])
                rows.append(
                    (
                        f"{label}: requests/s, concurrency {c}",
                        f"{ld['rps']:.1f} vs floor {base['rps']:.0f} = {fmt_ratio(r)}",
                        f"≥ {goal:g}× the floor",
                        r >= goal,
                    )
                )
    instr = front.get("instructions", {})
    for key, goal, label in (
        ("front50:owner-full", 50e6, "the full path (owns a private dataset, cache off)"),
        ("front50:uncached", 50e6, "anonymous, uncached"),
        ("front50:signed-in", None, "signed in, owns nothing private (shared answer)"),
    ):
        value = instr.get(key)
        floor50 = instr.get("front50:floor")
        rows.append(
            (
                f"CPU instructions per front-page request (first: 50), {label}",
                f"{value / 1e6:.1f} M" + (f" (floor {floor50 / 1e6:.1f} M)" if floor50 else "")
                if value
                else "–",
                f"≤ {goal / 1e6:.0f} M" if goal else "none stated (measured)",
                (value <= goal) if value and goal else None,
            )
        )
    coalesced = front.get("coalescing")
    if coalesced:
        rows.append(
            (
                f"{coalesced['requests']} concurrent requests on an expired entry: computations "
                '(`lorashelf_response_cache_answers_total{outcome="computed"}`)',
                f"{coalesced['computations']:g} ({coalesced['coalesced']:g} waited for it, "
                f"{coalesced['hits']:g} came after it; statuses {coalesced['statuses']})",
                "1",
                coalesced["computations"] == 1,
            )
        )
    probe = front.get("signed_in_probe")
    if probe:
        rows.append(
            (
                "the shared answer is the anonymous one, kept private; the owner's is their own",
                f"nothing private: {probe['nothing_private']}; owns private: "
                f"{probe['owns_private']} ({probe['owner_bytes']} vs anonymous "
                f"{probe['anonymous_bytes']} bytes)",
                "ETag + `private, no-store`; no ETag, more bytes",
                bool(probe["nothing_private"].get("etag"))
                and probe["nothing_private"].get("cache-control") == "private, no-store"
                and not probe["owns_private"].get("etag")
                and probe["owner_bytes"] > probe["anonymous_bytes"],
            )
        )
    if not rows:
        return []
    lines = ["## Issue 22's targets", "", "| target | measured | goal | |", "|---|---|---|---|"]
    for what, measured, goal, met in rows:
        verdict = MET[met] if met is not None else ("–" if "none" in goal else MET[None])
        lines.append(f"| {what} | {measured} | {goal} | {verdict} |")
    return lines + [""]


def headline(results: dict[str, Any]) -> list[str]:
    lines = ["## Headline", "", "| measure | lorashelf | baseline | ratio |", "|---|---|---|---|"]
    front = results.get("front") or {}
    loads = front.get("loads", [])
    for c in (1, 32):
        base = find(loads, "front50", "floor", c)
        for mode in ("uncached", "cached", "signed-in", "owner-full"):
            ld = find(loads, "front50", mode, c)
            if ld and base:
                lines.append(
                    f"| front page (first: 50) rps, {MODE_LABEL[mode].removeprefix('lorashelf ')},"
                    f" concurrency {c} | {ld['rps']:.1f} "
                    f"| floor {base['rps']:.0f} | {fmt_ratio(ratio(ld['rps'], base['rps']))} |"
                )
    instr = dict(front.get("instructions", {}))
    if front.get("instructions_cached_note") and "front50:uncached" in instr:
        instr.setdefault("front50:cached", instr["front50:uncached"])
    floor50 = instr.get("front50:floor")
    for mode in ("uncached", "cached", "signed-in", "owner-full"):
        value = instr.get(f"front50:{mode}")
        if value and floor50:
            what = MODE_LABEL[mode].removeprefix("lorashelf ")
            lines.append(
                f"| front page CPU instructions / request, {what} | {value / 1e6:.1f} M "
                f"| floor {floor50 / 1e6:.1f} M | {fmt_ratio(ratio(value, floor50))} |"
            )
    sql = front.get("inproc", {})
    for key in ("front5", "front50", "model"):
        seg = sql.get(f"{key}:uncached")
        base = sql.get(f"{key}:floor")
        if seg and base:
            lines.append(
                f"| SQL statements / request, {key} | {seg['sql_per_request']:g} "
                f"| floor {base['sql_per_request']:g} "
                f"| {fmt_ratio(ratio(seg['sql_per_request'], base['sql_per_request']))} |"
            )
    for row in (results.get("transfers") or {}).get("rows", []):
        lines.append(
            f"| {row['label']} upload MB/s (peak RSS +{row['upload_rss_above_idle_mib']:.0f} MiB) "
            f"| {row['upload_mb_s']:.0f} | cp+fsync {row['cp_fsync_mb_s']:.0f} "
            f"| {fmt_ratio(ratio(row['upload_mb_s'], row['cp_fsync_mb_s']))} |"
        )
        lines.append(
            f"| {row['label']} download MB/s (peak RSS +{row['download_rss_above_idle_mib']:.0f}"
            f" MiB) | {row['download_mb_s']:.0f} | cp {row['cp_mb_s']:.0f} "
            f"| {fmt_ratio(ratio(row['download_mb_s'], row['cp_mb_s']))} |"
        )
    for size in (results.get("sweep") or {}).get("sizes", []):
        lines.append(
            f"| one sweep, {size['rows']:,} rows ({size['deleted']:,} deleted) | "
            f"{size['sweep_s']:.1f} s | {size['baseline_s'] * 1000:.0f} ms "
            f"| {fmt_ratio(ratio(size['sweep_s'], size['baseline_s']))} |"
        )
    late = results.get("lateness") or {}
    if late.get("median_ms") is not None:
        lines.append(
            f"| deletion lateness, {late['n']:,} due in one second: median / p95 / max "
            f"| {ms(late['median_ms'])} / {ms(late['p95_ms'])} / {ms(late['max_ms'])} ms "
            f"| all deleted in {ms(late['baseline_ms'])} ms "
            f"| max {fmt_ratio(ratio(late['max_ms'], late['baseline_ms']))} |"
        )
    for row in (results.get("catalogue") or {}).get("rows", []):
        lines.append(
            f"| catalogue p95, {row['label']} | {ms(row['p95_ms'])} ms "
            f"| SQL {ms(row['sql_p95_ms'])} ms "
            f"| {fmt_ratio(ratio(row['p95_ms'], row['sql_p95_ms']))} |"
        )
    return lines


def front_section(front: dict[str, Any], charts: list[str]) -> list[str]:
    lines = ["## 1. Front page and model page", ""]
    if not front:
        return lines + ["Not measured in this run.", ""]
    seed = front.get("seed", {})
    lines += [
        f"Data: a fresh data dir; {seed.get('models')} published models by {seed.get('users')} "
        "users, each with one version (trained words), a weights file (a real safetensors "
        "file with kohya metadata, training-data keys included) and a zip dataset "
        f"({seed.get('public_datasets')} PUBLIC, {seed.get('private_datasets')} PRIVATE, so "
        "anonymous readers get `trainingDataset: null` and the public header's hash for "
        "those), all made through the GraphQL API and upload URLs of a real "
        f"`lorashelf serve` ({front.get('seed_s', 0):.1f} s).",
        "",
        "Documents:",
        "",
    ]
    for key, doc in front.get("docs", {}).items():
        lines.append(f"- `{key}` ({doc['label']}): `{doc['query']}`")
    identity = front.get("identity", {})
    lines += [
        "",
        "**Byte-identity**: lorashelf's answers (uncached POST, repeated POST, GET) and the "
        "floor's are the same "
        f"bytes for {', '.join(f'`{k}`' for k in identity.get('checked', []))}"
        + (" — **FAILED**: " + "; ".join(identity["failures"]) if identity.get("failures") else ".")
        + " The run stops if not.",
        "",
    ]
    probe = front.get("cache_probe", {}).get("front50", {})
    lines += [
        f"**Caching found on the server**: {probe.get('note', 'not probed')}"
        + (f" (headers: {probe['headers']})" if probe.get("headers") else "")
        + ". Uncached = anonymous `POST /graphql` with `Cache-Control: no-cache` and a "
        "variable the document does not declare (`benchNonce`, a new number in every request:"
        " GraphQL ignores it, a response cache keyed on document + variables cannot have the "
        "answer); cached = the same anonymous `POST /graphql` repeated byte for byte (with a "
        "constant `benchNonce` per run, so that each run starts on a fresh answer: one miss "
        "just before the run, then repeats within the cache's 10 s window). Every "
        "uncached request must run SQL (checked in-process below); `revalidated` rows "
        "(conditional `GET` with the `ETag`) appear when the server gives an `ETag`.",
        "",
        "The floor is `bench/floor.py`: Starlette + aiosqlite, one hand-written SQL join per "
        "request, `json.dumps`; run by the same uvicorn with the same options as `lorashelf "
        "serve` (asyncio loop, h11, access log on).",
        "",
        "### HTTP load (wrk)",
        "",
        "Load generator: `wrk` (Debian), one thread, N keep-alive connections in a closed "
        "loop (each sends its next request when the answer arrives), a Lua script for POST "
        "bodies and headers; the duration grows at high concurrency when the server is slow "
        "(so that every connection gets several answers). Cells run back to back (floor, "
        "uncached, cached) and each waits until the server's CPU is idle again. Latency is "
        "wrk's, p99 of few requests is nearly the max: see the request counts.",
        "",
        "| document | conc. | target | rps | × floor | p50 ms | p99 ms | p99 × floor | requests"
        " | s | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    loads = front.get("loads", [])
    for ld in loads:
        base = find(loads, ld["doc"], "floor", ld["concurrency"])
        is_floor = ld["mode"] == "floor"
        base_rps = base["rps"] if base else math.nan
        base_p99 = base["p99_ms"] if base else math.nan
        lines.append(
            f"| {ld['doc']} | {ld['concurrency']} | {MODE_LABEL[ld['mode']]} | {ld['rps']:.1f} | "
            f"{'1×' if is_floor else fmt_ratio(ratio(ld['rps'], base_rps))}"
            f" | {ms(ld['p50_ms'])} | {ms(ld['p99_ms'])} | "
            f"{'1×' if is_floor else fmt_ratio(ratio(ld['p99_ms'], base_p99))}"
            f" | {ld['requests']} | {ld['seconds']:g} | {ld['errors'] or ''}"
            f"{' (' + ld['error_detail'] + ')' if ld['errors'] else ''} |"
        )
    for chart in charts:
        lines += ["", f"![{chart}]({chart})"]
    instr = front.get("instructions", {})
    lines += ["", "### CPU instructions per request (valgrind)", ""]
    if not instr:
        lines.append(front.get("instructions_note", "Not measured."))
    else:
        lines += [
            f"The ASGI app in-process ({front.get('instructions_method')}), requests sent one "
            "after another through `httpx.AsyncClient(transport=httpx.ASGITransport(app))` "
            "after a warm-up; instructions of the measured requests divided by their number. "
            "No sockets, no uvicorn. `null` is an ASGI app answering fixed bytes of the same "
            "size: the client side of this measurement, included in every row.",
            "",
            "| document | lorashelf uncached | lorashelf cached | floor | uncached × floor "
            "| cached × floor |",
            "|---|---|---|---|---|---|",
        ]
        note = front.get("instructions_cached_note")
        if note:
            lines[-2:-2] = [
                f"Cached: {note}; the cached columns repeat the uncached count.",
                "",
            ]
            instr = dict(instr)
            for key in list(instr):
                if key.endswith(":uncached"):
                    instr.setdefault(key.replace(":uncached", ":cached"), instr[key])
        keys = sorted({k.split(":")[0] for k in instr if not k.startswith("null")})
        for key in keys:
            unc, cac, flo = (instr.get(f"{key}:{m}") for m in ("uncached", "cached", "floor"))
            lines.append(
                f"| {key} | {fmt_num((unc or math.nan) / 1e6)} M | "
                f"{fmt_num((cac or math.nan) / 1e6)}"
                f" M | {fmt_num((flo or math.nan) / 1e6, 2)} M | "
                f"{fmt_ratio(ratio(unc or math.nan, flo or math.nan))} | "
                f"{fmt_ratio(ratio(cac or math.nan, flo or math.nan))} |"
            )
        for key in ("null:get", "null:post"):
            if key in instr:
                lines.append(f"| `{key}` (harness only) | | | {instr[key] / 1e6:.2f} M | | |")
        for key in ("front50:signed-in", "front50:owner-full"):
            if key in instr:
                lines.append(
                    f"| {key} ({MODE_LABEL[key.split(':')[1]].removeprefix('lorashelf ')}) | "
                    f"{instr[key] / 1e6:.1f} M | | | "
                    f"{fmt_ratio(ratio(instr[key], instr.get('front50:floor', math.nan)))} | |"
                )
        if "front50:uncached" in instr and "front5:uncached" in instr:
            per_model = (instr["front50:uncached"] - instr["front5:uncached"]) / 45
            floor_per = (
                (instr["front50:floor"] - instr["front5:floor"]) / 45
                if "front5:floor" in instr and "front50:floor" in instr
                else math.nan
            )
            lines += [
                "",
                f"Per model on the page (first: 50 minus first: 5, over 45): lorashelf "
                f"{per_model / 1e6:.2f} M instructions, floor {floor_per / 1e6:.3f} M "
                f"({fmt_ratio(ratio(per_model, floor_per))}).",
            ]
    return lines + [""]


def sql_section(front: dict[str, Any]) -> list[str]:
    inproc = front.get("inproc") or {}
    lines = ["## 3. SQL statements and CPU time per request (in-process)", ""]
    if not inproc:
        return lines + ["Not measured in this run.", ""]
    lines += [
        "SQLite's trace callback on the app's own connection, N requests after a warm-up, "
        "same client as above, no valgrind; CPU = process CPU time per request "
        "(`time.process_time`, includes the in-process client). `signed-in` sends a "
        "creator's bearer token (the owner sees their private datasets: a different answer). "
        "The response cache's re-reads of the public generation (`SELECT ... FROM "
        '"public_generation"`, at most one every 0.25 s per process, whatever the requests) '
        "belong to no page: they are counted apart, over the whole segment of N requests.",
        "",
        "| request | SQL statements / request | floor | generation re-reads (segment) "
        "| CPU ms / request | floor CPU ms | CPU × floor | bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, seg in inproc.items():
        if name.endswith(":floor"):
            continue
        key = name.split(":")[0]
        base = inproc.get(f"{key}:floor", {})
        lines.append(
            f"| {name} | {seg['sql_per_request']:g} | {base.get('sql_per_request', '–')} | "
            f"{seg.get('generation_reads', '–')} | {ms(seg['cpu_ms'])} | "
            f"{ms(base.get('cpu_ms'))} | "
            f"{fmt_ratio(ratio(seg['cpu_ms'], base.get('cpu_ms', math.nan)))} | {seg['bytes']:,} |"
        )
    sql_text = front.get("sql_text") or {}
    for name in ("front50:uncached", "front50+files:uncached"):
        if name in sql_text:
            lines += ["", f"Statements of one `{name}` request:", "", "```sql"]
            lines += [s for s in sql_text[name]]
            lines += ["```"]
    return lines + [""]


def transfers_section(tr: dict[str, Any], chart: str | None) -> list[str]:
    lines = ["## 4. Transfers: big private datasets through serve", ""]
    if not tr:
        return lines + ["Not measured in this run.", ""]
    lines += [
        "A zip with one STORED entry of random bytes (uncompressible), uploaded with `curl -T` "
        "(PUT to the signed upload URL: lorashelf hashes, writes, fsyncs, then reads every "
        "entry back to check it) and downloaded with `curl -o` from the owner's signed URL to "
        "the same disk; wall time around curl. Baselines on the same file and disk in the "
        "same run: `cp` + fsync of the copy (for the upload) and `cp` (for the download). "
        "Peak RSS of the serve process above its idle RSS (VmHWM reset via "
        "`/proc/<pid>/clear_refs` before, and VmRSS sampled every 20 ms).",
        "",
        f"Free disk at the start: {tr.get('free_gib', 0):.0f} GiB.",
        "",
        "| file | bytes | PUT MB/s | cp+fsync MB/s | PUT × cp+fsync | GET MB/s | cp MB/s "
        "| GET × cp "
        "| peak RSS above idle, PUT / GET | archive check alone |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in tr.get("rows", []):
        lines.append(
            f"| {row['label']} | {row['bytes']:,} | {row['upload_mb_s']:.0f} | "
            f"{row['cp_fsync_mb_s']:.0f}"
            f" | {fmt_ratio(ratio(row['upload_mb_s'], row['cp_fsync_mb_s']))} | "
            f"{row['download_mb_s']:.0f} | {row['cp_mb_s']:.0f} | "
            f"{fmt_ratio(ratio(row['download_mb_s'], row['cp_mb_s']))} | "
            f"+{row['upload_rss_above_idle_mib']:.1f} / "
            f"+{row['download_rss_above_idle_mib']:.1f} MiB"
            f" (idle {row['upload_rss_idle_mib']:.0f} MiB) | "
            f"{row.get('archive_check_s', math.nan):.2f} s |"
        )
    plain_rows = [r for r in tr.get("rows", []) if r.get("plaintext")]
    if plain_rows:
        lines += [
            "",
            "Encrypted (this code) and plaintext (the release before encryption, "
            f"`{tr.get('plaintext_ref')}`, run from git on the same virtualenv) side by side, "
            "the two servers taking turns on each size; medians of "
            f"{plain_rows[0]['repeats']} runs each:",
            "",
            "| file | PUT MB/s encrypted | plaintext | × | GET MB/s encrypted | plaintext | × "
            "| peak RSS above idle, PUT / GET (encrypted; plaintext) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in plain_rows:
            p = row["plaintext"]
            lines.append(
                f"| {row['label']} | {row['upload_mb_s']:.0f} | {p['upload_mb_s']:.0f} | "
                f"{fmt_ratio(ratio(row['upload_mb_s'], p['upload_mb_s']))} | "
                f"{row['download_mb_s']:.0f} | {p['download_mb_s']:.0f} | "
                f"{fmt_ratio(ratio(row['download_mb_s'], p['download_mb_s']))} | "
                f"+{row['upload_rss_above_idle_mib']:.1f} / "
                f"+{row['download_rss_above_idle_mib']:.1f} MiB; "
                f"+{p['upload_rss_above_idle_mib']:.1f} / "
                f"+{p['download_rss_above_idle_mib']:.1f} MiB |"
            )
    for skipped in tr.get("skipped", []):
        lines.append(f"\nSkipped: {skipped}")
    if chart:
        lines += ["", f"![transfers]({chart})"]
    return lines + [""]


def sweep_section(sw: dict[str, Any], chart: str | None) -> list[str]:
    lines = ["## 5. Sweep scaling", ""]
    if not sw:
        return lines + ["Not measured in this run.", ""]
    lines += [
        "Per size, a fresh data dir migrated by `lorashelf migrate`, then rows written by "
        "SQLite itself (`INSERT ... SELECT` over a recursive sequence, with the values the "
        "app writes): 10% due (PRIVATE, AVAILABLE, `expires_at` within the last day, a blob "
        "file each), 40% private expiring later (a reminder pending), 35% public, 15% "
        "tombstones; one published version per dataset, ten per model. `dataset_events` "
        "starts empty (see the events probe below). One `jobs.tasks.sweep` in-process "
        "(a child process, the app's code, SteadyClock, no scheduler), timed; it deletes in "
        f"batches of 100, at most {sw.get('max_batches', 50)} batches per kind (the app's cap is"
        " 50; the bench lowers it so that every size does the same work within the time "
        "budget, which is also what shows whether the cost follows the work or the table). "
        "Baseline on a copy taken before the "
        "sweep: the same rows (same number, expiry order) selected, their blob files "
        "unlinked, one `DELETE ... WHERE id IN (...)`, with the app's journal and sync "
        "settings (WAL, synchronous FULL).",
        "",
        "| rows | due | build s | sweep s | deleted | due left | ms / deletion | baseline ms "
        "| × baseline | statements in the sweep |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sw.get("sizes", []):
        per = s["sweep_s"] * 1000 / s["deleted"] if s["deleted"] else math.nan
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(s["sweep_statements"].items()))
        lines.append(
            f"| {s['rows']:,} | {s['due']:,} | {s['build_s']:.1f} | {s['sweep_s']:.1f} | "
            f"{s['deleted']:,} | {s['due_left']:,} | {per:.1f} | {s['baseline_s'] * 1000:.0f} | "
            f"{fmt_ratio(ratio(s['sweep_s'], s['baseline_s']))} | {kinds} |"
        )
    sizes = sw.get("sizes", [])
    if sizes:
        largest = sizes[-1]
        lines += [
            "",
            f"SQLite settings of the app's connection: `{largest['pragmas']}`.",
            "",
            f"### What-is-due queries (`storage/retention.py`) at each size: median ms of 3, "
            f"and `EXPLAIN QUERY PLAN` at {largest['rows']:,} rows",
            "",
            "| query | " + " | ".join(f"{s['rows']:,} rows ms" for s in sizes) + " | plan |",
            "|---|" + "---|" * len(sizes) + "---|",
        ]
        for name, item in largest["queries"].items():
            times = " | ".join(ms(s["queries"][name]["ms"]) for s in sizes)
            plan = "<br>".join("; ".join(p) for p in item["plans"])
            lines.append(f"| `{name}` | {times} | {plan} |")
        lines += ["", "SQL as executed (at the largest size):", "", "```sql"]
        for name, item in largest["queries"].items():
            lines.append(f"-- {name}")
            lines += item["sql"]
        lines += ["```", ""]
        sample = largest.get("sweep_sample") or []
        if sample:
            lines += [
                "The first statements of the sweep (one deletion is everything between two "
                '`SELECT ... WHERE "id"=N LIMIT 2`):',
                "",
                "```sql",
                *sample[:24],
                "```",
                "",
            ]
    events = sw.get("events_probe")
    if events:
        lines += [
            "### Events probe: a deletion's history entry against realistic histories",
            "",
            "Every deletion runs `storage.retention.history.record`, whose pruning statement "
            "filters `dataset_events` by `dataset_id`. With the three events per dataset the API "
            "writes (upload started, uploaded, published) added to each table above after "
            "its sweep:",
            "",
            "| rows | events | ms per statement (median of 3) | plan |",
            "|---|---|---|---|",
        ]
        for row in events:
            lines.append(
                f"| {row['rows']:,} | {row['events']:,} | {ms(row['ms'])} | "
                f"{'; '.join(row['plan'])} |"
            )
        lines += ["", "```sql", events[-1]["sql"], "```", ""]
    for error in sw.get("errors", []):
        lines.append(f"- **error**: {error}")
    if chart:
        lines += ["", f"![sweep]({chart})"]
    return lines + [""]


def pgplans_section(pg: dict[str, Any]) -> list[str]:
    lines = ["### What-is-due queries on PostgreSQL", ""]
    if not pg:
        return lines + ["Not measured in this run.", ""]
    if pg.get("skipped"):
        return lines + [f"Skipped: {pg['skipped']}.", ""]
    lines += [
        f"PostgreSQL {pg.get('server', '?')}, a throw-away cluster (fsync off), the database "
        "migrated by `lorashelf migrate`, then a sweep table like SQLite's "
        f"({pg.get('rows', 0):,} datasets, same mix) generated by `generate_series`, "
        "`VACUUM ANALYZE`; each statement the app sent to SQLite run as `EXPLAIN (ANALYZE, "
        "BUFFERS, COSTS OFF)`.",
        "",
    ]
    if pg.get("migrate_error"):
        lines += [
            f"**`lorashelf migrate` fails on PostgreSQL**: `{pg['migrate_error']}` (indexes "
            'declared on a relation, e.g. `Index(fields=("owner", "id"))`, name a column '
            "that does not exist; SQLite accepts them as indexes on a constant string). The "
            "plans below are on the schema the models describe (Tortoise's generator) with "
            "each index on the column it means (`owner` -> `owner_id`): what the plans will "
            "be once the migrations run there.",
            "",
        ]
    if pg.get("empty_tables"):
        lines += [
            "Tables left empty (a sequential scan of them reads nothing and does not count "
            f"against the verdict): {', '.join(pg['empty_tables'])}.",
            "",
        ]
    if pg.get("error"):
        lines += [f"**Failed**: `{pg['error'].strip().splitlines()[-1]}`", ""]
        lines += ["```", *pg["error"].strip().splitlines()[-4:], "```", ""]
    for name, plans in (pg.get("queries") or {}).items():
        lines += [f"- `{name}`:", "", "  ```"]
        for plan in plans:
            lines += [f"  {line}" for line in plan]
        lines += ["  ```", ""]
    return lines


def lateness_section(late: dict[str, Any], chart: str | None) -> list[str]:
    lines = ["## 6. Deletion lateness: 1,000 due in the same second", ""]
    if not late:
        return lines + ["Not measured in this run.", ""]
    lines += [
        f"`lorashelf serve` without Redis (embedded runner), no reminders. {late['n']:,} private "
        "datasets of published versions (a blob each, three history events each) written "
        "through SQL while serve was stopped, `expires_at` spread evenly over one second "
        f"starting {late.get('serve_ready_before_first_expiry_s', 0):.1f} s after serve was "
        "ready again (the owner signed up, and reads the result, through the API); lateness "
        "= `deletedAt - expiresAt` as the API reports it. Baseline: the same rows deleted "
        "the plain way (select, unlink, one DELETE) on a copy taken before serve started.",
        "",
        "| deleted | min ms | median ms | p95 ms | max ms | baseline: all deleted in ms "
        "| max × baseline | all gone after |",
        "|---|---|---|---|---|---|---|---|",
        f"| {late.get('deleted')}/{late['n']} | {ms(late.get('min_ms'))} | "
        f"{ms(late.get('median_ms'))}"
        f" | {ms(late.get('p95_ms'))} | {ms(late.get('max_ms'))} | {ms(late.get('baseline_ms'))} | "
        f"{fmt_ratio(ratio(late.get('max_ms') or math.nan, late.get('baseline_ms') or math.nan))}"
        " | "
        f"{late.get('all_deleted_after_s', math.nan):.1f} s after the first expiry (first poll) |",
    ]
    if late.get("error"):
        lines.append(f"\n**{late['error']}**")
    if chart:
        lines += ["", f"![lateness]({chart})"]
    return lines + [""]


def mass_section(mass: dict[str, Any]) -> list[str]:
    lines = ["## 8. Mass expiry: claims in batches", ""]
    if not mass:
        return lines + ["Not measured in this run.", ""]
    lines += [
        f"{mass['due']:,} private datasets due at once (a blob file each) in a "
        f"{mass['due'] * 10:,}-row datasets table, deleted by the app's own code in child "
        "processes (no HTTP, no Redis): the embedded runner's sweep; two worker processes "
        "started at the same instant, each running the `expire_dataset` jobs of half the "
        "datasets ten at a time (an ARQ worker's `max_jobs`); one sweep capped at 500 "
        "deletions. Timed until every one is a tombstone with its receipt. Baseline, same "
        "run, same rows, on a copy: `SELECT` the due rows, `unlink` their files, one "
        "`DELETE ... WHERE id IN (...)` (`bench/mass_expiry.py`). The machine is shared "
        "(see the load average above): the times move with other people's work; the "
        "ratios less so, each baseline being measured beside its run.",
        "",
        "| runner | due | deleted | time | plain SQL + unlink, same rows | × baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in mass.get("runs", []):
        lines.append(
            f"| {r['runner']} | {r['due']} | {r['deleted']} | {r['seconds']:.2f} s | "
            f"{r['baseline_s'] * 1000:.0f} ms ({r['baseline_rows']} rows) | "
            f"{fmt_ratio(r['ratio'] or math.nan)} |"
        )
    lines += [f"\n**{e}**" for e in mass.get("errors", [])]
    return lines + [""]


def catalogue_section(cat: dict[str, Any], chart: str | None) -> list[str]:
    lines = ["## 7. Catalogue search and filters", ""]
    if not cat:
        return lines + ["Not measured in this run.", ""]
    built = cat.get("built", {})
    lines += [
        f"{built.get('models', 0):,} published models by {built.get('users', 0):,} users, "
        f"{built.get('tags', 0):,} tags, one published version each (base models skewed "
        "towards the first of the enum), written through SQL into a database migrated by the "
        "app, search documents as `storage.search.refresh` writes them, FTS5 index rebuilt "
        f"once ({cat.get('build_s', 0):.1f} s). Through a real serve: anonymous POSTs, a page "
        "of 20 (`id name downloadCount`, pageInfo), one after another after 2 warm-ups. "
        "Baseline: a hand-written SQL query for the same page through `sqlite3` on the same "
        "file.",
        "",
        "| listing | models on page | n | p50 ms | p95 ms | SQL p50 ms | SQL p95 ms "
        "| p50 × SQL | p95 × SQL | app statements |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in cat.get("rows", []):
        lines.append(
            f"| {row['label']} | {row['edges']} | {row['n']} | {ms(row['p50_ms'])} | "
            f"{ms(row['p95_ms'])} | {ms(row['sql_p50_ms'])} | {ms(row['sql_p95_ms'])} | "
            f"{fmt_ratio(ratio(row['p50_ms'], row['sql_p50_ms']))} | "
            f"{fmt_ratio(ratio(row['p95_ms'], row['sql_p95_ms']))} | {row.get('statements', '–')} |"
        )
    lines += ["", "The app's SQL per listing and its `EXPLAIN QUERY PLAN`:", ""]
    for row in cat.get("rows", []):
        for statement in row.get("app_sql", []):
            lines += [
                f"- **{row['key']}**: {'; '.join(statement['plan'])}",
                "",
                f"  ```sql\n  {statement['sql']}\n  ```",
            ]
    for error in cat.get("errors", []):
        lines.append(f"- **error**: {error}")
    if chart:
        lines += ["", f"![catalogue]({chart})"]
    return lines + [""]


def write(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    front = results.get("front") or {}
    charts = []
    for by in ("page", "concurrency"):
        try:
            name = chart_front(front.get("loads", []), out, by=by)
        except Exception as exc:  # noqa: BLE001 - a chart never sinks the report
            results.setdefault("notes", []).append(f"chart front {by}: {exc}")
            name = None
        if name:
            charts.append(name)
    tr_chart = chart_transfers((results.get("transfers") or {}).get("rows", []), out)
    sw_chart = chart_sweep((results.get("sweep") or {}).get("sizes", []), out)
    late_chart = chart_lateness(results.get("lateness") or {}, out)
    cat = results.get("catalogue") or {}
    cat_chart = chart_catalogue(cat.get("rows", []), (cat.get("built") or {}).get("models", 0), out)
    m = results["machine"]
    lines = [
        "# lorashelf benchmarks",
        "",
        f"Generated by `{results['command']}` on {results['date']} in "
        f"{results['elapsed_s'] / 60:.1f} minutes (regenerated on every run; the raw numbers "
        "are in `results.json`). App code measured: "
        f"`{results['git']}`.",
        "",
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['cpu_model']} (`/proc/cpuinfo`), "
        f"{m.get('ram_gib', 0):.1f} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']}; load average (1 min) "
        f"{m['load_start']:.2f} at the start, {results['load_end']:.2f} at the end (other "
        "people's work shares these cores: requests/s and latencies move with it, "
        "instruction and statement counts do not). Tools: "
        + ", ".join(f"{k}: {v}" for k, v in m["tools"].items())
        + ".",
        "",
        "Every ratio is against a baseline measured in the same run. Rerun: "
        "`.venv/bin/python bench/run.py` (about 8-9 minutes on 2 cores; `--quick` for a "
        "smoke check of a minute or two; `--only front,sweep` for some sections).",
        "",
    ]
    carried = results.get("carried") or {}
    if carried:
        lines += [
            "Sections not run by this command, kept unchanged from an earlier run "
            "(each compares with baselines measured in its own run):",
            "",
        ]
        lines += [
            f"- {name}: measured {o.get('date')} on `{o.get('git')}`, {o.get('cpu')}"
            for name, o in carried.items()
        ] + [""]
    mode = results.get("mode_note")
    if mode:
        lines += [f"**{mode}**", ""]
    if results.get("reductions"):
        lines += ["Sizes and durations chosen to fit 10 minutes on 2 cores:", ""]
        lines += [f"- {item}" for item in results["reductions"]] + [""]
    lines += signed_in_targets(results)
    lines += targets(results)
    lines += headline(results) + [""]
    lines += front_section(front, charts)
    lines += ["## 2. The floor", "", "See section 1: every ratio there is against it.", ""]
    lines += sql_section(front)
    lines += transfers_section(results.get("transfers") or {}, tr_chart)
    lines += sweep_section(results.get("sweep") or {}, sw_chart)
    lines += pgplans_section(results.get("pgplans") or {})
    lines += lateness_section(results.get("lateness") or {}, late_chart)
    lines += catalogue_section(cat, cat_chart)
    if results.get("hotrow"):
        from hot_row import section as hot_row_section

        lines += hot_row_section(results["hotrow"])
    lines += mass_section(results.get("mass") or {})
    if results.get("proof"):
        from proof_run import section as proof_section

        lines += proof_section(results["proof"])
    lines += ["## Sections' durations and problems", ""]
    for name, seconds in results.get("durations", {}).items():
        lines.append(f"- {name}: {seconds:.0f} s")
    problems = list(results.get("errors", []))
    for key in ("front", "catalogue", "sweep", "mass"):
        problems += [f"{key}: {e}" for e in (results.get(key) or {}).get("errors", [])]
    problems += [f"proof: {p}" for p in (results.get("proof") or {}).get("problems", [])]
    if (results.get("lateness") or {}).get("error"):
        problems.append(f"lateness: {results['lateness']['error']}")
    problems += results.get("notes", [])
    if problems:
        lines += ["", "Problems:", ""] + [f"- {p}" for p in problems]
    else:
        lines += ["", "No problems."]
    text = "\n".join(lines) + "\n"
    target = out / "results.md"
    target.write_text(text)
    return target


__all__ = ["write", "median"]
