"""The configuration variables, declared once: the settings field each fills, its
name, its parser, its default and what it means. The same table loads the settings
(:mod:`storage.config.settings`) and writes docs/configuration.md's tables
(:mod:`storage.config.readme`). A declarative table: add a row here for a new variable
(a limit on abuse: in :mod:`storage.config.limits`).
"""

from __future__ import annotations

from storage.config.limits import LIMITS
from storage.config.masks import mask_all, mask_url
from storage.config.parse import (
    Variable,
    parse_blob_url,
    parse_bool,
    parse_count,
    parse_database_url,
    parse_duration,
    parse_duration_or_off,
    parse_durations,
    parse_log_format,
    parse_mail_from,
    parse_master_keys,
    parse_names,
    parse_origins,
    parse_proxies,
    parse_public_url,
    parse_redis_url,
    parse_size,
    parse_smtp_url,
    parse_sweep_interval,
    parse_text,
)

SETTINGS: tuple[Variable, ...] = (
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
        "start_patience",
        "LORASHELF_START_PATIENCE",
        parse_duration,
        "60s",
        "how long `serve`, `worker` and `migrate` wait at start for a database or object "
        "store that is briefly away (starting up, out of connection slots) before giving up "
        "(a `worker` works meanwhile on what needs only the database)",
    ),
    Variable(
        "database_busy_timeout",
        "LORASHELF_DATABASE_BUSY_TIMEOUT",
        parse_duration,
        "15s",
        "how long a write waits for another process's lock (SQLite's busy timeout, "
        "PostgreSQL's `lock_timeout`) before the request answers `TRY_AGAIN`, having "
        "changed nothing",
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
        "master_key",
        "LORASHELF_MASTER_KEY",
        parse_master_keys,
        None,
        "wraps every blob's data key: base64 of 32 bytes (`openssl rand -base64 32`); "
        "rotating, several, the new one first ([Erasure](erasure.md))",
        shown_default="generated once into the data dir (`master_key`, mode 0600)",
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
        "username_quarantine",
        "LORASHELF_USERNAME_QUARANTINE",
        parse_duration,
        "30d",
        "how long the username of a deleted account cannot be signed up again",
    ),
    Variable(
        "export_retention",
        "LORASHELF_EXPORT_RETENTION",
        parse_duration,
        "7d",
        "how long a data export can be downloaded once ready; then it is shredded",
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
        "free space kept on the data dir's disk: a new upload is refused (`STORAGE_FULL`) "
        "unless the largest upload allowed would leave this much (so that the answer never "
        "depends on the size asked for), and one in progress is stopped (507) before it "
        "leaves less",
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
        "for an S3-compatible store (see [Object store (S3)](deployment.md#object-store-s3))",
        shown_default="`file://<data dir>/blobs`",
        mask=mask_url,
    ),
    Variable(
        "public_url",
        "LORASHELF_PUBLIC_URL",
        parse_public_url,
        "",
        "the origin (and path prefix) clients reach lorashelf at, e.g. `https://api.example.com`; "
        "upload and download links are absolute URLs built from it, never from the request's "
        "`Host`. Set it behind a proxy, or when `serve` listens on every interface",
        shown_default="the address `serve` listens on (`http://127.0.0.1:8000`)",
    ),
    Variable(
        "trusted_proxies",
        "LORASHELF_TRUSTED_PROXIES",
        parse_proxies,
        "",
        "addresses or networks of reverse proxies whose `X-Forwarded-For` names the client "
        "(comma-separated, e.g. `10.0.0.5,172.16.0.0/12`; `*` for any): rate limits and "
        "per-address bounds then count real clients, and their own connections are not "
        "bounded per address",
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
    Variable(
        "smtp_url",
        "LORASHELF_SMTP_URL",
        parse_smtp_url,
        "",
        "e-mail: `smtp://user:password@host:587` (STARTTLS, required) or "
        "`smtps://user:password@host:465` (TLS); reminders, deletion and moderation notices "
        "and address verification are then also sent by e-mail (see "
        "[Operating a site](operating.md)); unset: no e-mail at all",
        shown_default="unset",
        mask=mask_url,
    ),
    Variable(
        "mail_from",
        "LORASHELF_MAIL_FROM",
        parse_mail_from,
        "",
        "the sender of e-mail, e.g. `lorashelf <noreply@example.com>` (needed with "
        "`LORASHELF_SMTP_URL`)",
        shown_default="unset",
    ),
    Variable(
        "mail_retry_for",
        "LORASHELF_MAIL_RETRY_FOR",
        parse_duration,
        "2d",
        "how long an e-mail the SMTP server does not take is retried (with back-off) "
        "before it becomes a dead letter (counted in `/metrics`)",
    ),
)

# Every variable: the settings, then the abuse limits (storage/config/limits.py).
VARIABLES: tuple[Variable, ...] = (*SETTINGS, *LIMITS)
