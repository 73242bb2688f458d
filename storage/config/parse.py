"""Configuration values: how each kind of value is written (parsers) and shown.

A parser takes the variable's name and its raw text and returns the value, or raises
:class:`ConfigError` with one line naming the variable, so the process can stop with
exactly that line. The formatters are their inverse (``short_duration``), the wording
used in messages (``describe_duration``), and the masks that hide secrets; and
:class:`Variable`, how a variable is declared with its parser and mask (the tables:
:mod:`storage.config.variables`, :mod:`storage.config.limits`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from storage.config.masks import mask_url

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


def parse_proxies(name: str, raw: str) -> tuple[str, ...]:
    """Reverse proxies: comma-separated IP addresses or networks (CIDR), or ``*`` for any;
    empty means none."""
    entries = parse_names(name, raw)
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name}: {entry[:60]!r} is not an IP address or network "
                "(e.g. 10.0.0.5 or 172.16.0.0/12; * for any)"
            ) from None
    return entries


def parse_database_url(name: str, raw: str) -> str:
    url = raw.strip()
    if not re.match(r"^(sqlite|postgres|postgresql|asyncpg)://", url):
        raise ConfigError(
            f"{name} must start with sqlite:// or postgres:// (got {url.split('://')[0]!r})"
        )
    _check_authority(name, url)
    return url


def _check_authority(name: str, url: str) -> None:
    """Refuse a URL whose host or port cannot be read (a password holding an unescaped
    "/", "?", "#" or "@" cuts the URL in the wrong place), naming it masked."""
    try:
        urlsplit(url).port  # noqa: B018  (reading it is the check)
    except ValueError:
        raise ConfigError(
            f"{name}: the host and port cannot be read from {mask_url(url)!r}; "
            'percent-encode "/", "?", "#", "@" and ":" in a user name or password '
            "(e.g. %2F for /)"
        ) from None


def parse_redis_url(name: str, raw: str) -> str | None:
    url = raw.strip()
    if url and not re.match(r"^rediss?://", url):
        raise ConfigError(f"{name} must start with redis:// or rediss://")
    if url:
        _check_authority(name, url)
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
        raise ConfigError(f"{name}: use file:///path or s3://bucket/prefix (got {mask_url(url)!r})")
    return url


def parse_public_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    if url and not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
        raise ConfigError(f"{name}={raw!r} is not a URL like https://api.example.com")
    return url


def parse_smtp_url(name: str, raw: str) -> str:
    """``smtp://user:pass@host:port`` (STARTTLS, required) or ``smtps://…`` (TLS from the
    first byte); empty for no e-mail. The user and password are optional (percent-encode
    special characters)."""
    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(f"{name} must start with smtp:// (STARTTLS) or smtps:// (TLS)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: the port is not a number") from None
    if not parts.hostname:
        raise ConfigError(f"{name} names no host (use smtp://user:password@host:587)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name}: use smtp://user:password@host:port, nothing after the port")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{name}: the port must be between 1 and 65535")
    return url


_ADDRESS = re.compile(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:]+")


def is_email_address(value: str) -> bool:
    """A plain address (``name@example.com``): one ``@``, a dot in the domain, nothing a
    header could be split or steered by."""
    return len(value) <= 254 and bool(_ADDRESS.fullmatch(value)) and value.isprintable()


def parse_mail_from(name: str, raw: str) -> str:
    """The sender: ``noreply@example.com`` or ``lorashelf <noreply@example.com>``."""
    value = raw.strip()
    if not value:
        return ""
    address = value
    match = re.fullmatch(r"([^<>\r\n]*)<([^<>]+)>", value)
    if match:
        address = match.group(2).strip()
    if not is_email_address(address) or "\n" in value or "\r" in value:
        raise ConfigError(
            f"{name}={raw!r} is not a sender address (use noreply@example.com or "
            "'lorashelf <noreply@example.com>')"
        )
    return value


def parse_text(name: str, raw: str) -> str:
    return raw.strip()


def parse_master_keys(name: str, raw: str) -> tuple[bytes, ...]:
    """One or more base64 keys of 32 bytes, comma-separated: the first wraps new data
    keys, the others are only read (while ``lorashelf rotate-master-key`` re-wraps)."""
    import base64
    import binascii

    keys = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        url_safe = "-" in part or "_" in part
        try:
            key = base64.b64decode(
                part + "=" * (-len(part) % 4), altchars=b"-_" if url_safe else None, validate=True
            )
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"{name}: a key is not base64 (make one: openssl rand -base64 32)"
            ) from None
        if len(key) != 32:
            raise ConfigError(
                f"{name}: a key must be 32 bytes, base64 (this one is {len(key)} bytes; "
                "make one: openssl rand -base64 32)"
            )
        keys.append(key)
    if not keys:
        raise ConfigError(f"{name}: no key given")
    return tuple(keys)


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


@dataclass(frozen=True)
class Variable:
    """One configuration variable: declared once, loaded and documented from here."""

    field: str  # the Settings (or Limits) attribute it fills
    name: str  # the environment variable
    parse: Callable[[str, str], Any]
    default: str | None  # raw text, parsed like a set value; None: computed at load
    meaning: str
    table: str = "settings"  # its table in docs/configuration.md: "settings" or "limits"
    shown_default: str | None = None  # how the docs show a computed default
    mask: Callable[[str], str] | None = None  # hides secrets wherever a value is shown
