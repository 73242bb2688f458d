"""`lorashelf fetch-graphiql`: pinned tarballs, verified before use, written atomically.

These use a throwaway package in a file:// "registry", so no network is needed; the
real pins are exercised by scripts/test (which fetches) and test_graphiql_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from graph.http import graphiql
from graph.http.graphiql import FetchError, File, Package

pytestmark = pytest.mark.backend_independent(reason="GraphiQL's pinned static files")


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


SCRIPT = b"window.Demo = 1;\n"
STYLE = b".demo { color: red }\n"


def publish(registry: Path, data: bytes) -> None:
    """Put a tarball where a registry keeps @demo/widget 1.0.0."""
    path = registry / "@demo" / "widget" / "-" / "widget-1.0.0.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def demo_package(pinned: bytes) -> Package:
    return Package(
        "@demo/widget",
        "1.0.0",
        integrity(pinned),
        (
            File("package/dist/widget.js", "widget.js", hashlib.sha256(SCRIPT).hexdigest()),
            File("package/dist/widget.css", "widget.css", hashlib.sha256(STYLE).hexdigest()),
        ),
    )


GOOD = tarball(
    {"package/dist/widget.js": SCRIPT, "package/dist/widget.css": STYLE, "package/x": b"unused"}
)


def test_fetch_installs_only_the_pinned_files_and_then_skips_them(tmp_path: Path) -> None:
    # given a registry holding the pinned tarball
    registry, vendor = tmp_path / "registry", tmp_path / "vendor"
    publish(registry, GOOD)
    package = demo_package(GOOD)
    # when fetched
    fetched = graphiql.fetch(vendor_dir=vendor, registry=registry.as_uri(), packages=[package])
    # then exactly the wanted files are installed, verified, with no temp files left
    assert fetched == ["@demo/widget"]
    installed = sorted(p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file())
    assert installed == ["widget-1.0.0/widget.css", "widget-1.0.0/widget.js"]
    assert (vendor / "widget-1.0.0" / "widget.js").read_bytes() == SCRIPT
    assert graphiql.problems(vendor, [package]) == []
    # when fetched again with the registry gone, nothing is downloaded
    (registry / "@demo" / "widget" / "-" / "widget-1.0.0.tgz").unlink()
    assert graphiql.fetch(vendor_dir=vendor, registry=registry.as_uri(), packages=[package]) == []
    # but a damaged file is noticed and fetched again
    (vendor / "widget-1.0.0" / "widget.js").write_bytes(b"tampered")
    assert graphiql.problems(vendor, [package]) != []
    publish(registry, GOOD)
    graphiql.fetch(vendor_dir=vendor, registry=registry.as_uri(), packages=[package])
    assert (vendor / "widget-1.0.0" / "widget.js").read_bytes() == SCRIPT


def test_a_tarball_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    # given the registry serves a different tarball than the one pinned
    registry, vendor = tmp_path / "registry", tmp_path / "vendor"
    evil = tarball({"package/dist/widget.js": b"steal()", "package/dist/widget.css": STYLE})
    publish(registry, evil)
    # when fetched, then it is refused and nothing is written
    with pytest.raises(FetchError, match="does not match its pinned integrity"):
        graphiql.fetch(vendor_dir=vendor, registry=registry.as_uri(), packages=[demo_package(GOOD)])
    assert not vendor.exists()


def test_a_pinned_tarball_whose_file_does_not_match_is_refused(tmp_path: Path) -> None:
    # given a tarball that matches its (wrong) pin but holds another file than pinned
    registry, vendor = tmp_path / "registry", tmp_path / "vendor"
    other = tarball({"package/dist/widget.js": b"other()", "package/dist/widget.css": STYLE})
    publish(registry, other)
    with pytest.raises(FetchError, match="does not match its pinned sha256"):
        graphiql.fetch(
            vendor_dir=vendor, registry=registry.as_uri(), packages=[demo_package(other)]
        )
    assert not vendor.exists()


def test_an_unreachable_registry_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="download failed"):
        graphiql.fetch(
            vendor_dir=tmp_path / "vendor",
            registry=(tmp_path / "nowhere").as_uri(),
            packages=[demo_package(GOOD)],
        )


def test_the_pins_are_the_versions_strawberrys_page_used() -> None:
    pinned = {p.name: p.version for p in graphiql.PACKAGES}
    assert pinned == {
        "react": "18.2.0",
        "react-dom": "18.2.0",
        "graphiql": "3.8.3",
        "@graphiql/plugin-explorer": "1.0.2",
    }
    for package in graphiql.PACKAGES:
        assert package.integrity.startswith("sha512-") and len(package.integrity) == 95
        assert all(len(f.sha256) == 64 for f in package.files)
    explorer = graphiql.PACKAGES[-1]
    assert explorer.tarball_url(graphiql.DEFAULT_REGISTRY) == (
        "https://registry.npmjs.org/@graphiql/plugin-explorer/-/plugin-explorer-1.0.2.tgz"
    )
