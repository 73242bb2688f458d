"""Releases for the tests: which one is the last, what it held, and earlier lorashelf
trees built into virtualenvs of their own and run as real processes.

The last release is the newest ``vX.Y.Z`` tag reachable from HEAD. A clone without
tags falls back to ``docs/releases.txt`` (each release and a commit holding exactly its
migrations), whose commits must be in the history. Neither: :class:`ReleaseUnknown`,
which fails the tests that need it (they never skip).

An earlier tree is ``git archive``d and ``pip install``ed into a virtualenv cached per
commit (under ``$LORASHELF_RELEASES_CACHE``, else the temporary directory), so the
SQLite run and the PostgreSQL run of the suite build it once.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import free_port, log_tail, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "docs" / "releases.txt"
MIGRATIONS = "storage/migrations"
TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


class ReleaseUnknown(AssertionError):
    """The last release cannot be found: no tag, no usable record."""


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["git", *args], done.stdout, done.stderr
        )
    return done.stdout


def git_bytes(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def has_commit(commit: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def commit_of(revision: str) -> str:
    """The full id of a commit (raises if this clone does not have it)."""
    if not has_commit(revision):
        raise ReleaseUnknown(
            f"commit {revision} is not in this clone: the upgrade tests need the full "
            "history (git fetch --unshallow --tags)"
        )
    return git("rev-parse", f"{revision}^{{commit}}").strip()


def is_ancestor(commit: str, of: str = "HEAD") -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, of],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def version_key(name: str) -> tuple[int, int, int]:
    match = TAG.match(name)
    assert match, f"{name!r} is not a release name (vX.Y.Z)"
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


@dataclass(frozen=True)
class Release:
    name: str  # vX.Y.Z
    commit: str  # the commit whose files the release has (its tag's, or the record's)
    source: str  # "tag" or "record"

    @property
    def version(self) -> str:
        return self.name[1:]


def tags() -> list[Release]:
    """Every release tag reachable from HEAD, newest first."""
    names = [n for n in git("tag", "--list", "v*", "--merged", "HEAD").split() if TAG.match(n)]
    names.sort(key=version_key, reverse=True)
    return [Release(name, commit_of(name), "tag") for name in names]


def recorded() -> list[Release]:
    """The releases in docs/releases.txt (``vX.Y.Z <commit> <date>`` lines), newest first."""
    found = []
    for line in RECORD.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, commit, *_ = line.split()
        found.append(Release(name, commit, "record"))
    found.sort(key=lambda r: version_key(r.name), reverse=True)
    return found


def last_release() -> Release:
    """The newest release reachable from HEAD: by tag; else by docs/releases.txt."""
    tagged = tags()
    if tagged:
        return tagged[0]
    for release in recorded():
        if has_commit(release.commit) and is_ancestor(release.commit):
            return release
    raise ReleaseUnknown(
        "no release found: no vX.Y.Z tag is reachable from HEAD and no commit recorded in "
        f"{os.path.relpath(RECORD, ROOT)} is in this clone's history (fetch the tags: "
        "git fetch --tags; or the history: git fetch --unshallow)"
    )


def released_files(release: Release, under: str = MIGRATIONS) -> dict[str, bytes]:
    """Every file under ``under`` as the release has it: path -> bytes."""
    paths = git("ls-tree", "-r", "--name-only", release.commit, "--", under).split()
    return {path: git_bytes("show", f"{release.commit}:{path}") for path in paths}


# Earlier trees in virtualenvs of their own -------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("LORASHELF_RELEASES_CACHE") or tempfile.gettempdir()
    directory = Path(base) / "lorashelf-releases"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass(frozen=True)
class Build:
    """An earlier lorashelf tree and the virtualenv it is installed in."""

    commit: str
    source: Path  # the tree as `git archive` gives it
    venv: Path

    @property
    def lorashelf(self) -> Path:
        return self.venv / "bin" / "lorashelf"

    def schema(self) -> str:
        """The GraphQL schema that tree committed (what its API offers)."""
        return (self.source / "schema.graphql").read_text()


def build(commit: str) -> Build:
    """The tree of ``commit`` installed into its own virtualenv (built once per commit,
    then reused: by the other backend's run too)."""
    directory = cache_dir() / commit
    done = Build(commit, directory / "src", directory / "venv")
    with open(cache_dir() / f"{commit}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per commit, others wait for it
        if (directory / "ready").exists():
            return done
        shutil.rmtree(directory, ignore_errors=True)
        done.source.mkdir(parents=True)
        archive = git_bytes("archive", "--format=tar", commit)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(done.source, filter="data")
        subprocess.run([sys.executable, "-m", "venv", str(done.venv)], check=True)
        installed = subprocess.run(
            [
                str(done.venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                str(done.source),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"pip install of {commit} failed:\n{installed.stderr[-3000:]}")
        (directory / "ready").write_text("built\n")
        return done


def _old_env(env: Mapping[str, str]) -> dict[str, str]:
    """An earlier release's environment: ours minus LORASHELF_* and PYTHONPATH (it must
    import its own code, never this tree's), plus ``env``."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("LORASHELF_") and k != "PYTHONPATH"
    }
    return {**inherited, **env}


def run_old(
    old: Build, *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One command of the earlier release, to completion."""
    return subprocess.run(
        [str(old.lorashelf), *args],
        cwd=cwd,
        env=_old_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class OldServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serve_old(old: Build, env: Mapping[str, str], cwd: Path) -> Iterator[OldServer]:
    """The earlier release's `lorashelf serve` until the block ends (SIGTERM then)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = cwd / f"old-serve-{old.commit[:7]}-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(old.lorashelf), "serve", "--port", str(port)],
            cwd=cwd,
            env=_old_env({"LORASHELF_PUBLIC_URL": url, **env}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(url, proc, timeout=60, log=log)
        yield OldServer(url, proc, log)
    except BaseException:
        print(f"--- {log.name} (last lines) ---\n{log_tail(log)}")
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
