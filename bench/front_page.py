"""Sections 1-3: the front page and the model page, lorashelf against the floor.

Data: a fresh data dir, 60 published models seeded through the API of a real
``lorashelf serve`` (``seed.front_page``). Then, in one run:

1. byte-identity of lorashelf's and the floor's answers for every document (the run
   stops here, loudly, if one differs);
2. how lorashelf caches (probed): ETag / Cache-Control / Age on repeated GETs, and
   automatic persisted queries (hash-only GET);
3. HTTP load with wrk against both real servers, interleaved cell by cell (floor,
   uncached, cached), waiting after each run until the server is idle again;
4. in-process (``bench/inproc.py``): SQL statements and CPU time per request, then
   CPU instructions per request under callgrind, lorashelf and the floor in parallel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import documents as D
import httpx
import seed
from common import BASE_ENV, PYTHON, floor, log, lorashelf
from loadgen import Load, run_wrk

CACHE_HEADERS = ("cache-control", "etag", "age", "vary", "last-modified", "expires")


@dataclass
class Settings:
    page_sizes: tuple[int, ...] = (5, 20, 50)
    concurrencies: tuple[int, ...] = (1, 8, 32)
    files_concurrencies: tuple[int, ...] = (1,)  # the front page with weights files
    signed_in_concurrencies: tuple[int, ...] = (1, 32)  # signed-in front page (first: 50)
    model_concurrencies: tuple[int, ...] = (1, 32)  # the model page
    seconds: float = 3.0
    extras: bool = True
    instr_n: dict[str, int] = field(
        default_factory=lambda: {"front50": 4, "front50+files": 2, "model": 4, "front5": 4}
    )
    sql_n: int = 10


@dataclass
class CacheProbe:
    persisted_queries: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    note: str = ""


def cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def wait_idle(pid: int, timeout: float = 20.0) -> float:
    """Until the process stops using CPU (the requests left in its queue when a load run
    ends are finished before the next run starts); returns the seconds waited."""
    started = time.monotonic()
    last = cpu_ticks(pid)
    while time.monotonic() - started < timeout:
        time.sleep(0.15)
        now = cpu_ticks(pid)
        if now - last <= 1:  # at most 10 ms of CPU in 150 ms
            break
        last = now
    return time.monotonic() - started


def check_identity(lora_url: str, floor_url: str, docs: list[D.Doc]) -> list[str]:
    """Each document's answer from lorashelf (POST and GET) and from the floor must be
    the same bytes; returns the failures (empty when all match)."""
    failures = []
    with httpx.Client(timeout=60) as http:
        for doc in docs:
            floor_body = http.get(floor_url + doc.floor_path).content
            uncached = http.post(
                lora_url + "/graphql", content=doc.uncached_body(0), headers=D.UNCACHED_HEADERS
            )
            post = http.post(lora_url + "/graphql", content=doc.body, headers=D.CACHED_HEADERS)
            get = http.get(lora_url + doc.get_path(persisted=False))
            for how, response in (("POST+nonce", uncached), ("POST", post), ("GET", get)):
                if response.status_code != 200 or b'"errors"' in response.content:
                    failures.append(
                        f"{doc.key} {how}: HTTP {response.status_code} {response.text[:300]}"
                    )
                elif response.content != floor_body:
                    at = next(
                        (
                            i
                            for i, (a, b) in enumerate(
                                zip(response.content, floor_body, strict=False)
                            )
                            if a != b
                        ),
                        min(len(response.content), len(floor_body)),
                    )
                    failures.append(
                        f"{doc.key} {how}: differs from the floor at byte {at}: lorashelf "
                        f"…{response.content[max(0, at - 80) : at + 80]!r}… floor "
                        f"…{floor_body[max(0, at - 80) : at + 80]!r}…"
                    )
    return failures


def probe_cache(lora_url: str, doc: D.Doc) -> tuple[CacheProbe, str]:
    """How the server answers repeated anonymous GETs; returns the probe and the GET
    path the cached runs use."""
    probe = CacheProbe()
    with httpx.Client(timeout=60) as http:
        hashed = doc.get_path(persisted=True, with_query=False)
        first = http.get(lora_url + hashed)
        if first.status_code == 200 and b'"data"' in first.content:
            probe.persisted_queries = True
        elif b"persisted" in first.content.lower():  # PersistedQueryNotFound: register it
            http.get(lora_url + doc.get_path(persisted=True, with_query=True))
            again = http.get(lora_url + hashed)
            probe.persisted_queries = again.status_code == 200 and b'"data"' in again.content
        path = hashed if probe.persisted_queries else doc.get_path(persisted=False)
        responses = [http.get(lora_url + path) for _ in range(2)]
    last = responses[-1]
    probe.headers = {k: v for k, v in last.headers.items() if k.lower() in CACHE_HEADERS}
    probe.headers.update({k: v for k, v in last.headers.items() if k.lower().startswith("x-cache")})
    probe.etag = last.headers.get("etag")
    signs = []
    if probe.persisted_queries:
        signs.append("automatic persisted queries")
    if probe.etag:
        signs.append("ETag")
    if "cache-control" in probe.headers:
        signs.append(f"Cache-Control: {probe.headers['cache-control']}")
    probe.note = ", ".join(signs) if signs else "no cache headers, no persisted queries"
    return probe, path


def probe_signed_in(
    lora_url: str, full_url: str, doc: D.Doc, tokens: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """How signed-in viewers are answered: one who owns nothing private gets the
    anonymous answer (same bytes, with its ETag, kept private); one who owns a private
    dataset on the page gets their own (no ETag, more than the anonymous answer)."""
    problems = []
    tagged = doc.tagged("signed-in-probe")
    with httpx.Client(timeout=60) as http:
        anonymous = http.post(lora_url + "/graphql", content=tagged.body, headers=D.CACHED_HEADERS)
        shared = http.post(
            lora_url + "/graphql",
            content=tagged.body,
            headers={**D.CACHED_HEADERS, "authorization": f"Bearer {tokens['nothing']}"},
        )
        own = http.post(
            full_url + "/graphql",
            content=doc.uncached_body(0),
            headers={**D.UNCACHED_HEADERS, "authorization": f"Bearer {tokens['private']}"},
        )
    found = {
        "nothing_private": {k: shared.headers.get(k) for k in ("etag", "cache-control")},
        "owns_private": {k: own.headers.get(k) for k in ("etag", "cache-control")},
        "owner_bytes": len(own.content),
        "anonymous_bytes": len(anonymous.content),
    }
    if shared.content != anonymous.content or "etag" not in shared.headers:
        problems.append("a signed-in viewer who owns nothing private did not get the shared answer")
    if shared.headers.get("cache-control") != "private, no-store":
        problems.append(f"the shared answer is not private: {shared.headers.get('cache-control')}")
    if "etag" in own.headers or own.content == anonymous.content or b"PRIVATE" not in own.content:
        problems.append("the viewer who owns a private dataset did not get their own answer")
    return found, problems


def metric(url: str, name: str, **labels: str) -> float:
    """One value from ``/metrics`` (0 when absent)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def coalescing(lora_url: str, doc: D.Doc, window: float, n: int = 32) -> dict[str, Any]:
    """``n`` concurrent requests on an entry that has just expired: how many times the
    answer was computed (``lorashelf_response_cache_answers_total``)."""
    import concurrent.futures

    tagged = doc.tagged("coalescing")
    counter = "lorashelf_response_cache_answers_total"
    with httpx.Client(timeout=60) as http:
        http.post(lora_url + "/graphql", content=tagged.body, headers=D.CACHED_HEADERS)
    time.sleep(window + 0.5)  # the entry expires
    before = {o: metric(lora_url, counter, outcome=o) for o in ("computed", "coalesced", "hit")}
    barrier = threading.Barrier(n)

    def one(_: int) -> int:
        with httpx.Client(timeout=120) as http:
            barrier.wait()
            return http.post(
                lora_url + "/graphql", content=tagged.body, headers=D.CACHED_HEADERS
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(one, range(n)))
    after = {o: metric(lora_url, counter, outcome=o) for o in before}
    return {
        "requests": n,
        "statuses": sorted(set(statuses)),
        "computations": after["computed"] - before["computed"],
        "coalesced": after["coalesced"] - before["coalesced"],
        "hits": after["hit"] - before["hit"],
    }


def warm(
    url: str, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
) -> None:
    """One request just before a cached run. Each cached run asks with variables of its
    own (``benchNonce: "cached-c32"``...), so this request is a miss that stores a fresh
    answer, and the run (shorter than ``LORASHELF_PUBLIC_CACHE``, 10 s) measures repeats
    within one window: the cache does not coalesce misses, so an expiry inside a run
    would have every connection recompute the page at once."""
    with httpx.Client(timeout=120) as http:
        http.request(method, url + path, content=body, headers=headers or D.CACHED_HEADERS)


def load_cell(
    target: str,
    mode: str,
    doc: D.Doc,
    c: int,
    seconds: float,
    *,
    lora: Any,
    floor_app: Any,
    get_path: str,
    etag: str | None,
    full: Any = None,
    tokens: dict[str, str] | None = None,
) -> Load:
    load = Load(target=target, mode=mode, doc=doc.key, concurrency=c, seconds=seconds)
    tokens = tokens or {}
    if mode == "signed-in":  # a viewer who owns nothing private: the shared answer
        tagged = doc.tagged(f"signed-in-c{c}")
        headers = {**D.CACHED_HEADERS, "authorization": f"Bearer {tokens['nothing']}"}
        warm(lora.url, "POST", "/graphql", tagged.body, headers)
        run_wrk(
            lora.url,
            "/graphql",
            method="POST",
            body=tagged.body,
            headers=headers,
            concurrency=c,
            seconds=seconds,
            load=load,
        )
        wait_idle(lora.proc.pid)
    elif mode == "owner-full":  # owns a private dataset on the page; the cache off
        run_wrk(
            full.url,
            "/graphql",
            method="POST",
            body_parts=doc.nonce_parts(),
            headers={**D.UNCACHED_HEADERS, "authorization": f"Bearer {tokens['private']}"},
            concurrency=c,
            seconds=seconds,
            load=load,
        )
        wait_idle(full.proc.pid)
    elif mode == "floor":
        run_wrk(floor_app.url, doc.floor_path, concurrency=c, seconds=seconds, load=load)
        wait_idle(floor_app.pid)
    elif mode == "uncached":
        run_wrk(
            lora.url,
            "/graphql",
            method="POST",
            body_parts=doc.nonce_parts(),
            headers=D.UNCACHED_HEADERS,
            concurrency=c,
            seconds=seconds,
            load=load,
        )
        wait_idle(lora.proc.pid)
    elif mode == "cached":
        tagged = doc.tagged(f"cached-c{c}")
        warm(lora.url, "POST", "/graphql", tagged.body)
        run_wrk(
            lora.url,
            "/graphql",
            method="POST",
            body=tagged.body,
            headers=D.CACHED_HEADERS,
            concurrency=c,
            seconds=seconds,
            load=load,
        )
        wait_idle(lora.proc.pid)
    else:  # revalidated: a conditional GET with the ETag the server gave
        tagged = doc.tagged(f"revalidated-c{c}")
        persisted = "extensions=" in get_path
        path = tagged.get_path(persisted=persisted, with_query=not persisted)
        warm(lora.url, "GET", path, None)
        headers = {"if-none-match": etag} if etag else {}
        run_wrk(lora.url, path, headers=headers, concurrency=c, seconds=seconds, load=load)
        wait_idle(lora.proc.pid)
    return load


# In-process --------------------------------------------------------------------


def marker_library(workdir: Path) -> str | None:
    """Compile the callgrind client-request helper; None without gcc or the headers."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        return None
    from inproc import MARKER_C

    source = workdir / "cgmark.c"
    source.write_text(MARKER_C)
    library = workdir / "cgmark.so"
    done = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
    )
    return str(library) if done.returncode == 0 else None


def segments(
    docs: dict[str, D.Doc], modes: list[str], counts: dict[str, int], get_paths: dict[str, str]
) -> list[dict[str, Any]]:
    out = []
    for key, n in counts.items():
        doc = docs[key]
        for mode in modes:
            if mode == "uncached":
                prefix, suffix = doc.nonce_parts()
                out.append(
                    {
                        "name": f"{key}:uncached",
                        "method": "POST",
                        "path": "/graphql",
                        "headers": D.UNCACHED_HEADERS,
                        "body_parts": [prefix.decode(), suffix.decode()],
                        "n": n,
                    }
                )
            elif mode == "cached":
                out.append(
                    {
                        "name": f"{key}:cached",
                        "method": "POST",
                        "path": "/graphql",
                        "headers": D.CACHED_HEADERS,
                        "body": doc.tagged("cached-inproc").body.decode(),
                        "n": n,
                    }
                )
            else:
                out.append(
                    {"name": f"{key}:floor", "method": "GET", "path": doc.floor_path, "n": n}
                )
    return out


def signed_in_segment(doc: D.Doc, tokens: dict[str, str], n: int) -> dict[str, Any]:
    """The front page repeated by a signed-in viewer who owns nothing private."""
    return {
        "name": f"{doc.key}:signed-in",
        "method": "POST",
        "path": "/graphql",
        "headers": {**D.CACHED_HEADERS, "authorization": f"Bearer {tokens['nothing']}"},
        "body": doc.tagged("signed-in-inproc").body.decode(),
        "n": n,
    }


def owner_full_segment(doc: D.Doc, tokens: dict[str, str], n: int) -> dict[str, Any]:
    """The front page asked anew each time by a viewer who owns a private dataset on it
    (for a server with the response cache off)."""
    prefix, suffix = doc.nonce_parts()
    return {
        "name": f"{doc.key}:owner-full",
        "method": "POST",
        "path": "/graphql",
        "headers": {**D.UNCACHED_HEADERS, "authorization": f"Bearer {tokens['private']}"},
        "body_parts": [prefix.decode(), suffix.decode()],
        "n": n,
    }


def run_inproc(
    spec: dict[str, Any],
    workdir: Path,
    name: str,
    *,
    valgrind: str | None = None,
    timeout: float = 900,
) -> subprocess.Popen[bytes]:
    spec_path = workdir / f"{name}.spec.json"
    spec = {**spec, "out": str(workdir / f"{name}.out.json")}
    spec_path.write_text(json.dumps(spec))
    argv = [PYTHON, str(Path(__file__).parent / "inproc.py"), str(spec_path)]
    if valgrind:
        out_dir = workdir / f"{name}.callgrind"
        out_dir.mkdir(exist_ok=True)
        options = ["--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.%p"]
        if spec.get("markers") == "client":
            options.append("--instr-atstart=no")
        else:
            options.append("--dump-before=os_getppid")
        argv = [valgrind, *options, *argv]
    log_file = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed by the caller's wait
    proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    proc.log_file = log_file  # type: ignore[attr-defined]
    proc.deadline = time.monotonic() + timeout  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen[bytes], workdir: Path, name: str) -> dict[str, Any]:
    try:
        proc.wait(max(1.0, proc.deadline - time.monotonic()))  # type: ignore[attr-defined]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"{name}: in-process run timed out") from None
    finally:
        proc.log_file.close()  # type: ignore[attr-defined]
    if proc.returncode != 0:
        tail = (workdir / f"{name}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{name}: in-process run failed ({proc.returncode}):\n{tail}")
    data: dict[str, Any] = json.loads((workdir / f"{name}.out.json").read_text())
    return data


def instructions(
    workdir: Path, name: str, segment_names: list[str], markers: str
) -> dict[str, int]:
    """Instructions per segment from the callgrind dumps of one run."""
    out_dir = workdir / f"{name}.callgrind"
    dumps = []
    for path in out_dir.iterdir():
        text = path.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: (.*)$", text, re.M)
        totals = re.search(r"^totals: (\d+)", text, re.M)
        number = int(path.name.rsplit(".", 1)[1]) if path.name.count(".") >= 2 else 0
        dumps.append(
            (number, trigger.group(1) if trigger else "", int(totals.group(1)) if totals else 0)
        )
    dumps.sort()
    found: dict[str, int] = {}
    if markers == "client":
        for _, trigger, total in dumps:
            label = trigger.removeprefix("Client Request: ")
            if label in segment_names:
                found[label] = total
    else:  # a dump before each os.getppid(): segment i is dump 2i+2
        numbered = [d for d in dumps if d[0] > 0]
        for i, label in enumerate(segment_names):
            if 2 * i + 1 < len(numbered):
                found[label] = numbered[2 * i + 1][2]
    return found


# The section -------------------------------------------------------------------


def run(workdir: Path, settings: Settings) -> dict[str, Any]:
    result: dict[str, Any] = {"loads": [], "errors": []}
    wd = workdir / "front"
    wd.mkdir()
    data_dir = wd / "var"
    database = data_dir / "lorashelf.sqlite3"
    with lorashelf(data_dir, wd) as lora:
        started = time.monotonic()
        seeded = seed.front_page(lora.url)
        result["seed_s"] = time.monotonic() - started
        result["seed"] = {
            "models": len(seeded.models),
            "users": len(seeded.users),
            "public_datasets": seeded.public_datasets,
            "private_datasets": seeded.private_datasets,
        }
        log(f"front page: seeded {len(seeded.models)} models in {result['seed_s']:.1f}s")
        # creator0 owns only public objects; creator2 owns private datasets on the page
        tokens = {"nothing": seeded.users[0], "private": seeded.users[2]}
        docs = {d.key: d for d in [D.front(n) for n in settings.page_sizes]}
        docs.setdefault("front50", D.front(50))
        docs["front50+files"] = D.front(50, files=True)
        docs["model"] = D.model_page(seeded.models[len(seeded.models) // 2])
        result["docs"] = {k: {"label": d.label, "query": d.query} for k, d in docs.items()}
        with (
            floor(database, wd) as floor_app,
            lorashelf(data_dir, wd, LORASHELF_PUBLIC_CACHE="0") as full,
        ):
            failures = check_identity(lora.url, floor_app.url, list(docs.values()))
            result["identity"] = {"checked": sorted(docs), "failures": failures}
            if failures:
                raise RuntimeError(
                    "lorashelf and the floor answer different bytes:\n" + "\n".join(failures)
                )
            log(f"front page: answers byte-identical to the floor for {len(docs)} documents")
            result["signed_in_probe"], problems = probe_signed_in(
                lora.url, full.url, docs["front50"], tokens
            )
            result["errors"] += problems
            probes: dict[str, Any] = {}
            get_paths: dict[str, str] = {}
            for key, doc in docs.items():
                probe, get_paths[key] = probe_cache(lora.url, doc)
                probes[key] = probe.__dict__
            result["cache_probe"] = probes
            result["get_paths"] = get_paths
            etag = probes["front50"]["etag"]
            modes = ["floor", "uncached", "cached"]
            cells: list[tuple[D.Doc, int]] = [
                (docs[f"front{n}"], c) for n in settings.page_sizes for c in settings.concurrencies
            ]
            if settings.extras:
                cells += [(docs["front50+files"], c) for c in settings.files_concurrencies]
                cells += [(docs["model"], c) for c in settings.model_concurrencies]
            single: dict[tuple[str, str], float] = {}  # rps at concurrency 1
            for doc, c in cells:
                cell_modes = modes + (["revalidated"] if etag and doc.key == "front50" else [])
                if doc.key == "front50" and c in settings.signed_in_concurrencies:
                    cell_modes += ["signed-in", "owner-full"]
                for mode in cell_modes:
                    target = "floor" if mode == "floor" else "lorashelf"
                    # long enough for every connection to get about three answers
                    rps1 = single.get((doc.key, mode))
                    seconds = settings.seconds
                    if c > 1 and rps1:
                        seconds = min(4 * settings.seconds, max(seconds, 3 * c / rps1))
                    try:
                        load = load_cell(
                            target,
                            mode,
                            doc,
                            c,
                            seconds,
                            lora=lora,
                            floor_app=floor_app,
                            get_path=get_paths[doc.key],
                            etag=etag,
                            full=full,
                            tokens=tokens,
                        )
                    except Exception as exc:  # noqa: BLE001 - record and go on
                        result["errors"].append(f"wrk {doc.key} c={c} {mode}: {exc}")
                        continue
                    if c == 1 and load.rps:
                        single[(doc.key, mode)] = load.rps
                    if not load.requests:
                        result["errors"].append(
                            f"wrk {doc.key} c={c} {mode}: no answer within {seconds:.1f}s"
                        )
                    result["loads"].append(load.as_dict())
                log(
                    f"front page: {doc.key} c={c}: "
                    + ", ".join(
                        f"{ld['mode']} {ld['rps']:.0f} rps"
                        for ld in result["loads"][-len(cell_modes) :]
                    )
                )
            window = 10.0  # LORASHELF_PUBLIC_CACHE's default, which this server runs with
            result["coalescing"] = coalescing(lora.url, docs["front50"], window)
            log(f"front page: 32 concurrent misses: {result['coalescing']}")
    # servers stopped: the in-process runs have both cores
    env = {**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir)}
    sql_docs = {k: settings.sql_n for k in docs}
    lora_spec = {
        "target": "lorashelf",
        "env": env,
        "warmup": 3,
        "count_sql": True,
        "segments": segments(docs, ["uncached", "cached"], sql_docs, get_paths),
    }
    lora_spec["segments"].append(signed_in_segment(docs["front50"], tokens, settings.sql_n))
    full_spec = {
        "target": "lorashelf",
        "env": {**env, "LORASHELF_PUBLIC_CACHE": "0"},
        "warmup": 3,
        "count_sql": True,
        "segments": [owner_full_segment(docs["front50"], tokens, settings.sql_n)],
    }
    floor_spec = {
        "target": "floor",
        "database": str(database),
        "warmup": 3,
        "count_sql": True,
        "segments": segments(docs, ["floor"], sql_docs, get_paths),
    }
    sql_runs = {}
    for name, spec in (
        ("sql-lorashelf", lora_spec),
        ("sql-lorashelf-full", full_spec),
        ("sql-floor", floor_spec),
    ):
        sql_runs[name] = finish(run_inproc(spec, wd, name), wd, name)
    result["inproc"] = {
        s["name"]: {k: v for k, v in s.items() if k != "sql"}
        for run in sql_runs.values()
        for s in run["segments"]
    }
    result["sql_text"] = {
        s["name"]: s["sql"] for s in sql_runs["sql-lorashelf"]["segments"] if s["sql"]
    }
    for name, seg in result["inproc"].items():
        if name.endswith(":uncached") and seg["sql_per_request"] == 0:
            result["errors"].append(
                f"{name}: no SQL statement ran for 'uncached' requests: they were answered "
                "from a cache, so the uncached numbers are not uncached"
            )
    log("front page: SQL statements and CPU per request counted in-process")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        result["instructions_note"] = "valgrind is not installed: no instruction counts"
        return result
    library = marker_library(wd)
    markers = "client" if library else "getppid"
    result["instructions_method"] = (
        "callgrind client requests (instrumentation on for the measured requests only)"
        if library
        else "callgrind --dump-before=os_getppid (gcc or valgrind headers missing)"
    )
    counts = {k: n for k, n in settings.instr_n.items() if k in docs}
    # A cached GET that runs as much SQL as an uncached POST runs the same code: counting
    # its instructions again would only spend a minute. Counted when a cache answers.
    inproc = result["inproc"]
    cached_differs = [
        k
        for k in counts
        if inproc.get(f"{k}:cached", {}).get("sql_per_request")
        != inproc.get(f"{k}:uncached", {}).get("sql_per_request")
    ]
    lora_modes = ["uncached", "cached"] if cached_differs else ["uncached"]
    if not cached_differs:
        result["instructions_cached_note"] = (
            "cached GETs ran the same SQL statements as uncached POSTs (no response cache "
            "answered them), so their instructions were not counted separately"
        )
    body50 = json.loads(Path(wd / "sql-lorashelf.out.json").read_text())
    null_bytes = next(
        (s["bytes"] for s in body50["segments"] if s["name"] == "front50:uncached"), 25000
    )
    specs = {
        "instr-lorashelf": {
            "target": "lorashelf",
            # under callgrind a request takes seconds: an hour's window keeps the cached
            # segments on the hits they measure
            "env": {**env, "LORASHELF_PUBLIC_CACHE": "3600"},
            "warmup": 3,
            "markers": markers,
            "marker_lib": library,
            "segments": segments(docs, lora_modes, counts, get_paths)
            + [signed_in_segment(docs["front50"], tokens, counts.get("front50", 2))],
        },
        "instr-lorashelf-full": {
            "target": "lorashelf",
            "env": {**env, "LORASHELF_PUBLIC_CACHE": "0"},
            "warmup": 3,
            "markers": markers,
            "marker_lib": library,
            "segments": [owner_full_segment(docs["front50"], tokens, counts.get("front50", 2))],
        },
        "instr-floor": {
            "target": "floor",
            "database": str(database),
            "warmup": 3,
            "markers": markers,
            "marker_lib": library,
            "segments": segments(docs, ["floor"], counts, get_paths),
        },
        "instr-null": {
            "target": "null",
            "null_body": "x" * null_bytes,
            "warmup": 3,
            "markers": markers,
            "marker_lib": library,
            "segments": [
                {"name": "null:get", "method": "GET", "path": "/front?first=50", "n": 4},
                {
                    "name": "null:post",
                    "method": "POST",
                    "path": "/graphql",
                    "headers": D.UNCACHED_HEADERS,
                    "body": docs["front50"].body.decode(),
                    "n": 4,
                },
            ],
        },
    }
    started = time.monotonic()
    procs = {name: run_inproc(spec, wd, name, valgrind=valgrind) for name, spec in specs.items()}
    per_request: dict[str, float] = {}
    for name, proc in procs.items():
        try:
            finish(proc, wd, name)
        except RuntimeError as exc:
            result["errors"].append(str(exc))
            continue
        names = [s["name"] for s in specs[name]["segments"]]
        ns = {s["name"]: s["n"] for s in specs[name]["segments"]}
        for label, total in instructions(wd, name, names, markers).items():
            per_request[label] = total / ns[label]
    result["instructions"] = per_request
    result["instructions_s"] = time.monotonic() - started
    log(f"front page: instructions counted under callgrind in {result['instructions_s']:.0f}s")
    return result
