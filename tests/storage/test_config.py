"""Configuration: the documented formats, the generated key, and bad values stopping
the process at start with one line naming the variable."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storage.config.parse import ConfigError, parse_duration, parse_durations, parse_size
from storage.config.readme import with_tables
from storage.config.settings import Limits, Settings, load_settings
from storage.config.variables import VARIABLES
from storage.retention.policy import RetentionPolicy
from tests.conftest import Api

pytestmark = pytest.mark.backend_independent(reason="parsing the environment into settings")

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lorashelf <args>`` in a clean environment: only PATH, HOME and ``env``."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return subprocess.run(
        [sys.executable, "-m", "graph.cli", *args],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,  # a bad value that is not caught would leave serve running
    )


# Bad configuration stops the process ---------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LORASHELF_PRIVATE_RETENTION", "abc"),
        ("LORASHELF_PRIVATE_RETENTION", "0"),
        ("LORASHELF_REMINDERS", "1x"),
        ("LORASHELF_REMINDERS", "7d,soon"),
        ("LORASHELF_SWEEP_INTERVAL", "-5s"),
        ("LORASHELF_MAX_DATASET_BYTES", "lots"),
        ("LORASHELF_MAX_DATASET_BYTES", "2XB"),
        ("LORASHELF_INTROSPECTION", "maybe"),
        ("LORASHELF_GRAPHIQL", "2"),
        ("LORASHELF_DATABASE_URL", "mysql://x"),
        ("LORASHELF_REDIS_URL", "http://localhost:6379"),
        ("LORASHELF_CORS_ORIGINS", "notanorigin"),
        ("LORASHELF_CORS_ORIGINS", "https://ok.example,https://bad.example/path"),
        ("LORASHELF_SECRET_KEY", "short"),
        ("LORASHELF_TRUSTED_PROXIES", "proxy.internal"),
        ("LORASHELF_TRUSTED_PROXIES", "10.0.0.0/33"),
    ],
)
def test_bad_value_stops_serve_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    # given an otherwise valid environment with one bad variable
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), variable: value}
    # when serve starts
    result = run_cli(["serve", "--port", "0"], env)
    # then it stops at once with exactly one line on stderr naming the variable
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "var" / "lorashelf.sqlite3").exists()


def test_bad_value_stops_migrate_before_touching_the_database(tmp_path: Path) -> None:
    # given a bad retention
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PRIVATE_RETENTION": "abc"}
    # when migrate starts
    result = run_cli(["migrate"], env)
    # then it stops with one line naming the variable and creates no database
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "lorashelf: configuration error: LORASHELF_PRIVATE_RETENTION='abc' is not a duration "
        "(use e.g. 30d, 12h, 15m, 90s or seconds)"
    ]
    assert result.stdout == ""
    assert not (tmp_path / "var" / "lorashelf.sqlite3").exists()


def test_data_dir_that_cannot_be_created_stops_serve(tmp_path: Path) -> None:
    # given a data dir below a plain file
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # when serve starts
    result = run_cli(["serve"], {"LORASHELF_DATA_DIR": str(blocker / "var")})
    # then it stops with one line naming the variable
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "LORASHELF_DATA_DIR" in lines[0]


def test_absurd_retention_is_a_configuration_error(tmp_path: Path) -> None:
    # given a retention window far beyond any calendar (100 million days)
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PRIVATE_RETENTION": "100000000d"}
    # when the settings are loaded
    # then it is refused at start, naming the variable, instead of failing every publish later
    with pytest.raises(ConfigError, match="LORASHELF_PRIVATE_RETENTION"):
        load_settings(env)


@pytest.mark.parametrize("reminders", ["1d", "2d,1h", "30d"], ids=["equal", "beyond", "far"])
def test_a_reminder_at_or_beyond_the_window_is_a_configuration_error(
    tmp_path: Path, reminders: str
) -> None:
    # given a one-day window and a reminder that could never come before the deletion
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_PRIVATE_RETENTION": "1d",
        "LORASHELF_REMINDERS": reminders,
    }
    # when / then the settings are refused, naming both variables
    with pytest.raises(ConfigError, match="^LORASHELF_REMINDERS.*LORASHELF_PRIVATE_RETENTION"):
        load_settings(env)


def test_reminders_inside_the_window_are_accepted(tmp_path: Path) -> None:
    # given reminders up to a second before the end of a one-day window
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_PRIVATE_RETENTION": "1d",
        "LORASHELF_REMINDERS": "86399s,1h",
    }
    # when / then
    assert load_settings(env).reminders == (86399, 3600)


def test_default_reminders_that_do_not_fit_a_shorter_window_are_left_out(
    tmp_path: Path,
) -> None:
    # given a two-day window and the default reminders (7 days and 1 day before deletion)
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_PRIVATE_RETENTION": "2d"}
    # when / then only the one-day reminder is kept
    assert load_settings(env).reminders == (86400,)


def test_unknown_variables_are_logged_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a misspelled variable and a known one
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_CORS_ORIGIN": "http://localhost:5173",
    }
    # when the settings are loaded
    with caplog.at_level("WARNING", logger="lorashelf.config"):
        load_settings(env)
    # then there is one warning, for the unknown one, suggesting the right name
    assert [r.getMessage() for r in caplog.records] == [
        "LORASHELF_CORS_ORIGIN is not a lorashelf setting and is ignored "
        "(did you mean LORASHELF_CORS_ORIGINS?)"
    ]


# Formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 12 * 3600),
        ("15m", 15 * 60),
        ("90s", 90),
        ("3600", 3600),
        ("1w", 7 * 86400),
        ("12H", 12 * 3600),
        (" 7d ", 7 * 86400),
    ],
)
def test_parse_duration_accepts_documented_formats(raw: str, seconds: int) -> None:
    # when / then
    assert parse_duration("X", raw) == seconds


@pytest.mark.parametrize("raw", ["", "abc", "1x", "0", "0d", "-5s", "1.5h", "d", "30 days"])
def test_parse_duration_refuses_everything_else(raw: str) -> None:
    # when / then the error names the variable
    with pytest.raises(ConfigError, match="^LORASHELF_SOMETHING"):
        parse_duration("LORASHELF_SOMETHING", raw)


def test_parse_durations_is_a_sorted_deduplicated_list() -> None:
    # when / then
    assert parse_durations("X", "1d,7d") == (7 * 86400, 86400)
    assert parse_durations("X", " 7d , 1d, 24h ") == (7 * 86400, 86400)
    assert parse_durations("X", "") == ()
    assert parse_durations("X", " , ") == ()


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("500MB", 500 * 1000**2),
        ("2GiB", 2 * 1024**3),
        ("123456", 123456),
        ("1kb", 1000),
        ("1KiB", 1024),
        ("10 MiB", 10 * 1024**2),
        ("7b", 7),
    ],
)
def test_parse_size_accepts_documented_formats(raw: str, size: int) -> None:
    # when / then
    assert parse_size("X", raw) == size


@pytest.mark.parametrize("raw", ["", "lots", "0", "0GiB", "2XB", "1.5GB", "-1", "GiB"])
def test_parse_size_refuses_everything_else(raw: str) -> None:
    # when / then the error names the variable
    with pytest.raises(ConfigError, match="^LORASHELF_MAX_DATASET_BYTES"):
        parse_size("LORASHELF_MAX_DATASET_BYTES", raw)


def test_defaults(tmp_path: Path) -> None:
    # given only a data dir
    data_dir = tmp_path / "var"
    # when the settings are loaded
    settings = load_settings({"LORASHELF_DATA_DIR": str(data_dir)})
    # then every documented default applies
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite://{data_dir / 'lorashelf.sqlite3'}"
    assert settings.redis_url is None
    assert settings.private_retention == 30 * 86400
    assert settings.reminders == (7 * 86400, 86400)
    assert settings.sweep_interval == 60
    assert settings.max_dataset_bytes == 2 * 1024**3
    assert settings.cors_origins == ()
    assert settings.introspection is True
    assert settings.graphiql is True
    assert settings.blob_url == f"file://{data_dir / 'blobs'}"
    assert settings.blob_dir == data_dir / "blobs"
    assert settings.upload_url_lifetime == 3600
    assert settings.download_url_lifetime == 300


def test_values_are_read_from_the_environment(tmp_path: Path) -> None:
    # given every variable set
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_DATABASE_URL": "postgres://u:p@db/lorashelf",
        "LORASHELF_REDIS_URL": "redis://localhost:6379/0",
        "LORASHELF_SECRET_KEY": "k" * 32,
        "LORASHELF_PRIVATE_RETENTION": "12h",
        "LORASHELF_REMINDERS": "1h,15m",
        "LORASHELF_SWEEP_INTERVAL": "5m",
        "LORASHELF_MAX_DATASET_BYTES": "500MB",
        "LORASHELF_CORS_ORIGINS": "https://app.example, http://localhost:5173/",
        "LORASHELF_INTROSPECTION": "false",
        "LORASHELF_GRAPHIQL": "off",
        "LORASHELF_BLOB_URL": f"file://{tmp_path / 'elsewhere'}",
    }
    # when the settings are loaded
    settings = load_settings(env)
    # then
    assert settings.database_url == "postgres://u:p@db/lorashelf"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.secret_key == "k" * 32
    assert settings.private_retention == 12 * 3600
    assert settings.reminders == (3600, 900)
    assert settings.sweep_interval == 300
    assert settings.max_dataset_bytes == 500_000_000
    assert settings.cors_origins == ("https://app.example", "http://localhost:5173")
    assert settings.introspection is False
    assert settings.graphiql is False
    assert settings.blob_dir == tmp_path / "elsewhere"
    assert not (tmp_path / "var" / "secret_key").exists()  # a given key is not written


# The generated key ---------------------------------------------------------------------------


def test_first_load_creates_data_dir_and_a_private_key_read_back_later(tmp_path: Path) -> None:
    # given a data dir that does not exist yet
    data_dir = tmp_path / "deep" / "var"
    env = {"LORASHELF_DATA_DIR": str(data_dir)}
    # when the settings are loaded twice
    first = load_settings(env)
    second = load_settings(env)
    # then the dir and a key file readable only by its owner exist, and the key is stable
    key_file = data_dir / "secret_key"
    assert data_dir.is_dir()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == first.secret_key
    assert len(first.secret_key) >= 32
    assert second.secret_key == first.secret_key


def test_separate_data_dirs_get_separate_keys(tmp_path: Path) -> None:
    # when two fresh data dirs are loaded
    one = load_settings({"LORASHELF_DATA_DIR": str(tmp_path / "one")})
    two = load_settings({"LORASHELF_DATA_DIR": str(tmp_path / "two")})
    # then their keys differ
    assert one.secret_key != two.secret_key


def test_loading_without_create_touches_nothing(tmp_path: Path) -> None:
    # given a data dir that does not exist
    data_dir = tmp_path / "var"
    # when the settings are loaded without create (as export-schema does)
    load_settings({"LORASHELF_DATA_DIR": str(data_dir)}, create=False)
    # then nothing was created
    assert not data_dir.exists()


# The retention notice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retention", "wording"),
    [
        ("30d", "30 days"),
        ("1d", "1 day"),
        ("12h", "12 hours"),
        ("3600", "1 hour"),
        ("15m", "15 minutes"),
        ("90m", "90 minutes"),
        ("90s", "90 seconds"),
        ("1s", "1 second"),
    ],
)
def test_retention_notice_states_the_window(tmp_path: Path, retention: str, wording: str) -> None:
    # given a configured retention
    env = {"LORASHELF_DATA_DIR": str(tmp_path), "LORASHELF_PRIVATE_RETENTION": retention}
    # when the notice is produced
    notice = RetentionPolicy.of(load_settings(env, create=False)).notice()
    # then it states the window in words
    assert notice == (
        "Private datasets are visible only to you and are deleted automatically "
        f"{wording} after the version is published (or 30 days after upload if it is "
        "never published)."
    )


def test_default_notice_is_the_documented_sentence(tmp_path: Path) -> None:
    # given no retention configured
    settings = load_settings({"LORASHELF_DATA_DIR": str(tmp_path)}, create=False)
    # when / then the notice is the documented sentence (PRODUCT.md's, naming the version,
    # whose publication starts the window, and the draft lifetime)
    assert RetentionPolicy.of(settings).notice() == (
        "Private datasets are visible only to you and are deleted automatically 30 days after "
        "the version is published (or 30 days after upload if it is never published)."
    )


@pytest.fixture
def short_retention(env: dict[str, str]) -> dict[str, str]:
    """A 90-second window and reminders at 1 minute and 10 seconds; request before ``api``."""
    env["LORASHELF_PRIVATE_RETENTION"] = "90s"
    env["LORASHELF_REMINDERS"] = "10s,1m"
    return env


async def test_retention_policy_query_reports_the_configuration(
    short_retention: Any, api: Api
) -> None:
    # given a server configured with a 90-second window
    # when anybody asks for the policy
    data = await api.gql(
        "{ retentionPolicy { privateRetentionSeconds reminderOffsetsSeconds notice } }"
    )
    # then it reports the configured values and the matching sentence
    assert data["retentionPolicy"] == {
        "privateRetentionSeconds": 90,
        "reminderOffsetsSeconds": [60, 10],
        "notice": "Private datasets are visible only to you and are deleted automatically "
        "90 seconds after the version is published (or 30 days after upload if it is "
        "never published).",
    }


# One declaration per variable ----------------------------------------------------------


def test_the_documented_tables_are_generated_from_the_variable_table() -> None:
    # given docs/configuration.md as committed
    page = (ROOT / "docs" / "configuration.md").read_text()
    # then its configuration tables are exactly what the variable table generates
    # (regenerate with: python -m storage.config.readme)
    assert with_tables(page) == page
    for variable in VARIABLES:
        assert f"`{variable.name}`" in page


def test_every_setting_and_limit_is_declared_once() -> None:
    declared = [(v.table, v.field) for v in VARIABLES]
    assert len(declared) == len(set(declared))
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)
    limits = {f.name for f in dataclasses.fields(Limits)}
    assert {v.field for v in VARIABLES if v.table == "limits"} == limits
    settings = {f.name for f in dataclasses.fields(Settings)} - {
        "limits",
        "upload_url_lifetime",
        "download_url_lifetime",
    }
    assert {v.field for v in VARIABLES if v.table == "settings"} == settings
