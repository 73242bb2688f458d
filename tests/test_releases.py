"""Releases: released migrations never change (the guard), new ones come after them and
import no application code, one version everywhere, and a changelog entry with an
"Upgrading" note for every release."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest

from tests import releases
from tests.releases import MIGRATIONS, ROOT

pytestmark = pytest.mark.backend_independent(
    reason="the migration files and version strings in the repository"
)

CHANGELOG = ROOT / "CHANGELOG.md"
NUMBERED = re.compile(r"^(\d{4})_\w+\.py$")
# What a migration may import: the standard library, Tortoise, its own package.
ALLOWED = ("tortoise", "storage.migrations")
APPLICATION = ("graph", "jobs", "storage", "bench", "tests")


def declared_version() -> str:
    found: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return found


def migration_files() -> list[Path]:
    return sorted((ROOT / MIGRATIONS).glob("*.py"))


def test_released_migrations_never_change() -> None:
    # given the last release (its tag; in a clone without tags, docs/releases.txt)
    release = releases.last_release()
    released = releases.released_files(release)
    assert any(NUMBERED.match(Path(p).name) for p in released), f"{release.name}: no migrations?"
    # then every file its migrations folder had is here, byte for byte
    changed = [
        path
        for path, content in sorted(released.items())
        if not (ROOT / path).is_file() or (ROOT / path).read_bytes() != content
    ]
    assert changed == [], (
        f"{', '.join(changed)} changed since {release.name} (commit {release.commit[:12]}): a "
        "released migration never changes, or databases that applied it would differ from "
        "new ones. Restore it (git checkout "
        f"{release.name} -- {MIGRATIONS}) and put the change in a new migration."
    )


def test_new_migrations_come_after_the_released_ones_in_one_line() -> None:
    release = releases.last_release()
    released = {
        Path(p).stem for p in releases.released_files(release) if NUMBERED.match(Path(p).name)
    }
    names = [p.stem for p in migration_files() if NUMBERED.match(p.name)]
    last_released = max(released)
    # a migration added since the release is numbered after every released one
    added = [name for name in names if name not in released]
    assert all(name > last_released for name in added), (added, last_released)
    # and each depends on the one before it: one line, no branches
    numbers = [int(name[:4]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), names
    for previous, name in zip(names, names[1:], strict=False):
        tree = ast.parse((ROOT / MIGRATIONS / f"{name}.py").read_text())
        dependencies = [
            ast.literal_eval(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "dependencies" for t in node.targets)
        ]
        assert dependencies == [[("models", previous)]], f"{name} must depend on {previous}"


@pytest.mark.parametrize("path", migration_files(), ids=lambda p: p.name)
def test_a_migration_imports_no_application_code(path: Path) -> None:
    # application code changes; what a migration does must not change with it
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.append(node.module)
    forbidden = [
        name
        for name in imported
        if name.split(".")[0] in APPLICATION and not name.startswith(ALLOWED)
    ]
    assert forbidden == [], (
        f"{path.name} imports {forbidden}: declare what it needs in the migration (frozen "
        "as it is today), not from the application"
    )


def test_the_record_finds_the_last_release_without_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a clone that did not fetch the tags
    tagged = releases.tags()
    monkeypatch.setattr(releases, "tags", lambda: [])
    # then docs/releases.txt still names the last release, holding the same migrations
    found = releases.last_release()
    assert found.source == "record"
    if tagged:
        assert found.name == tagged[0].name
        assert releases.released_files(found) == releases.released_files(tagged[0]), (
            f"docs/releases.txt records commit {found.commit[:12]} for {found.name}, whose "
            f"migrations differ from the tag's ({tagged[0].commit[:12]})"
        )


def test_every_tagged_release_is_recorded() -> None:
    recorded = {r.name for r in releases.recorded()}
    missing = [r.name for r in releases.tags() if r.name not in recorded]
    assert missing == [], f"record {missing} in docs/releases.txt (see its first lines)"


def test_without_tags_or_a_usable_record_the_guard_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given no tags and a record whose commit this clone does not have
    record = tmp_path / "releases.txt"
    record.write_text("v0.1.0 " + "f" * 40 + " 2026-12-07\n")
    monkeypatch.setattr(releases, "tags", lambda: [])
    monkeypatch.setattr(releases, "RECORD", record)
    # then finding the last release fails (a guard that cannot look must not pass)
    with pytest.raises(releases.ReleaseUnknown, match="no release found"):
        releases.last_release()


def test_one_version_everywhere() -> None:
    declared = declared_version()
    # semantic versions; between releases main is the next one's .devN
    match = re.fullmatch(r"(\d+\.\d+\.\d+)(\.dev\d+)?", declared)
    assert match, declared
    release, dev = match.groups()
    # what the installed package says (lorashelf --version and the banner read it)
    assert installed_version("lorashelf") == declared, (
        "the installed metadata is stale: pip install -e . again"
    )
    # a release tag on this very commit names this version, never a .dev one
    at_head = releases.git("tag", "--points-at", "HEAD").split()
    for tag in (t for t in at_head if releases.TAG.match(t)):
        assert tag == f"v{declared}", f"HEAD is tagged {tag} but pyproject.toml says {declared}"
    # and the version never goes back behind the last release (a .dev one is ahead of it)
    last = releases.last_release()
    if dev:
        assert releases.version_key(f"v{release}") > releases.version_key(last.name)
    else:
        assert releases.version_key(f"v{release}") >= releases.version_key(last.name)


def changelog_sections() -> dict[str, str]:
    """CHANGELOG.md's release sections: version -> its text."""
    text = CHANGELOG.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    sections = {}
    for part in parts:
        heading, _, body = part.partition("\n")
        match = re.match(r"(\d+\.\d+\.\d+)\b", heading)
        if match:
            sections[match.group(1)] = body
    return sections


def test_the_changelog_describes_every_release_with_an_upgrading_note() -> None:
    sections = changelog_sections()
    declared = declared_version()
    wanted = {r.version for r in releases.tags()}
    if ".dev" in declared:
        # between releases the coming one is described under "Unreleased"
        next_release = declared.partition(".dev")[0]
        assert re.search(
            rf"^## Unreleased \({re.escape(next_release)}\)$", CHANGELOG.read_text(), re.M
        ), f"CHANGELOG.md has no '## Unreleased ({next_release})' section"
    else:
        wanted.add(declared)
    for version in sorted(wanted):
        assert version in sections, f"CHANGELOG.md has no '## {version}' section"
        assert re.search(r"^### Upgrading$", sections[version], re.M), (
            f"CHANGELOG.md's {version} has no '### Upgrading' note"
        )
