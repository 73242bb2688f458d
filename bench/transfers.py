"""Section 4: uploading and downloading big private datasets through a real serve.

For each size (100 MB, and 1 GiB when the disk has room): a zip archive with one
STORED entry of random bytes (nothing to compress, so the bytes on the wire are the
bytes on disk) is written next to the server's data dir, then

- PUT to a signed upload URL with ``curl -T`` (lorashelf hashes, writes, fsyncs, then
  checks the archive: every entry read back and CRC-checked, before it answers);
- GET from the owner's signed download URL with ``curl -o`` to the same disk;

timed by wall clock around curl, with the serve process's peak RSS above its idle RSS
during each (VmHWM reset through ``/proc/<pid>/clear_refs`` before, read after, and
VmRSS sampled every 20 ms). The baselines are measured in the same run on the same
file and disk: ``cp`` followed by an fsync of the copy (what the upload must do at
least: read, write, make durable) and plain ``cp`` (what a download to disk does).

Side by side, the same transfers through a serve of the release before blobs were
sealed (``PLAINTEXT_REF``, extracted from git and run on the same virtualenv): the
sealed serve's rates over those are what encryption costs. The two servers take turns
on each size (plaintext, sealed, plaintext, sealed...), so a change in the machine's
load falls on both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from common import PASSWORD, ROOT, Api, PeakRss, log, lorashelf
from seed import CREATE_MODEL, CREATE_VERSION, SIGN_UP, START_DATASET

MB = 1000**2
GIB = 1024**3
PLAINTEXT_REF = "789fdf5"  # main before blobs were sealed: "today's" transfer rates
CHUNK = 8 * 1024 * 1024
DATASET_URL = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { status sizeBytes sha256 "
    "downloadUrl } } }"
)


def random_zip(path: Path, payload: int) -> str:
    """A zip with one stored entry of ``payload`` pseudo-random bytes (numpy's PCG64:
    uncompressible, twice as fast as os.urandom here); returns the file's sha256."""
    try:
        import numpy as np

        noise = np.random.default_rng(payload).bytes
    except ImportError:
        noise = os.urandom
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
        archive.open("data/random.bin", "w", force_zip64=payload >= 2**31) as entry,
    ):
        left = payload
        while left:
            chunk = noise(min(CHUNK, left))
            entry.write(chunk)
            left -= len(chunk)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # its write-back must not overlap the measurements
    finally:
        os.close(fd)
    return sha256_of(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def timed_cp(source: Path, target: Path, *, fsync: bool) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def curl(argv: list[str], timeout: float) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        ["curl", "-sS", "-H", "Expect:", "-w", "%{http_code}", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    code = int(done.stdout.strip()[-3:] or 0) if done.stdout.strip() else 0
    return code, elapsed, done.stderr.strip()


def needed_bytes(payload: int) -> int:
    # the source, the stored blob (its temp file is renamed), the downloaded copy and
    # the cp copy, plus lorashelf's LORASHELF_MIN_FREE_BYTES (512 MiB) and a margin
    return 4 * payload + 1536 * 1024**2


def plaintext_tree(wd: Path, ref: str) -> Path | None:
    """The packages of ``ref`` (the release that stored plaintext), to run beside this one."""
    target = wd / f"plaintext-{ref}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "graph", "storage", "jobs"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        log(f"transfers: no plaintext baseline ({archive.stderr.decode().strip()})")
        return None
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def signed_in(http: httpx.Client, url: str) -> Api:
    api = Api(http, url)
    api.token = api.mutate("signUp", SIGN_UP, {"i": {"username": "mover", "password": PASSWORD}})[
        "token"
    ]
    return api


def run(
    workdir: Path, *, sizes: list[tuple[str, int]], plaintext_ref: str | None = PLAINTEXT_REF
) -> dict[str, Any]:
    wd = workdir / "transfers"
    wd.mkdir()
    free = shutil.disk_usage(wd).free
    result: dict[str, Any] = {
        "rows": [],
        "skipped": [],
        "free_gib": free / GIB,
        "plaintext_ref": plaintext_ref,
    }
    planned = []
    for label, payload in sizes:
        if needed_bytes(payload) > shutil.disk_usage(wd).free:
            result["skipped"].append(
                f"{label}: the disk has {free / GIB:.1f} GiB free, the transfer needs about "
                f"{needed_bytes(payload) / GIB:.1f} GiB (source, blob, download, cp copy, "
                "lorashelf's free-space floor)"
            )
        else:
            planned.append((label, payload))
    env = {"LORASHELF_MAX_DATASET_BYTES": "2GiB"}
    tree = plaintext_tree(wd, plaintext_ref) if plaintext_ref else None
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=120))
        sealed_server = stack.enter_context(lorashelf(wd / "var", wd, **env))
        servers = {"sealed": (signed_in(http, sealed_server.url), sealed_server.proc.pid)}
        if tree is not None:
            plain_server = stack.enter_context(
                lorashelf(wd / "var-plaintext", wd, PYTHONPATH=str(tree), **env)
            )
            servers["plaintext"] = (signed_in(http, plain_server.url), plain_server.proc.pid)
        for label, payload in planned:
            source = wd / f"{label}.zip"
            started = time.monotonic()
            digest = random_zip(source, payload)
            size = source.stat().st_size
            log(
                f"transfers: wrote {label} ({size / MB:,.0f} MB) in "
                f"{time.monotonic() - started:.1f}s"
            )
            repeats = 3  # the median of three, each server taking turns
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for i in range(repeats):
                for name in sorted(servers, reverse=True):  # plaintext first, then sealed
                    api, pid = servers[name]
                    runs[name].append(
                        one_transfer(api, pid, wd, source, digest, f"{label} {name} #{i + 1}")
                    )
            # how much of the upload is the archive check (every entry read back, CRC-32)
            from storage.formats.archives.check import check_archive

            checked = time.perf_counter()
            check_archive(source, max_ratio=100)
            archive_check_s = time.perf_counter() - checked
            source.unlink()
            row = summarise(label, size, runs["sealed"], archive_check_s)
            if "plaintext" in runs:
                plain = summarise(label, size, runs["plaintext"], archive_check_s)
                row["plaintext"] = plain
                row["upload_vs_plaintext"] = row["upload_mb_s"] / plain["upload_mb_s"]
                row["download_vs_plaintext"] = row["download_mb_s"] / plain["download_mb_s"]
            result["rows"].append(row)
            log(
                f"transfers: {label}: PUT {row['upload_mb_s']:.0f} MB/s (cp+fsync "
                f"{row['cp_fsync_mb_s']:.0f}), GET {row['download_mb_s']:.0f} MB/s (cp "
                f"{row['cp_mb_s']:.0f}); RSS +{row['upload_rss_above_idle_mib']:.0f}/"
                f"+{row['download_rss_above_idle_mib']:.0f} MiB"
                + (
                    f"; vs plaintext: PUT {row['upload_vs_plaintext']:.2f}x, GET "
                    f"{row['download_vs_plaintext']:.2f}x"
                    if "plaintext" in row
                    else ""
                )
            )
    return result


def summarise(
    label: str, size: int, runs: list[dict[str, Any]], archive_check_s: float
) -> dict[str, Any]:
    def mid(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    row = {
        "label": label,
        "bytes": size,
        "repeats": len(runs),
        "upload_s": mid("upload_s"),
        "download_s": mid("download_s"),
        "cp_fsync_s": mid("cp_fsync_s"),
        "cp_s": mid("cp_s"),
        "upload_rss_idle_mib": runs[0]["upload_rss_idle_mib"],
        "download_rss_idle_mib": runs[0]["download_rss_idle_mib"],
        "upload_rss_above_idle_mib": max(r["upload_rss_above_idle_mib"] for r in runs),
        "download_rss_above_idle_mib": max(r["download_rss_above_idle_mib"] for r in runs),
        "archive_check_s": archive_check_s,
        "rss_method": runs[0]["rss_method"],
    }
    for key in ("upload", "download", "cp_fsync", "cp"):
        row[f"{key}_mb_s"] = size / MB / row[f"{key}_s"]
    return row


def one_transfer(
    api: Api, pid: int, wd: Path, source: Path, digest: str, label: str
) -> dict[str, Any]:
    """Upload ``source`` as a new private dataset, download it back, and time ``cp``."""
    size = source.stat().st_size
    model = api.mutate("createModel", CREATE_MODEL, {"i": {"name": f"big {label}"}})
    version = api.mutate(
        "createModelVersion",
        CREATE_VERSION,
        {"i": {"modelId": model["model"]["id"], "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    started_upload = api.mutate(
        "startDatasetUpload",
        START_DATASET,
        {
            "i": {
                "versionId": version,
                "filename": "big.zip",
                "sizeBytes": size,
                "visibility": "PRIVATE",
            }
        },
    )
    timeout = 60 + size / (5 * MB)  # at least 5 MB/s
    with PeakRss(pid) as up_rss:
        code, up_s, err = curl(
            ["-T", str(source), "-o", str(wd / "put.json"), started_upload["uploadUrl"]],
            timeout,
        )
    if code != 200:
        body = (wd / "put.json").read_text(errors="replace")[:300]
        raise RuntimeError(f"upload of {label}: HTTP {code} {err} {body}")
    cp_sync_s = timed_cp(source, wd / "cp-copy", fsync=True)
    node = api.gql(DATASET_URL, {"id": started_upload["dataset"]["id"]})["node"]
    if node["sha256"] != digest or node["sizeBytes"] != size:
        raise RuntimeError(f"{label}: the server recorded {node}, expected {digest}")
    target = wd / "download.zip"
    with PeakRss(pid) as down_rss:
        code, down_s, err = curl(["-o", str(target), node["downloadUrl"]], timeout)
    if code != 200:
        raise RuntimeError(f"download of {label}: HTTP {code} {err}")
    if target.stat().st_size != size or sha256_of(target) != digest:
        raise RuntimeError(f"download of {label}: the bytes differ from the upload")
    target.unlink()
    cp_s = timed_cp(source, wd / "cp-copy", fsync=False)
    api.mutate(  # its bytes go, so the disk holds one copy at a time
        "deleteDataset",
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) { userErrors { code } } }",
        {"i": {"datasetId": started_upload["dataset"]["id"]}},
    )
    return {
        "upload_s": up_s,
        "download_s": down_s,
        "cp_fsync_s": cp_sync_s,
        "cp_s": cp_s,
        "upload_rss_idle_mib": up_rss.idle_kib / 1024,
        "upload_rss_above_idle_mib": up_rss.above_idle_mib,
        "download_rss_idle_mib": down_rss.idle_kib / 1024,
        "download_rss_above_idle_mib": down_rss.above_idle_mib,
        "rss_method": "VmHWM reset + VmRSS sampled" if up_rss.hwm_kib else "VmRSS sampled",
    }
