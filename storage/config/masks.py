"""What configuration shows of its secrets: URLs with their passwords and unknown query
parameters masked, secrets masked whole, e-mail addresses shortened for logs."""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "********"


# Query parameters shown as they are: connection options known to carry no secret.
# Every other parameter's value is masked (``?password=…``, ``?sslpassword=…``, a
# token under any name): what a URL may hide in its query is open-ended, so the
# list says what is safe to show rather than what is not.
SHOWN_URL_PARAMETERS = frozenset(
    {
        "sslmode",
        "ssl",
        "ssl_cert_reqs",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
        "db",
        "timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "health_check_interval",
        "decode_responses",
        "protocol",
        "region",
        "endpoint",
        "max_size",
        "min_size",
        "maxsize",
        "minsize",
        "schema",
        "options",
    }
)


def mask_url(url: str) -> str:
    """A URL with every secret-bearing part masked: the password of its userinfo
    (``postgres://user:secret@host``), the value of every query parameter not known
    to be harmless (``redis://host?password=secret``), and any fragment."""
    scheme, sep, rest = url.partition("://")
    userinfo = None
    if sep and "@" in rest and not rest.startswith("/"):
        # The userinfo ends at the last "@", whatever it holds: a password with an
        # unescaped "/", "?", "#" or "@" in it (which urlsplit would take for the path,
        # the query or the fragment) is masked all the same; only a plain user name is
        # shown.
        found, _, rest = rest.rpartition("@")
        user, colon, _ = found.partition(":")
        plain = not any(c in user for c in "/?#")
        userinfo = (f"{user}:{MASK}" if colon else user) if plain else MASK
    parts = urlsplit(f"{scheme}{sep}{rest}")
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            shown = unquote_plus(name).strip().lower() in SHOWN_URL_PARAMETERS
            pairs.append(pair if shown else f"{name}={MASK}" if eq else MASK)
        query = "&".join(pairs)
    fragment = MASK if parts.fragment else ""
    if (query, fragment) == (parts.query, parts.fragment):
        masked = f"{scheme}{sep}{rest}"  # no re-spelling: sqlite:///path stays as it is
    else:
        masked = urlunsplit(parts._replace(query=query, fragment=fragment))
    if userinfo is None:
        return masked
    return f"{scheme}{sep}{userinfo}@{masked[len(scheme) + len(sep) :]}"


def mask_all(value: str) -> str:
    return MASK if value else value


def mask_email(address: str | None) -> str:
    """An e-mail address as logs show it: ``a***@e***.com`` (personal data never reaches
    a log whole)."""
    if not address:
        return "(none)"
    local, _, domain = address.partition("@")
    name, dot, tld = domain.rpartition(".")
    return f"{local[:1]}***@{name[:1]}***{dot}{tld}" if dot else f"{local[:1]}***@***"
