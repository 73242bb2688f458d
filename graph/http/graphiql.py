"""GraphiQL served by lorashelf itself: no CDN, nothing loaded from another origin.

The page (``page_response``) loads only same-origin files under ``/graphiql/``:
our own ``graphiql.css`` and ``graphiql-init.js`` (committed, in ``graph/static``)
and the pinned npm files below (``graph/static/vendor``, not committed).

``lorashelf fetch-graphiql`` (``fetch``) downloads those from the npm registry at
set-up, checks each tarball against its pinned ``sha512`` integrity string before
opening it, checks each extracted file against its pinned ``sha256``, and writes it
atomically. Standard library only. It is idempotent: files already present and
matching their pins are not downloaded again.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
URL_PREFIX = "/graphiql"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
FETCH_COMMAND = "lorashelf fetch-graphiql"
MAX_TARBALL_BYTES = 16 * 1024 * 1024  # graphiql's is 3.6 MB


class FetchError(Exception):
    """A download, an integrity check or an archive member went wrong; nothing was written."""


@dataclass(frozen=True)
class File:
    member: str  # path inside the npm tarball
    name: str  # file name under VENDOR_DIR/<package dir>
    sha256: str  # hex digest of the extracted file


@dataclass(frozen=True)
class Package:
    name: str  # npm name, maybe scoped: @graphiql/plugin-explorer
    version: str
    integrity: str  # the registry's dist.integrity for this version's tarball
    files: tuple[File, ...]

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def directory(self) -> str:
        """Its directory under VENDOR_DIR, versioned: a new pin never mixes with an old one."""
        return f"{self.basename}-{self.version}"

    def tarball_url(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}/-/{self.basename}-{self.version}.tgz"


# The versions strawberry-graphql 0.341's own GraphiQL page loads from unpkg.
# To change one: take dist.integrity from https://registry.npmjs.org/<name>/<version>
# and the sha256 of each extracted file.
PACKAGES: tuple[Package, ...] = (
    Package(
        "react",
        "18.2.0",
        "sha512-/3IjMdb2L9QbBdWiW5e3P2/npwMBaU9mHCSCUzNln0ZCYbcfTsGbTJrU/kGemdH2IWmB2ioZ+zkxtmq6g09fGQ==",
        (
            File(
                "package/umd/react.production.min.js",
                "react.production.min.js",
                "4b4969fa4ef3594324da2c6d78ce8766fbbc2fd121fff395aedf997db0a99a06",
            ),
        ),
    ),
    Package(
        "react-dom",
        "18.2.0",
        "sha512-6IMTriUmvsjHUjNtEDudZfuDQUoWXVxKHhlEGSk81n4YFS+r/Kl99wXiwlVXtPBtJenozv2P+hxDsw9eA7Xo6g==",
        (
            File(
                "package/umd/react-dom.production.min.js",
                "react-dom.production.min.js",
                "21758ed084cd0e37e735722ee4f3957ea960628a29dfa6c3ce1a1d47a2d6e4f7",
            ),
        ),
    ),
    Package(
        "graphiql",
        "3.8.3",
        "sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        (
            File(
                "package/graphiql.min.css",
                "graphiql.min.css",
                "b1868247f8e0502cd869e581f5f3cb55b334862e7f51b1d6cbace11059b9adc2",
            ),
            File(
                "package/graphiql.min.js",
                "graphiql.min.js",
                "22faab94067b695e5f7959619fbe686ebcc8955002a0c97d986bcbba4ad4bc2c",
            ),
        ),
    ),
    Package(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "sha512-9j+kg2UjtLZD5EBmGjeWHkoVVxtbShYg2DzbUVebibnZYZM/iMBEF4vaccXJIAm5KaomIPLx0aoNs4LbODyc3Q==",
        (
            File(
                "package/dist/style.css",
                "style.css",
                "762850cb69873400d0ab1737c6158aee91f5c38195bc4a30ee02a3c5d5af4e01",
            ),
            File(
                "package/dist/index.umd.js",
                "index.umd.js",
                "083e37e501d3e3920a60e627b82191af056009124dce82a332e8ac74db6ca38b",
            ),
        ),
    ),
)

# Our own files, committed next to this module.
OWN_STYLESHEET = "graphiql.css"
OWN_SCRIPT = "graphiql-init.js"


# Checking what is installed -------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _vendor_path(vendor_dir: Path, package: Package, file: File) -> Path:
    return vendor_dir / package.directory / file.name


def problems(vendor_dir: Path | None = None, packages: Sequence[Package] = PACKAGES) -> list[str]:
    """What is wrong with the installed files (missing or not matching a pin); [] if none."""
    vendor_dir = vendor_dir or VENDOR_DIR
    found: list[str] = []
    for package in packages:
        for file in package.files:
            path = _vendor_path(vendor_dir, package, file)
            if not path.is_file():
                found.append(f"missing: {path}")
            elif _sha256_file(path) != file.sha256:
                found.append(f"does not match its pinned sha256: {path}")
    return found


def missing(vendor_dir: Path | None = None, packages: Sequence[Package] = PACKAGES) -> list[Path]:
    """The vendored files that are not there (a cheap check, for every page view)."""
    vendor_dir = vendor_dir or VENDOR_DIR
    paths = (_vendor_path(vendor_dir, p, f) for p in packages for f in p.files)
    return [path for path in paths if not path.is_file()]


# Fetching -------------------------------------------------------------------------


def _check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise FetchError(f"{what}: unsupported integrity string {integrity!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise FetchError(
            f"{what}: the tarball does not match its pinned integrity "
            f"(expected sha512-{expected}, got sha512-{actual}); refusing it"
        )


def _download(url: str, timeout: float) -> bytes:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("https", "http", "file"):
        raise FetchError(f"{url}: only https://, http:// and file:// registries are supported")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        raise FetchError(f"{url}: download failed: {exc}") from exc
    if len(data) > MAX_TARBALL_BYTES:
        raise FetchError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes; refusing it")
    return data


def _extract(data: bytes, package: Package) -> dict[File, bytes]:
    """The wanted members' contents, each checked against its pin (nothing written)."""
    contents: dict[File, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for file in package.files:
                try:
                    member = archive.getmember(file.member)
                except KeyError:
                    raise FetchError(
                        f"{package.name}: {file.member} is not in the tarball"
                    ) from None
                if not member.isfile():
                    raise FetchError(f"{package.name}: {file.member} is not a regular file")
                handle = archive.extractfile(member)
                assert handle is not None
                body = handle.read()
                if hashlib.sha256(body).hexdigest() != file.sha256:
                    raise FetchError(
                        f"{package.name}: {file.member} does not match its pinned sha256"
                    )
                contents[file] = body
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FetchError(f"{package.name}: the tarball cannot be read: {exc}") from exc
    return contents


def _write_atomically(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def fetch(
    *,
    vendor_dir: Path | None = None,
    registry: str = DEFAULT_REGISTRY,
    packages: Sequence[Package] = PACKAGES,
    timeout: float = 60,
    say: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Install every package's files; return the names of the packages downloaded.

    A package whose files are all present and match their pins is skipped. A
    package is downloaded whole into memory, verified, then its files are written
    (each atomically); on any mismatch nothing of that package is written.
    """
    vendor_dir = vendor_dir or VENDOR_DIR
    fetched: list[str] = []
    for package in packages:
        if not problems(vendor_dir, [package]):
            say(f"{package.name}@{package.version}: present and verified")
            continue
        url = package.tarball_url(registry)
        say(f"{package.name}@{package.version}: downloading {url}")
        data = _download(url, timeout)
        _check_integrity(data, package.integrity, f"{package.name}@{package.version}")
        for file, body in _extract(data, package).items():
            _write_atomically(_vendor_path(vendor_dir, package, file), body)
        fetched.append(package.name)
        say(f"{package.name}@{package.version}: verified and installed")
    return fetched


# The page ---------------------------------------------------------------------------


def _sri(sha256_hex: str) -> str:
    return "sha256-" + base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _own(name: str) -> tuple[str, str]:
    path = STATIC_DIR / name
    return f"{URL_PREFIX}/{name}", _sri(_sha256_file(path))


def _vendored(packages: Iterable[Package], suffix: str) -> list[tuple[str, str]]:
    return [
        (f"{URL_PREFIX}/vendor/{p.directory}/{f.name}", _sri(f.sha256))
        for p in packages
        for f in p.files
        if f.name.endswith(suffix)
    ]


_READY = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>lorashelf GraphiQL</title>
    <link rel="icon" href="data:,">
{styles}
  </head>
  <body>
    <div id="graphiql">Loading...</div>
{scripts}
  </body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>lorashelf GraphiQL: not installed</title>
    <link rel="icon" href="data:,">
  </head>
  <body>
    <h1>GraphiQL is not installed on this server</h1>
    <p>lorashelf serves GraphiQL's files itself and never loads them from a CDN.
    They have not been fetched yet: run <code>{command}</code> (<code>scripts/serve</code>
    does it for you), then reload this page.</p>
    <p>Missing:</p>
    <ul>
{missing}
    </ul>
    <p>The API itself works: send GraphQL operations as a POST to this URL with
    <code>Content-Type: application/json</code>.</p>
  </body>
</html>
"""


def missing_message(paths: Sequence[Path]) -> str:
    return (
        f"GraphiQL's files are missing ({len(paths)} of them, e.g. {paths[0]}): "
        f"run `{FETCH_COMMAND}` to fetch them; the page at /graphql explains it meanwhile"
    )


def page_html(vendor_dir: Path | None = None) -> tuple[int, str]:
    """The status and HTML of the GraphiQL page: the IDE, or how to install it."""
    absent = missing(vendor_dir)
    if absent:
        items = "\n".join(f"      <li><code>{html.escape(str(p))}</code></li>" for p in absent)
        return 503, _MISSING.format(command=html.escape(FETCH_COMMAND), missing=items)
    styles = [*_vendored(PACKAGES, ".css"), _own(OWN_STYLESHEET)]
    scripts = [*_vendored(PACKAGES, ".js"), _own(OWN_SCRIPT)]
    return 200, _READY.format(
        styles="\n".join(
            f'    <link rel="stylesheet" href="{href}" integrity="{sri}">' for href, sri in styles
        ),
        scripts="\n".join(
            f'    <script src="{src}" integrity="{sri}"></script>' for src, sri in scripts
        ),
    )


def page_response(vendor_dir: Path | None = None) -> HTMLResponse:
    status, body = page_html(vendor_dir)
    return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})
