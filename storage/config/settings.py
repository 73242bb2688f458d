"""Configuration: read once from the environment, validated at start.

Every variable is declared once, in :data:`VARIABLES`: the settings field it fills,
its name, its parser, its default and what it means. The same table loads the
settings and writes the README's configuration tables (``python -m storage.config``;
a test checks that the README matches). Every problem is a :class:`ConfigError`
whose message is one line naming the variable, so the process can stop with
exactly that line.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("lorashelf.config")

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


MAX_DURATION = 10 * 366 * 86400


class ConfigError(Exception):
    """A configuration value is missing or malformed."""


# Parsers: (variable name, raw text) -> value, raising ConfigError naming the variable.


def parse_duration(name: str, raw: str) -> int:
    """Parse ``30d``, ``12h``, ``15m``, ``90s`` or plain seconds into seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", raw.lower())
    if not match:
        raise ConfigError(
            f"{name}={raw!r} is not a duration (use e.g. 30d, 12h, 15m, 90s or seconds)"
        )
    seconds = int(match.group(1)) * _DURATION_UNITS.get(match.group(2) or "s", 1)
    if seconds <= 0:
        raise ConfigError(f"{name}={raw!r} must be longer than zero")
    if seconds > MAX_DURATION:
        raise ConfigError(f"{name}={raw!r} is too long (at most 10 years)")
    return seconds


def cron_fields(seconds: int) -> dict[str, set[int] | int]:
    """ARQ cron fields that fire every ``seconds``: it must divide a minute, an hour or a day."""
    if seconds < 60 and 60 % seconds == 0:
        return {"second": set(range(0, 60, seconds))}
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        return {"minute": set(range(0, 60, seconds // 60)), "second": 0}
    if seconds % 3600 == 0 and 86400 % seconds == 0:
        return {"hour": set(range(0, 24, seconds // 3600)), "minute": 0, "second": 0}
    raise ConfigError(
        f"LORASHELF_SWEEP_INTERVAL={seconds}s must divide a minute, an hour or a day "
        "(e.g. 5s, 30s, 60s, 5m, 1h)"
    )


def parse_sweep_interval(name: str, raw: str) -> int:
    seconds = parse_duration(name, raw)
    cron_fields(seconds)
    return seconds


def parse_duration_or_off(name: str, raw: str) -> int:
    """A duration, or ``0``/``off`` for none."""
    if raw.strip().lower() in {"0", "off"}:
        return 0
    return parse_duration(name, raw)


def parse_durations(name: str, raw: str) -> tuple[int, ...]:
    """A comma-separated list of durations; empty means none. Sorted, largest first."""
    parts = [p for p in (s.strip() for s in raw.split(",")) if p]
    values = {parse_duration(name, p) for p in parts}
    return tuple(sorted(values, reverse=True))


def parse_size(name: str, raw: str) -> int:
    """Parse plain bytes or ``500MB``, ``2GiB`` into bytes (> 0)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", raw)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(f"{name}={raw!r} is not a size (use e.g. 2GiB, 500MB or bytes)")
    size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size <= 0:
        raise ConfigError(f"{name}={raw!r} must be larger than zero")
    return size


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def parse_count(name: str, raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name}={raw!r} must be a whole number above zero")
    return int(raw)


def parse_rate(name: str, raw: str) -> str:
    from limits import parse

    try:
        parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a rate (use e.g. 10/minute, 100/hour)") from None
    return raw.strip()


def parse_origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://host")
    return origins


def parse_names(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of names (e.g. metadata keys); empty means none."""
    names = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    for item in names:
        if len(item) > 256 or not item.isprintable():
            raise ConfigError(f"{name}: {item[:40]!r} is not a usable name")
    return names


def parse_database_url(name: str, raw: str) -> str:
    url = raw.strip()
    if not re.match(r"^(sqlite|postgres|postgresql|asyncpg)://", url):
        raise ConfigError(
            f"{name} must start with sqlite:// or postgres:// (got {url.split('://')[0]!r})"
        )
    return url


def parse_redis_url(name: str, raw: str) -> str | None:
    url = raw.strip()
    if url and not re.match(r"^rediss?://", url):
        raise ConfigError(f"{name} must start with redis:// or rediss://")
    return url or None


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(name: str, raw: str) -> tuple[str, str]:
    """``s3://bucket`` or ``s3://bucket/some/prefix``: the bucket and the prefix ("" or
    ending in ``/``)."""
    url = raw.strip()
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(
            f"{name}={url!r}: {bucket!r} is not a bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    prefix = prefix.strip("/")
    if prefix and not all(prefix.split("/")):
        raise ConfigError(f"{name}={url!r}: the prefix has an empty path segment")
    return bucket, f"{prefix}/" if prefix else ""


def parse_blob_url(name: str, raw: str) -> str:
    url = raw.strip()
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(name, url)
        return f"s3://{bucket}/{prefix}".rstrip("/")
    if not url.startswith("file://"):
        raise ConfigError(f"{name}: use file:///path or s3://bucket/prefix (got {url!r})")
    return url


def parse_public_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    if url and not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
        raise ConfigError(f"{name}={raw!r} is not a URL like https://api.example.com")
    return url


def parse_text(name: str, raw: str) -> str:
    return raw.strip()


LOG_FORMATS = ("text", "json")


def parse_log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(LOG_FORMATS)}")
    return value


def short_duration(seconds: int) -> str:
    """A duration as it is configured: ``7d``, ``12h``, ``15m``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def describe_duration(seconds: int) -> str:
    """Human wording for a duration: ``30 days``, ``1 hour``, ``90 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


MASK = "********"


def mask_url(url: str) -> str:
    """A URL with the password in it (``postgres://user:secret@host``) replaced by a mask."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def mask_all(value: str) -> str:
    return MASK if value else value


# The table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """One configuration variable: declared once, loaded and documented from here."""

    field: str  # the Settings (or Limits) attribute it fills
    name: str  # the environment variable
    parse: Callable[[str, str], Any]
    default: str | None  # raw text, parsed like a set value; None: computed at load
    meaning: str
    table: str = "settings"  # which README table documents it: "settings" or "limits"
    shown_default: str | None = None  # how the README shows a computed default
    mask: Callable[[str], str] | None = None  # hides secrets wherever a value is shown


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "data_dir",
        "LORASHELF_DATA_DIR",
        parse_text,
        "./var",
        "where the SQLite file, the secret key and local blobs live",
    ),
    Variable(
        "database_url",
        "LORASHELF_DATABASE_URL",
        parse_database_url,
        None,
        "`postgres://…` for PostgreSQL",
        shown_default="`sqlite://<data dir>/lorashelf.sqlite3`",
        mask=mask_url,
    ),
    Variable(
        "database_pool_size",
        "LORASHELF_DATABASE_POOL_SIZE",
        parse_count,
        "10",
        "PostgreSQL: most connections each process opens (asyncpg pool; SQLite has one)",
    ),
    Variable(
        "redis_url",
        "LORASHELF_REDIS_URL",
        parse_redis_url,
        "",
        "set: jobs go through ARQ and `lorashelf worker`",
        shown_default="unset",
        mask=mask_url,
    ),
    Variable(
        "secret_key",
        "LORASHELF_SECRET_KEY",
        parse_text,
        None,
        "signs upload/download URLs (16+ characters)",
        shown_default="generated once into the data dir (mode 0600)",
        mask=mask_all,
    ),
    Variable(
        "private_retention",
        "LORASHELF_PRIVATE_RETENTION",
        parse_duration,
        "30d",
        "window after publish: `30d`, `12h`, `15m`, `90s` or plain seconds (at most 10 years)",
    ),
    Variable(
        "reminders",
        "LORASHELF_REMINDERS",
        parse_durations,
        "7d,1d",
        "reminders before deletion, same format, comma-separated, each shorter than "
        "the window (the defaults that are not are left out); empty for none",
    ),
    Variable(
        "draft_retention",
        "LORASHELF_DRAFT_RETENTION",
        parse_duration,
        "30d",
        "lifetime of a private dataset whose version is never published, from its upload",
    ),
    Variable(
        "worker_grace",
        "LORASHELF_WORKER_GRACE",
        parse_duration,
        "60s",
        "with Redis: how long `serve` waits for a healthy worker before it does the "
        "retention work itself (until one is healthy again)",
    ),
    Variable(
        "public_cache",
        "LORASHELF_PUBLIC_CACHE",
        parse_duration_or_off,
        "10s",
        "how long an anonymous answer may be reused, here and by HTTP caches "
        "(`Cache-Control: public, max-age`); writes that change it end it at once here; "
        "download counts may lag this much; `0` turns the cache off",
    ),
    Variable(
        "sweep_interval",
        "LORASHELF_SWEEP_INTERVAL",
        parse_sweep_interval,
        "60s",
        "how often the safety-net sweep runs; must divide a minute, an hour or a day",
    ),
    Variable(
        "max_dataset_bytes",
        "LORASHELF_MAX_DATASET_BYTES",
        parse_size,
        "2GiB",
        "dataset upload size limit: plain bytes or `500MB`, `2GiB`",
    ),
    Variable(
        "min_free_bytes",
        "LORASHELF_MIN_FREE_BYTES",
        parse_size,
        "512MiB",
        "uploads are refused (507 `STORAGE_FULL`) rather than leave less than this free "
        "on the data dir's disk",
    ),
    Variable(
        "max_model_file_bytes",
        "LORASHELF_MAX_MODEL_FILE_BYTES",
        parse_size,
        "2GiB",
        "weights file size limit, same format",
    ),
    Variable(
        "private_header_keys",
        "LORASHELF_PRIVATE_HEADER_KEYS",
        parse_names,
        "",
        "more safetensors `__metadata__` keys to treat as training data, comma-separated",
        shown_default="empty",
    ),
    Variable(
        "cors_origins",
        "LORASHELF_CORS_ORIGINS",
        parse_origins,
        "",
        "comma-separated origins of the web app",
        shown_default="empty (same origin only)",
    ),
    Variable(
        "introspection",
        "LORASHELF_INTROSPECTION",
        parse_bool,
        "true",
        'schema introspection (and "Did you mean" hints); switch off in production if wanted',
    ),
    Variable(
        "graphiql",
        "LORASHELF_GRAPHIQL",
        parse_bool,
        "true",
        "the GraphiQL page on a browser GET of `/graphql`",
    ),
    Variable(
        "blob_url",
        "LORASHELF_BLOB_URL",
        parse_blob_url,
        None,
        "where dataset and weights file bytes live: `file:///path`, or `s3://bucket/prefix` "
        "for an S3-compatible store (see [Object store (S3)](#object-store-s3))",
        shown_default="`file://<data dir>/blobs`",
    ),
    Variable(
        "public_url",
        "LORASHELF_PUBLIC_URL",
        parse_public_url,
        "",
        "the origin (and path prefix) clients reach lorashelf at, e.g. `https://api.example.com`; "
        "upload and download links are built from it, never from the request's `Host`",
        shown_default="unset (links are relative)",
    ),
    Variable(
        "trusted_proxies",
        "LORASHELF_TRUSTED_PROXIES",
        parse_names,
        "",
        "addresses of reverse proxies whose `X-Forwarded-For` names the client (comma-separated; "
        "`*` for any): rate limits and per-address bounds then count real clients",
        shown_default="none",
    ),
    Variable(
        "log_format",
        "LORASHELF_LOG_FORMAT",
        parse_log_format,
        "text",
        "`json`: `serve` and `worker` log one JSON object per line (with request ids)",
    ),
    Variable(
        "token_lifetime",
        "LORASHELF_TOKEN_LIFETIME",
        parse_duration,
        "30d",
        "how long a bearer token from `signUp`/`logIn` is valid",
    ),
    # Abuse limits.
    Variable(
        "max_body_bytes",
        "LORASHELF_MAX_BODY_BYTES",
        parse_size,
        "100000",
        "a `/graphql` request body or GET query string (413/414 before parsing)",
        table="limits",
    ),
    Variable(
        "max_tokens",
        "LORASHELF_MAX_TOKENS",
        parse_count,
        "2000",
        "tokens in a document (the parser stops there)",
        table="limits",
    ),
    Variable(
        "max_depth",
        "LORASHELF_MAX_DEPTH",
        parse_count,
        "10",
        "selection depth (introspection has its own bound, 15)",
        table="limits",
    ),
    Variable(
        "max_aliases",
        "LORASHELF_MAX_ALIASES",
        parse_count,
        "30",
        "aliases per operation, fragments included",
        table="limits",
    ),
    Variable(
        "max_directives",
        "LORASHELF_MAX_DIRECTIVES",
        parse_count,
        "50",
        "directives per document",
        table="limits",
    ),
    Variable(
        "max_cost",
        "LORASHELF_MAX_COST",
        parse_count,
        "20000",
        "objects that can come back (scalars free), a list counting `first` items "
        "or its default size",
        table="limits",
    ),
    Variable(
        "body_timeout",
        "LORASHELF_BODY_TIMEOUT",
        parse_duration,
        "10s",
        "time a `/graphql` request body may take to arrive (408 after it)",
        table="limits",
    ),
    Variable(
        "upload_min_rate",
        "LORASHELF_UPLOAD_MIN_RATE",
        parse_size,
        "16KiB",
        "bytes a second an upload body must average after its grace period (408 below it)",
        table="limits",
    ),
    Variable(
        "upload_grace",
        "LORASHELF_UPLOAD_GRACE",
        parse_duration,
        "60s",
        "seconds an upload body may take before the minimum rate applies",
        table="limits",
    ),
    Variable(
        "max_requests_per_address",
        "LORASHELF_MAX_REQUESTS_PER_ADDRESS",
        parse_count,
        "32",
        "requests one client address may have in flight at once (429 beyond)",
        table="limits",
    ),
    Variable(
        "max_subscriptions_per_user",
        "LORASHELF_MAX_SUBSCRIPTIONS_PER_USER",
        parse_count,
        "10",
        "live subscriptions (`notificationAdded`, `datasetChanged`) one user may hold open "
        "at once on one API process (`TOO_MANY_SUBSCRIPTIONS` beyond)",
        table="limits",
    ),
    Variable(
        "max_field_repeats",
        "LORASHELF_MAX_FIELD_REPEATS",
        parse_count,
        "20",
        "copies of one field in one selection set (checked before validation)",
        table="limits",
    ),
    Variable(
        "login_rate_username",
        "LORASHELF_LOGIN_RATE_PER_USERNAME",
        parse_rate,
        "10/minute",
        "`logIn` attempts per username from one client address (`RATE_LIMITED` past it)",
        table="limits",
    ),
    Variable(
        "login_rate_username_slowdown",
        "LORASHELF_LOGIN_SLOWDOWN_PER_USERNAME",
        parse_rate,
        "100/minute",
        "`logIn` attempts per username from all addresses before they are slowed down "
        "(one at a time, a second each), never refused: nobody can lock an owner out",
        table="limits",
    ),
    Variable(
        "login_rate_address",
        "LORASHELF_LOGIN_RATE_PER_ADDRESS",
        parse_rate,
        "30/minute",
        "`logIn` attempts per client address",
        table="limits",
    ),
    Variable(
        "signup_rate_address",
        "LORASHELF_SIGNUP_RATE_PER_ADDRESS",
        parse_rate,
        "10/hour",
        "`signUp` per client address",
        table="limits",
    ),
    Variable(
        "zip_max_ratio",
        "LORASHELF_ZIP_MAX_RATIO",
        parse_count,
        "100",
        "uncompressed size of an upload over its size (zip bombs)",
        table="limits",
    ),
    Variable(
        "max_datasets_per_user",
        "LORASHELF_MAX_DATASETS_PER_USER",
        parse_count,
        "200",
        "datasets a user holds (deleted ones don't count)",
        table="limits",
    ),
    Variable(
        "max_models_per_user",
        "LORASHELF_MAX_MODELS_PER_USER",
        parse_count,
        "100",
        "models a user keeps (deleted ones don't count)",
        table="limits",
    ),
    Variable(
        "max_bytes_per_user",
        "LORASHELF_MAX_BYTES_PER_USER",
        parse_size,
        "50GiB",
        "bytes a user's datasets and weights files hold together",
        table="limits",
    ),
)


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
    max_cost: int
    body_timeout: int
    upload_min_rate: int
    upload_grace: int
    max_requests_per_address: int
    max_subscriptions_per_user: int
    max_field_repeats: int
    login_rate_username: str
    login_rate_username_slowdown: str
    login_rate_address: str
    signup_rate_address: str
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
    log_format: str = "text"
    limits: Limits = field(default_factory=lambda: load_limits({}))
    upload_url_lifetime: int = 3600
    download_url_lifetime: int = 300
    public_cache: int = 10

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
    data_dir = Path(values["data_dir"]).resolve()
    if create:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LORASHELF_DATA_DIR={str(data_dir)!r} cannot be created: {exc.strerror}"
            ) from exc
    values["data_dir"] = data_dir
    values["database_url"] = values["database_url"] or f"sqlite://{data_dir / 'lorashelf.sqlite3'}"
    values["blob_url"] = values["blob_url"] or f"file://{data_dir / 'blobs'}"
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
            }.get(variable.field, "")
        elif variable.mask is not None:
            raw = variable.mask(raw)
        if variable.field == "data_dir":
            raw = str(settings.data_dir)
        if variable.field == "reminders":  # the defaults may not all fit the window
            raw = ",".join(short_duration(r) for r in settings.reminders)
        rows.append((variable.name, raw.strip(), source))
    return rows


# Documentation -----------------------------------------------------------------------


def markdown_table(table: str) -> str:
    """The README's table of one group of variables, generated from :data:`VARIABLES`."""
    header = (
        "| variable | default | meaning |\n|---|---|---|"
        if table == "settings"
        else "| variable | default | what it bounds |\n|---|---|---|"
    )
    rows = []
    for variable in VARIABLES:
        if variable.table != table:
            continue
        default = variable.shown_default or f"`{variable.default}`"
        rows.append(f"| `{variable.name}` | {default} | {variable.meaning} |")
    return "\n".join([header, *rows])


def with_tables(readme: str) -> str:
    """``readme`` with each ``<!-- config:NAME -->`` block replaced by its generated table."""
    for name in ("settings", "limits"):
        start, end = f"<!-- config:{name} -->", f"<!-- /config:{name} -->"
        before, found, rest = readme.partition(start)
        _, found_end, after = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"README has no {start} ... {end} block")
        readme = f"{before}{start}\n{markdown_table(name)}\n{end}{after}"
    return readme


if __name__ == "__main__":  # python -m storage.config README.md: rewrite its tables
    import sys

    for path in sys.argv[1:]:
        text = Path(path).read_text()
        Path(path).write_text(with_tables(text))
