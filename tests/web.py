"""The web app's build (web/dist), for the tests that serve it."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tests.processes import ROOT

WEB = ROOT / "web"
DIST = WEB / "dist"


def built_app() -> Path:
    """web/dist, built by scripts/build-web unless the build there is up to date.

    Fails (never skips) without Node.js and npm, saying what to install.
    """
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-web")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode == 3:
        pytest.fail(f"{done.stderr.strip()} (https://nodejs.org; scripts/test then builds it)")
    assert done.returncode == 0, f"scripts/build-web failed:\n{done.stdout}\n{done.stderr}"
    assert (DIST / "index.html").exists(), "the build wrote no index.html"
    return DIST


def gzipped_bundle(dist: Path) -> dict[str, int]:
    """Every file of the build, gzipped (level 9, as a server would send it)."""
    return {
        path.relative_to(dist).as_posix(): len(gzip.compress(path.read_bytes(), 9))
        for path in sorted(dist.rglob("*"))
        if path.is_file()
    }
