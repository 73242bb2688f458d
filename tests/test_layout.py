"""The layout keeps the design: dependencies point one way (graph -> jobs -> storage), no
module imports itself back in a circle, every module imports on its own, modules stay
small, and docs/architecture.md names only paths that exist."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent(
    reason="the import graph and module sizes of the source tree"
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graph", "jobs", "storage")
ALLOWED = {
    "graph": {"graph", "jobs", "storage"},
    "jobs": {"jobs", "storage"},
    "storage": {"storage"},
}
MOST_LINES = 420  # "about 400": a module longer than that holds more than one noun
MIGRATIONS = ROOT / "storage" / "migrations"


def modules() -> dict[str, Path]:
    """Every module of the three packages (migrations excluded: a historical record), by
    dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if MIGRATIONS in path.parents:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions included), except those only a
    type checker runs (``if TYPE_CHECKING:``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def imported(name: str) -> set[str]:
    """The project modules ``name`` imports: ``from a.b import c`` counts ``a.b.c`` when
    that is a module, else ``a.b``."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        found.update(t for t in targets if t.split(".")[0] in PACKAGES)
    return found - {name}


GRAPH = {name: imported(name) for name in MODULES}


def test_dependencies_point_one_way() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[name.split(".")[0]]
    )
    assert wrong == []


def test_no_module_imports_itself_back() -> None:
    """No circle in the import graph (a package importing its own modules aside)."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH.get(name, ())):
            if target not in GRAPH or name.startswith(target + "."):
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert cycles == []


# Imported first by a parent that has loaded every third-party module the project uses
# (and none of the project's own), then in a forked child per module: the same check as
# a fresh interpreter per module, since a circle or a missing import is always between
# the project's modules, at a fraction of the cost (no interpreter start, no third-party
# imports per module).
_FORKED_IMPORTS = """
import importlib, os, sys
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
failed = []
for name in sys.argv[1].split(','):
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def _third_party() -> list[str]:
    found: set[str] = set()
    for path in MODULES.values():
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return sorted(name for name in found if name.split(".")[0] not in PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_on_its_own(package: str) -> None:
    """Each module, imported first (in a process that has imported none of the project's
    modules), imports: no order of imports elsewhere hides a circle or a missing import."""
    names = [name for name in MODULES if name.split(".")[0] == package]
    result = subprocess.run(
        [sys.executable, "-c", _FORKED_IMPORTS, ",".join(names), *_third_party()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == ""


def test_the_packages_import_together() -> None:
    for name in MODULES:
        importlib.import_module(name)


def test_modules_stay_small() -> None:
    long = sorted(
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in MODULES.values()
        if (lines := len(path.read_text().splitlines())) > MOST_LINES
    )
    assert long == []


# docs/architecture.md ----------------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
# A path the document names: `graph/...`, `storage/...`, `jobs/...`, `tests/...` and the
# top-level files, in backticks, optionally followed by `:name` (a function or class).
# (A bare module name, `tasks.py`, is prose about the folder just named.)
PATH = re.compile(
    r"`((?:graph|storage|jobs|tests|bench|scripts|docs)/[\w./-]*|[\w-]+\.(?:md|toml|graphql))"
    r"(?::([\w.]+))?`"
)


def named_paths() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in PATH.finditer(ARCHITECTURE.read_text())]


def test_the_architecture_document_names_paths() -> None:
    assert len(named_paths()) > 40


@pytest.mark.parametrize("path,name", sorted(set(named_paths()), key=lambda p: (p[0], p[1] or "")))
def test_every_path_the_architecture_document_names_exists(path: str, name: str | None) -> None:
    target = ROOT / path
    assert target.exists(), f"docs/architecture.md names {path}, which does not exist"
    if name is not None and target.suffix == ".py":
        tree = ast.parse(target.read_text())
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        } | {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        assert name.split(".")[0] in defined, f"{path} defines no {name}"


def tree_entries() -> list[str]:
    """The paths the document's tree shows (its first fenced block after "## The tree"):
    each line a folder (ending in ``/``) or a module, then its description; nested by
    indentation."""
    text = ARCHITECTURE.read_text()
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    found, parents = [], []  # parents: (indent, folder)
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r"\s{2,}", line.strip())[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        base = "".join(folder for _, folder in parents)
        if names.endswith("/"):
            found.append(base + names)
            parents.append((indent, names))
        else:
            found.extend(base + name for name in names.split(", "))
    return found


def test_the_tree_shows_every_folder_and_module() -> None:
    everything = {
        f"{path.parent.relative_to(ROOT)}/"
        if path.name == "__init__.py"
        else str(path.relative_to(ROOT))
        for path in MODULES.values()
    }
    assert everything - set(tree_entries()) == set()


@pytest.mark.parametrize("entry", tree_entries())
def test_every_entry_of_the_tree_exists(entry: str) -> None:
    assert (ROOT / entry).exists(), f"the tree in docs/architecture.md shows {entry}"


# Where changes begin ------------------------------------------------------------------

# A service that a request calls makes its change in ``storage.changes.transaction``:
# that is what records a commit for the request (so no answer says "nothing was
# changed" after one), marks its Idempotency-Key, moves the public generation and
# learns the outcome of a commit whose answer was lost. A transaction of its own is
# for work no request's answer reports, each here with why.
OWN_TRANSACTIONS = {
    "storage/account_deletion.py": "destroying an account's keys after its mark committed",
    "storage/downloads.py": "counting a download after its last byte, in a task",
    "storage/encryption.py": "encrypt-existing: the command and the sweep",
    "storage/files.py": "a version's primary file, inside the change that needs it",
    "storage/headers.py": "shredding a header at the end of its window (a job)",
    "storage/operators.py": "granting the role: the command line only",
    "storage/retention/batches.py": "mass expiry: claims and tombstones (jobs)",
    "storage/retention/deletion.py": "a dataset's deletion steps (jobs)",
    "storage/retention/header_firewall.py": "re-planning a file's withheld keys (jobs)",
    "storage/retention/notices.py": "reminders and deletion notices (jobs)",
    "storage/uploads.py": "releasing a failed upload's claim (its answer is the refusal)",
}


def test_changes_begin_in_one_place() -> None:
    begun = {
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if path.parts[-2] != "migrations" and "in_transaction(" in path.read_text()
    } - {"storage/changes.py", "storage/db/sqlite.py", "storage/db/postgresql.py"}  # the mechanism
    assert begun == set(OWN_TRANSACTIONS)
