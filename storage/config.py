"""Configuration: read once from the environment, validated at start.

Every problem is a :class:`ConfigError` whose message is one line naming the
variable, so the process can stop with exactly that line.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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


def describe_duration(seconds: int) -> str:
    """Human wording for a duration: ``30 days``, ``1 hour``, ``90 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@dataclass(frozen=True)
class Limits:
    """Abuse limits (all configurable; the defaults are deliberately tight)."""

    max_body_bytes: int = 100_000  # a /graphql request body
    max_tokens: int = 2000
    max_depth: int = 10
    max_aliases: int = 30
    max_directives: int = 50
    max_cost: int = 20_000
    max_field_repeats: int = 20  # copies of one field in one selection set
    login_rate_username: str = "10/minute"
    login_rate_address: str = "30/minute"
    signup_rate_address: str = "10/hour"
    zip_max_ratio: int = 100  # uncompressed total / archive size
    max_datasets_per_user: int = 200
    max_bytes_per_user: int = 50 * 1024**3


def _rate(name: str, raw: str) -> str:
    from limits import parse

    try:
        parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a rate (use e.g. 10/minute, 100/hour)") from None
    return raw


def _count(name: str, raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name}={raw!r} must be a whole number above zero")
    return int(raw)


def load_limits(env: Mapping[str, str]) -> Limits:
    d = Limits()

    def get(name: str, default: object) -> str:
        return env.get(name, "").strip() or str(default)

    return Limits(
        max_body_bytes=parse_size(
            "LORASHELF_MAX_BODY_BYTES", get("LORASHELF_MAX_BODY_BYTES", d.max_body_bytes)
        ),
        max_tokens=_count("LORASHELF_MAX_TOKENS", get("LORASHELF_MAX_TOKENS", d.max_tokens)),
        max_depth=_count("LORASHELF_MAX_DEPTH", get("LORASHELF_MAX_DEPTH", d.max_depth)),
        max_aliases=_count("LORASHELF_MAX_ALIASES", get("LORASHELF_MAX_ALIASES", d.max_aliases)),
        max_directives=_count(
            "LORASHELF_MAX_DIRECTIVES", get("LORASHELF_MAX_DIRECTIVES", d.max_directives)
        ),
        max_cost=_count("LORASHELF_MAX_COST", get("LORASHELF_MAX_COST", d.max_cost)),
        max_field_repeats=_count(
            "LORASHELF_MAX_FIELD_REPEATS", get("LORASHELF_MAX_FIELD_REPEATS", d.max_field_repeats)
        ),
        login_rate_username=_rate(
            "LORASHELF_LOGIN_RATE_PER_USERNAME",
            get("LORASHELF_LOGIN_RATE_PER_USERNAME", d.login_rate_username),
        ),
        login_rate_address=_rate(
            "LORASHELF_LOGIN_RATE_PER_ADDRESS",
            get("LORASHELF_LOGIN_RATE_PER_ADDRESS", d.login_rate_address),
        ),
        signup_rate_address=_rate(
            "LORASHELF_SIGNUP_RATE_PER_ADDRESS",
            get("LORASHELF_SIGNUP_RATE_PER_ADDRESS", d.signup_rate_address),
        ),
        zip_max_ratio=_count(
            "LORASHELF_ZIP_MAX_RATIO", get("LORASHELF_ZIP_MAX_RATIO", d.zip_max_ratio)
        ),
        max_datasets_per_user=_count(
            "LORASHELF_MAX_DATASETS_PER_USER",
            get("LORASHELF_MAX_DATASETS_PER_USER", d.max_datasets_per_user),
        ),
        max_bytes_per_user=parse_size(
            "LORASHELF_MAX_BYTES_PER_USER",
            get("LORASHELF_MAX_BYTES_PER_USER", d.max_bytes_per_user),
        ),
    )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    secret_key: str
    private_retention: int
    reminders: tuple[int, ...]
    sweep_interval: int
    max_dataset_bytes: int
    cors_origins: tuple[str, ...]
    introspection: bool
    graphiql: bool
    blob_url: str
    token_lifetime: int
    limits: Limits = field(default_factory=lambda: Limits())
    upload_url_lifetime: int = 3600
    download_url_lifetime: int = 300

    @property
    def blob_dir(self) -> Path:
        """The local blob directory (``file://`` blob URLs only)."""
        return Path(self.blob_url.removeprefix("file://"))

    def retention_notice(self) -> str:
        """The sentence the upload form shows next to the sharing option."""
        return (
            "Private datasets are visible only to you and are deleted automatically "
            f"{describe_duration(self.private_retention)} after the model is published."
        )


def _secret_key(data_dir: Path, env: Mapping[str, str], *, create: bool) -> str:
    if key := env.get("LORASHELF_SECRET_KEY", "").strip():
        if len(key) < 16:
            raise ConfigError("LORASHELF_SECRET_KEY must be at least 16 characters long")
        return key
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


def load_settings(env: Mapping[str, str] | None = None, *, create: bool = True) -> Settings:
    """Read and validate every variable; with ``create`` make the data dir and key file."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("LORASHELF_DATA_DIR", "") or "./var").resolve()
    if create:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LORASHELF_DATA_DIR={str(data_dir)!r} cannot be created: {exc.strerror}"
            ) from exc
    database_url = env.get("LORASHELF_DATABASE_URL", "").strip()
    if not database_url:
        database_url = f"sqlite://{data_dir / 'lorashelf.sqlite3'}"
    if not re.match(r"^(sqlite|postgres|asyncpg)://", database_url):
        raise ConfigError(
            "LORASHELF_DATABASE_URL must start with sqlite:// or postgres:// "
            f"(got {database_url.split('://')[0]!r})"
        )
    redis_url = env.get("LORASHELF_REDIS_URL", "").strip() or None
    if redis_url and not re.match(r"^rediss?://", redis_url):
        raise ConfigError("LORASHELF_REDIS_URL must start with redis:// or rediss://")
    blob_url = env.get("LORASHELF_BLOB_URL", "").strip() or f"file://{data_dir / 'blobs'}"
    if not blob_url.startswith("file://"):
        raise ConfigError(
            "LORASHELF_BLOB_URL: only file:// blob stores are supported in this version"
        )
    cors = tuple(
        o.strip().rstrip("/") for o in env.get("LORASHELF_CORS_ORIGINS", "").split(",") if o.strip()
    )
    for origin in cors:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise ConfigError(
                f"LORASHELF_CORS_ORIGINS: {origin!r} is not an origin like https://host"
            )
    sweep_interval = parse_duration(
        "LORASHELF_SWEEP_INTERVAL", env.get("LORASHELF_SWEEP_INTERVAL", "60s")
    )
    cron_fields(sweep_interval)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=_secret_key(data_dir, env, create=create),
        private_retention=parse_duration(
            "LORASHELF_PRIVATE_RETENTION", env.get("LORASHELF_PRIVATE_RETENTION", "30d")
        ),
        reminders=parse_durations("LORASHELF_REMINDERS", env.get("LORASHELF_REMINDERS", "7d,1d")),
        sweep_interval=sweep_interval,
        max_dataset_bytes=parse_size(
            "LORASHELF_MAX_DATASET_BYTES", env.get("LORASHELF_MAX_DATASET_BYTES", "2GiB")
        ),
        cors_origins=cors,
        introspection=parse_bool(
            "LORASHELF_INTROSPECTION", env.get("LORASHELF_INTROSPECTION", "true")
        ),
        graphiql=parse_bool("LORASHELF_GRAPHIQL", env.get("LORASHELF_GRAPHIQL", "true")),
        blob_url=blob_url,
        token_lifetime=parse_duration(
            "LORASHELF_TOKEN_LIFETIME", env.get("LORASHELF_TOKEN_LIFETIME", "30d")
        ),
        limits=load_limits(env),
    )
