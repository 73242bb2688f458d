"""The abuse limits, declared once like every variable (:mod:`storage.config.variables`):
docs/configuration.md's second table, and :class:`storage.config.settings.Limits`. Every one is
configurable; the defaults are deliberately tight.
"""

from __future__ import annotations

from storage.config.parse import (
    Variable,
    parse_count,
    parse_duration,
    parse_rate,
    parse_size,
)

LIMITS: tuple[Variable, ...] = (
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
        "directives per document (counted before validation)",
        table="limits",
    ),
    Variable(
        "max_errors",
        "LORASHELF_MAX_ERRORS",
        parse_count,
        "20",
        "errors in one answer; past it, one `TOO_MANY_ERRORS` error ends the list "
        "(validation stops there)",
        table="limits",
    ),
    Variable(
        "parsed_documents_bytes",
        "LORASHELF_PARSED_DOCUMENTS_BYTES",
        parse_size,
        "16MiB",
        "memory for documents kept parsed and validated (least recently used out; a "
        "document over an eighth of it is not kept)",
        table="limits",
    ),
    Variable(
        "public_cache_bytes",
        "LORASHELF_PUBLIC_CACHE_BYTES",
        parse_size,
        "32MiB",
        "memory for anonymous answers kept for reuse (least recently used out; an answer "
        "over 1 MiB is not kept)",
        table="limits",
    ),
    Variable(
        "persisted_queries_bytes",
        "LORASHELF_PERSISTED_QUERIES_BYTES",
        parse_size,
        "4MiB",
        "memory for persisted queries (documents that validate, in normal form; least "
        "recently used out)",
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
        "head_timeout",
        "LORASHELF_HEAD_TIMEOUT",
        parse_duration,
        "10s",
        "time a request's line and headers may take to arrive, from the connection's "
        "opening or the request's first byte (408 and closed after it), and the rest of a "
        "body the server answered early",
        table="limits",
    ),
    Variable(
        "send_timeout",
        "LORASHELF_SEND_TIMEOUT",
        parse_duration,
        "60s",
        "time an answer may wait on a client that reads none of it, and a closed "
        "connection's last bytes (the connection is dropped after it)",
        table="limits",
    ),
    Variable(
        "keep_alive",
        "LORASHELF_KEEP_ALIVE",
        parse_duration,
        "75s",
        "time an idle keep-alive connection is held open; longer than clients and proxies "
        "keep theirs (httpx 5 s, nginx 60 s), so that they close first and never send on a "
        "connection the server is closing",
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
        "download_min_rate",
        "LORASHELF_DOWNLOAD_MIN_RATE",
        parse_size,
        "16KiB",
        "bytes a second a download's reader must average after its grace period (cut below it)",
        table="limits",
    ),
    Variable(
        "download_grace",
        "LORASHELF_DOWNLOAD_GRACE",
        parse_duration,
        "60s",
        "seconds a download may take before the minimum rate applies",
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
        "max_connections_per_address",
        "LORASHELF_MAX_CONNECTIONS_PER_ADDRESS",
        parse_count,
        "64",
        "connections one client address may hold open at once (429 and closed beyond; "
        "`LORASHELF_TRUSTED_PROXIES` are exempt)",
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
        "`logIn` attempts per client address (an IPv6 /64 is one client)",
        table="limits",
    ),
    Variable(
        "signup_rate_address",
        "LORASHELF_SIGNUP_RATE_PER_ADDRESS",
        parse_rate,
        "10/hour",
        "`signUp` per client address (an IPv6 /64 is one client)",
        table="limits",
    ),
    Variable(
        "report_rate",
        "LORASHELF_REPORT_RATE_PER_USER",
        parse_rate,
        "20/hour",
        "`reportContent` per signed-in user (`RATE_LIMITED` past it)",
        table="limits",
    ),
    Variable(
        "email_rate",
        "LORASHELF_EMAIL_RATE_PER_USER",
        parse_rate,
        "5/hour",
        "`setEmail` per signed-in user (each sends a verification e-mail)",
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
