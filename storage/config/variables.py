"""The configuration variables, declared once: the settings field each fills, its
name, its parser, its default and what it means. The same table loads the settings
(:mod:`storage.config.settings`) and writes the README's tables
(:mod:`storage.config.readme`). A declarative table: add a row here for a new variable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.config.parse import (
    mask_all,
    mask_url,
    parse_blob_url,
    parse_bool,
    parse_count,
    parse_database_url,
    parse_duration,
    parse_duration_or_off,
    parse_durations,
    parse_log_format,
    parse_names,
    parse_origins,
    parse_public_url,
    parse_rate,
    parse_redis_url,
    parse_size,
    parse_sweep_interval,
    parse_text,
)


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
