"""The command line a new developer meets: the start-up banner of a real `lorashelf
serve`, `/` for a browser, --help, `lorashelf config`, and configuration that is refused
or warned about instead of silently never working."""

from __future__ import annotations

import re
import subprocess
import sys
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
    # then every variable of the documented tables is listed with its value and source
    assert result.returncode == 0, result.stderr
    rows = {
        parts[0]: (parts[1], parts[2])
        for parts in (line.split(None, 2) for line in result.stdout.splitlines())
    }
    tables = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert set(rows) == set(re.findall(r"^\| `(LORASHELF_[A-Z_]+)`", tables, re.M))
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


def test_passwords_in_url_query_parameters_are_masked_in_config_and_the_banner(
    tmp_path: Path,
) -> None:
    # given URLs whose secrets sit in the query string (as libpq and redis-py take them)
    database = (
        "postgres://app@127.0.0.1:1/lorashelf?password=hunter2-db&sslmode=disable"
        "&sslpassword=hunter2-ssl"
    )
    redis = "redis://127.0.0.1:1/0?password=hunter2-redis&hunter2-bare"
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_DATABASE_URL": database,
        "LORASHELF_REDIS_URL": redis,
    }
    # when lorashelf config runs
    config = lorashelf("config", env=env, cwd=tmp_path)
    # then each secret is masked, the harmless options are shown as they are
    assert config.returncode == 0, config.stderr
    rows = {line.split(None, 2)[0]: line.split(None, 2)[2] for line in config.stdout.splitlines()}
    assert rows["LORASHELF_DATABASE_URL"] == (
        "postgres://app@127.0.0.1:1/lorashelf?password=********&sslmode=disable"
        "&sslpassword=********"
    )
    assert rows["LORASHELF_REDIS_URL"] == "redis://127.0.0.1:1/0?password=********&********"
    # when serve starts on that database (it cannot reach it: it waits for it a moment,
    # saying so, then gives up)
    impatient = {**env, "LORASHELF_START_PATIENCE": "1s"}
    failed = lorashelf("serve", "--port", str(free_port()), env=impatient, cwd=tmp_path)
    assert "waiting for the database" in failed.stderr
    assert failed.returncode != 0
    # and when serve starts on a database it can use, with that Redis URL (it prints its
    # banner, then keeps serving while Redis does not answer)
    with serve({**env, "LORASHELF_DATABASE_URL": ""}, cwd=tmp_path) as server:
        started = server.log.read_text()
    block = "\n".join(banner_of(started))
    assert "ARQ through redis://127.0.0.1:1/0?password=********&******** " in block
    # then no secret appears anywhere, the start-up failure's report included
    everything = config.stdout + config.stderr + failed.stdout + failed.stderr + started
    assert "hunter2" not in everything


def test_passwords_with_unescaped_reserved_characters_never_show(tmp_path: Path) -> None:
    # given a database URL whose password holds an unescaped "@" (a URL parser reads it
    # right), and Redis URLs whose passwords hold "?", "/" or "#" (it cannot: it takes
    # them for the query, the path, the fragment)
    base = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    database = {**base, "LORASHELF_DATABASE_URL": "postgres://app:hun@ter2@127.0.0.1:1/db"}
    unreadable = [
        {**base, "LORASHELF_REDIS_URL": "redis://:hunter2?x/y@127.0.0.1:1/0"},
        {**base, "LORASHELF_REDIS_URL": "redis://app:hunter2#z@127.0.0.1:1/0"},
        {**base, "LORASHELF_DATABASE_URL": "postgres://app:hunter2/a@127.0.0.1:1/db"},
    ]
    # when lorashelf config runs on each, and serve on the unreadable ones
    shown = lorashelf("config", env=database, cwd=tmp_path)
    refused = [lorashelf("config", env=env, cwd=tmp_path) for env in unreadable]
    started = [
        lorashelf("serve", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=60)
        for env in unreadable
    ]
    # then the readable one is shown with its password masked
    assert shown.returncode == 0, shown.stderr
    rows = {line.split(None, 2)[0]: line.split(None, 2)[2] for line in shown.stdout.splitlines()}
    assert rows["LORASHELF_DATABASE_URL"] == "postgres://app:********@127.0.0.1:1/db"
    # and the others are refused with a clear message that shows no part of the password
    for result in refused + started:
        assert result.returncode == 2, result.stdout + result.stderr
        assert "percent-encode" in result.stderr and "********" in result.stderr
        assert "Traceback" not in result.stderr
    everything = "".join(r.stdout + r.stderr for r in [shown, *refused, *started])
    for secret in ("hunter2", "ter2", "x/y", "#z"):
        assert secret not in everything, secret


def test_serve_help_lists_its_flags_and_points_to_the_environment(tmp_path: Path) -> None:
    # when
    result = lorashelf("serve", "--help", env={}, cwd=tmp_path)
    # then each flag has help text, and the environment variables are pointed to
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--host HOST address to listen on (default: 127.0.0.1" in text
    assert "--port PORT port to listen on (default: 8000)" in text
    assert "LORASHELF_* environment variables" in text
    assert "docs/configuration.md" in text and "lorashelf config" in text


def test_top_level_help_shows_no_restructured_text(tmp_path: Path) -> None:
    # when
    result = lorashelf("--help", env={}, cwd=tmp_path)
    # then it reads as plain text and lists the config command
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert re.search(r"^\s+config\s+print the effective configuration", result.stdout, re.M)


def test_the_readme_and_docs_link_only_to_files_in_the_repository() -> None:
    # given the README a new developer reads in a fresh clone, and the pages it links
    root = Path(__file__).parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        # when its relative links are followed
        targets = [
            t.split("#")[0]
            for t in re.findall(r"\]\(([^)\s]+)\)", text)
            if not t.startswith(("http", "#", "mailto:"))
        ]
        # then each one is a file of the clone (none reaches outside it)
        for target in targets:
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(root), (page.name, target)
            assert resolved.exists(), (page.name, target)
        # and each link to a section names a heading of that page
        for target, anchor in re.findall(r"\]\(([^)\s#]*)#([^)\s]+)\)", text):
            linked = (page.parent / target).resolve() if target else page
            if linked.suffix != ".md":
                continue
            assert anchor in anchors(linked.read_text()), (page.name, target, anchor)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a page's headings."""
    found = set()
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_the_samples_script_explains_itself_and_writes_nothing_on_help(tmp_path: Path) -> None:
    # when a newcomer asks the walk-through's sample script for help
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "samples.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    # then it says what it writes, and writes nothing (no directory named --help)
    assert done.returncode == 0 and "usage:" in done.stdout and "cats.zip" in done.stdout
    assert list(tmp_path.iterdir()) == []
    # and given a directory, it writes the two files there
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "samples.py"), "out"], cwd=tmp_path, check=True
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cats.safetensors", "cats.zip"]
