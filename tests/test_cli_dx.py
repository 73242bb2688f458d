"""The command line a new developer meets: the start-up banner of a real `lorashelf
serve`, `/` for a browser, --help, `lorashelf config`, and configuration that is refused
or warned about instead of silently never working."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx

from tests.processes import ROOT, free_port, lorashelf, serve

APP = "http://localhost:5173"


def banner_of(log: str) -> list[str]:
    """The banner block: its first line and the indented lines after it."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"lorashelf \S+ starting$", line)]
    assert len(starts) == 1, log
    block = [lines[starts[0]]]
    for line in lines[starts[0] + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


def test_serve_prints_one_banner_that_says_where_everything_is(tmp_path: Path) -> None:
    # given a configuration a front-end developer might use
    data_dir = tmp_path / "var"
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": "1h",
        "LORASHELF_REMINDERS": "10m",
        "LORASHELF_CORS_ORIGINS": APP,
        "LORASHELF_INTROSPECTION": "false",
        # the embedded default's database, whichever backend the suite runs on
        "LORASHELF_DATABASE_URL": f"sqlite://{data_dir / 'lorashelf.sqlite3'}",
    }
    # when lorashelf serve starts
    with serve(env, cwd=tmp_path) as server:
        started = server.log.read_text()
        # then one block tells where everything is
        block = "\n".join(banner_of(started))
        # the version it names is the one declared in pyproject.toml
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert banner_of(started)[0] == f"lorashelf {declared} starting"
        assert f"GraphQL:       {server.url}/graphql" in block
        assert "GraphiQL:" in block
        assert f"data dir:      {data_dir}" in block
        assert f"database:      sqlite://{data_dir / 'lorashelf.sqlite3'}" in block
        assert f"blob store:    file://{data_dir / 'blobs'}" in block
        assert "runner:        embedded" in block
        assert "retention:     private datasets 1 hour after their version is published" in block
        assert "reminders:     10 minutes before deletion" in block
        assert f"CORS origins:  {APP}" in block
        assert "introspection: off" in block
        # and starting does not announce a shutdown
        assert "Tortoise-ORM shutdown" not in started
        # and / sends a browser to GraphiQL, and tells anything else where the API is
        page = httpx.get(f"{server.url}/", headers={"accept": "text/html"})
        other = httpx.get(f"{server.url}/", headers={"accept": "application/json"})
    assert page.status_code == 307
    assert page.headers["location"] == f"{server.url}/graphql"
    assert other.status_code == 404
    assert other.json()["error"] == "NOT_FOUND" and "/graphql" in other.json()["message"]


def test_serve_refuses_reminders_at_or_beyond_the_window(tmp_path: Path) -> None:
    # given a reminder as long as the window: it could never come before the deletion
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_PRIVATE_RETENTION": "1d",
        "LORASHELF_REMINDERS": "7d,1d",
    }
    # when lorashelf serve starts
    result = lorashelf("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    # then it stops at once with one line that names the variables
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lorashelf: configuration error: LORASHELF_REMINDERS: a reminder 7 days before "
        "deletion is at or beyond the retention window (LORASHELF_PRIVATE_RETENTION=1 day); "
        "every reminder must be shorter than the window"
    ]


def test_a_misspelled_variable_is_warned_about_with_the_closest_name(tmp_path: Path) -> None:
    # given two LORASHELF_* variables lorashelf does not know, one a misspelling
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_REMIDNERS": "1d",
        "LORASHELF_ZZZ": "1",
    }
    # when the configuration is read
    result = lorashelf("config", env=env, cwd=tmp_path)
    # then each gets one warning line, the misspelling with the name it was meant to be
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "not a lorashelf setting" in line]
    assert warnings == [
        "lorashelf: warning: LORASHELF_REMIDNERS is not a lorashelf setting and is ignored "
        "(did you mean LORASHELF_REMINDERS?)",
        "lorashelf: warning: LORASHELF_ZZZ is not a lorashelf setting and is ignored",
    ]


def test_config_prints_every_variable_its_value_and_source_with_secrets_masked(
    tmp_path: Path,
) -> None:
    # given a few variables set, two of them URLs with passwords, and a secret key
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_DATABASE_URL": "postgres://app:hunter2-db@db.internal/lorashelf",
        "LORASHELF_REDIS_URL": "redis://:hunter2-redis@cache:6379/0",
        "LORASHELF_SECRET_KEY": "hunter2-secret-key-value",
        "LORASHELF_CORS_ORIGINS": APP,
    }
    # when lorashelf config runs
    result = lorashelf("config", env=env, cwd=tmp_path)
    # then every variable of the README's tables is listed with its value and source
    assert result.returncode == 0, result.stderr
    rows = {
        parts[0]: (parts[1], parts[2])
        for parts in (line.split(None, 2) for line in result.stdout.splitlines())
    }
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert set(rows) == set(re.findall(r"^\| `(LORASHELF_[A-Z_]+)`", readme, re.M))
    assert rows["LORASHELF_DATABASE_URL"] == (
        "env",
        "postgres://app:********@db.internal/lorashelf",
    )
    assert rows["LORASHELF_REDIS_URL"] == ("env", "redis://:********@cache:6379/0")
    assert rows["LORASHELF_SECRET_KEY"] == ("env", "********")
    assert rows["LORASHELF_CORS_ORIGINS"] == ("env", APP)
    assert rows["LORASHELF_PRIVATE_RETENTION"] == ("default", "30d")
    assert rows["LORASHELF_BLOB_URL"] == ("default", f"file://{tmp_path / 'var' / 'blobs'}")
    # and no secret appears anywhere
    assert "hunter2" not in result.stdout + result.stderr


def test_serve_help_lists_its_flags_and_points_to_the_environment(tmp_path: Path) -> None:
    # when
    result = lorashelf("serve", "--help", env={}, cwd=tmp_path)
    # then each flag has help text, and the environment variables are pointed to
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--host HOST address to listen on (default: 127.0.0.1" in text
    assert "--port PORT port to listen on (default: 8000)" in text
    assert "LORASHELF_* environment variables" in text
    assert "'Configuration' in README.md" in text and "lorashelf config" in text


def test_top_level_help_shows_no_restructured_text(tmp_path: Path) -> None:
    # when
    result = lorashelf("--help", env={}, cwd=tmp_path)
    # then it reads as plain text and lists the config command
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert re.search(r"^\s+config\s+print the effective configuration", result.stdout, re.M)


def test_the_readme_links_only_to_files_in_the_repository() -> None:
    # given the README a new developer reads in a fresh clone
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    # when its relative links are followed
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not t.startswith(("http", "#"))]
    # then each one is a file of the clone (none reaches outside it)
    assert targets
    for target in targets:
        assert not target.startswith(("../", "/")), target
        assert (root / target).exists(), target
