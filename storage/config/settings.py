"""The settings: read once from the environment, validated at start.

Every variable comes from the table in :mod:`storage.config.variables`. Every problem
is a :class:`~storage.config.parse.ConfigError` whose message is one line naming the
variable, so the process can stop with exactly that line.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.config.parse import ConfigError, Variable, describe_duration, short_duration
from storage.config.variables import VARIABLES

log = logging.getLogger("lorashelf.config")


def value_of(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One variable's parsed value, before the whole configuration is loaded (e.g. the
    log format, needed to report what loading finds)."""
    variable = next(v for v in VARIABLES if v.name == name)
    return _value(variable, os.environ if env is None else env)


def _value(variable: Variable, env: Mapping[str, str]) -> Any:
    raw = env.get(variable.name, "")
    if not raw.strip():
        if variable.default is None:
            return None
        raw = variable.default
    return variable.parse(variable.name, raw)


@dataclass(frozen=True)
class Limits:
    """Abuse limits (all configurable; the defaults are deliberately tight)."""

    max_body_bytes: int
    max_tokens: int
    max_depth: int
    max_aliases: int
    max_directives: int
    max_errors: int
    parsed_documents_bytes: int
    public_cache_bytes: int
    persisted_queries_bytes: int
    max_cost: int
    body_timeout: int
    head_timeout: int
    send_timeout: int
    keep_alive: int
    upload_min_rate: int
    upload_grace: int
    download_min_rate: int
    download_grace: int
    max_requests_per_address: int
    max_connections_per_address: int
    max_subscriptions_per_user: int
    max_field_repeats: int
    login_rate_username: str
    login_rate_username_slowdown: str
    login_rate_address: str
    signup_rate_address: str
    report_rate: str
    email_rate: str
    zip_max_ratio: int
    max_datasets_per_user: int
    max_models_per_user: int
    max_bytes_per_user: int


def load_limits(env: Mapping[str, str]) -> Limits:
    return Limits(**{v.field: _value(v, env) for v in VARIABLES if v.table == "limits"})


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    database_pool_size: int
    database_busy_timeout: int
    redis_url: str | None
    secret_key: str
    private_retention: int
    reminders: tuple[int, ...]
    draft_retention: int
    worker_grace: int
    sweep_interval: int
    max_dataset_bytes: int
    min_free_bytes: int
    max_model_file_bytes: int
    private_header_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    introspection: bool
    graphiql: bool
    blob_url: str
    public_url: str
    trusted_proxies: tuple[str, ...]
    token_lifetime: int
    smtp_url: str = ""
    mail_from: str = ""
    mail_retry_for: int = 2 * 86400
    log_format: str = "text"
    master_key: tuple[bytes, ...] | None = None  # None: the key file in the data dir
    username_quarantine: int = 30 * 86400
    export_retention: int = 7 * 86400
    limits: Limits = field(default_factory=lambda: load_limits({}))
    upload_url_lifetime: int = 3600
    download_url_lifetime: int = 300
    public_cache: int = 10
    start_patience: int = 60

    @property
    def blob_dir(self) -> Path:
        """The local blob directory (``file://`` blob URLs only)."""
        assert self.blob_url.startswith("file://"), "not a local blob store"
        return Path(self.blob_url.removeprefix("file://"))


def _secret_key(data_dir: Path, configured: str | None, *, create: bool) -> str:
    if configured:
        if len(configured) < 16:
            raise ConfigError("LORASHELF_SECRET_KEY must be at least 16 characters long")
        return configured
    path = data_dir / "secret_key"
    if not path.exists() and create:
        # Write a temporary file, then link it into place: a process starting at the
        # same moment either wins or reads the complete key written by the winner.
        temp = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    if not path.exists():
        return "not-a-secret-for-schema-export"
    key = path.read_text().strip()
    if len(key) < 16:
        raise ConfigError(f"LORASHELF_SECRET_KEY: the key file {path} is too short; remove it")
    return key


# What a process that writes lorashelf's data creates: files 0600, directories 0700
# (serve, worker and migrate set it as they start: graph/cli.py).
UMASK = 0o077


def keep_private(path: Path, variable: str) -> None:
    """A directory holding lorashelf's data must not be open to other local users: one
    that is (any permission for "others") is closed to them, with a warning; one that
    cannot be is refused. Group permissions are left as the operator set them (0750 for
    a backup group, as PostgreSQL allows); lorashelf creates its directories 0700."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o007:
        return
    try:
        path.chmod(mode & ~0o007)
    except OSError as exc:
        raise ConfigError(
            f"{variable}: {path} is open to every local user (mode {mode:04o}) and cannot be "
            f"closed ({exc.strerror}); run: chmod o-rwx {path}"
        ) from exc
    log.warning(
        "%s: %s was open to every local user (mode %04o); it is now %04o. "
        "Private datasets live there: keep it 0700.",
        variable,
        path,
        mode,
        mode & ~0o007,
    )


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One line for each ``LORASHELF_*`` variable that is not in :data:`VARIABLES` (a
    misspelling would otherwise be ignored), naming the closest known one."""
    prefix = "LORASHELF_"
    known = [v.name for v in VARIABLES]
    # Compared without the shared prefix, or every name would look close to every other.
    suffixes = [name.removeprefix(prefix) for name in known]
    lines = []
    for name in sorted(n for n in env if n.startswith(prefix) and n not in known):
        close = difflib.get_close_matches(name.removeprefix(prefix), suffixes, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        lines.append(f"{name} is not a lorashelf setting and is ignored{hint}")
    return lines


def _check_reminders(reminders: tuple[int, ...], retention: int) -> None:
    """A reminder at or beyond the window could never come before the deletion."""
    late = [r for r in reminders if r >= retention]
    if late:
        raise ConfigError(
            f"LORASHELF_REMINDERS: a reminder {describe_duration(late[0])} before deletion "
            "is at or beyond the retention window (LORASHELF_PRIVATE_RETENTION="
            f"{describe_duration(retention)}); every reminder must be shorter than the window"
        )


def _check_mail(values: Mapping[str, Any]) -> None:
    """E-mail needs a sender, and absolute links (verification, unsubscribe)."""
    if not values["smtp_url"]:
        return
    if not values["mail_from"]:
        raise ConfigError(
            "LORASHELF_MAIL_FROM must be set with LORASHELF_SMTP_URL (the sender of e-mail, "
            "e.g. 'lorashelf <noreply@example.com>')"
        )
    if not values["public_url"]:
        raise ConfigError(
            "LORASHELF_PUBLIC_URL must be set with LORASHELF_SMTP_URL: the links in e-mail "
            "(address verification, unsubscribe) are absolute"
        )


def load_settings(env: Mapping[str, str] | None = None, *, create: bool = True) -> Settings:
    """Read and validate every variable; with ``create`` make the data dir and key file.
    Unknown ``LORASHELF_*`` variables are logged, one warning each."""
    env = os.environ if env is None else env
    for line in unknown_variables(env):
        log.warning(line)
    values = {v.field: _value(v, env) for v in VARIABLES if v.table == "settings"}
    if env.get("LORASHELF_REMINDERS", "").strip():
        _check_reminders(values["reminders"], values["private_retention"])
    else:  # the default reminders that fit a shorter window
        values["reminders"] = tuple(
            r for r in values["reminders"] if r < values["private_retention"]
        )
    _check_mail(values)
    data_dir = Path(values["data_dir"]).resolve()
    if create:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LORASHELF_DATA_DIR={str(data_dir)!r} cannot be created: {exc.strerror}"
            ) from exc
    values["data_dir"] = data_dir
    values["database_url"] = values["database_url"] or f"sqlite://{data_dir / 'lorashelf.sqlite3'}"
    values["blob_url"] = values["blob_url"] or f"file://{data_dir / 'blobs'}"
    if create:  # every local directory that holds data: the data dir, blobs, SQLite's
        keep_private(data_dir, "LORASHELF_DATA_DIR")
        if values["blob_url"].startswith("file://"):
            keep_private(Path(values["blob_url"].removeprefix("file://")), "LORASHELF_BLOB_URL")
        if values["database_url"].startswith("sqlite://"):
            database = Path(values["database_url"].removeprefix("sqlite://"))
            keep_private(database.parent, "LORASHELF_DATABASE_URL")
    values["secret_key"] = _secret_key(data_dir, values["secret_key"], create=create)
    return Settings(**values, limits=load_limits(env))


def effective(
    settings: Settings, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Every variable as (name, effective value, where it came from: ``env`` or
    ``default``), secrets masked: what ``lorashelf config`` prints."""
    env = os.environ if env is None else env
    rows = []
    for variable in VARIABLES:
        raw = env.get(variable.name, "")
        source = "env" if raw.strip() else "default"
        if not raw.strip():
            raw = variable.default if variable.default is not None else ""
        if variable.default is None and source == "default":
            raw = {
                "database_url": settings.database_url,
                "blob_url": settings.blob_url,
                "secret_key": f"(generated into {settings.data_dir / 'secret_key'})",
                "master_key": f"(generated into {settings.data_dir / 'master_key'})",
            }.get(variable.field, "")
        elif variable.mask is not None:
            raw = variable.mask(raw)
        if variable.field == "data_dir":
            raw = str(settings.data_dir)
        if variable.field == "reminders":  # the defaults may not all fit the window
            raw = ",".join(short_duration(r) for r in settings.reminders)
        rows.append((variable.name, raw.strip(), source))
    return rows
