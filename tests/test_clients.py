"""Typed clients, generated the way their users generate them and run against a live
server: ariadne-codegen (Python; in its own virtualenv, .venv-codegen, made by
scripts/test) and graphql-codegen (TypeScript; the web app's node_modules, made by
scripts/build-web), each with its defaults and with the documented configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.processes import serve

pytestmark = pytest.mark.backend_independent(
    reason="generated clients against the schema; the API beneath them is tested on both databases"
)

ROOT = Path(__file__).resolve().parent.parent
CODEGEN = ROOT / ".venv-codegen" / "bin"
NODE_MODULES = ROOT / "web" / "node_modules"

DEFAULT_CLIENT_SCRIPT = """
import asyncio, sys
from graphql_client import Client
from graphql_client.enums import BaseModelName
from graphql_client.input_types import CreateModelInput, CreateModelVersionInput, SignUpInput

async def main(url):
    anonymous = Client(url=url)
    policy = await anonymous.retention_policy()
    assert "30 days" in policy.retention_policy.notice, policy
    signed = await anonymous.sign_up(SignUpInput(username="codegen", password="correct horse battery"))
    assert signed.sign_up.user_errors == [], signed
    taken = await anonymous.sign_up(SignUpInput(username="codegen", password="correct horse battery"))
    assert [e.code for e in taken.sign_up.user_errors] == ["USERNAME_TAKEN"], taken
    me = Client(url=url, headers={"Authorization": f"Bearer {signed.sign_up.token}"})
    assert (await me.viewer()).viewer.username == "codegen"
    made = await me.create_model(CreateModelInput(name="Cats", description="a LoRA"))
    model = made.create_model.model
    version = await me.create_model_version(
        CreateModelVersionInput(model_id=model.id, name="v1", base_model=BaseModelName.PONY)
    )
    assert version.create_model_version.version.base_model is BaseModelName.PONY, version
    page = await anonymous.front_page(first=5)
    assert page.models.edges == [] and page.models.page_info.has_next_page is False
    print("client ok")

asyncio.run(main(sys.argv[1]))
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def ariadne_codegen() -> str:
    path = CODEGEN / "ariadne-codegen"
    assert path.exists(), "run scripts/test: it makes .venv-codegen (ariadne-codegen)"
    return str(path)


def node_tool(name: str) -> str:
    path = NODE_MODULES / ".bin" / name
    assert path.exists(), "run scripts/build-web: it installs graphql-codegen into web/"
    return str(path)


def test_a_default_ariadne_codegen_config_makes_a_client_that_runs(tmp_path: Path) -> None:
    # given ariadne-codegen's defaults: only where the schema and the operations are
    shutil.copy(ROOT / "schema.graphql", tmp_path / "schema.graphql")
    shutil.copy(ROOT / "docs" / "clients" / "operations.graphql", tmp_path / "operations.graphql")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.ariadne-codegen]\nschema_path = "schema.graphql"\n'
        'queries_path = "operations.graphql"\n'
    )
    # when the client is generated
    run([ariadne_codegen()], cwd=tmp_path)
    assert (tmp_path / "graphql_client" / "client.py").exists()
    # then it imports, and signs up, reads and writes through a real server
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        ran = run(
            [str(CODEGEN / "python"), "-c", DEFAULT_CLIENT_SCRIPT, f"{server.url}/graphql"],
            cwd=tmp_path,
        )
    assert "client ok" in ran.stdout


def test_the_documented_python_client_and_its_example_run(tmp_path: Path) -> None:
    # given the documented config (docs/clients/python) in a copy of the repository's layout
    clients = tmp_path / "docs" / "clients"
    shutil.copytree(
        ROOT / "docs" / "clients",
        clients,
        ignore=shutil.ignore_patterns("lorashelf_client", "node_modules", "gql", "dist"),
    )
    shutil.copy(ROOT / "schema.graphql", tmp_path / "schema.graphql")
    work = clients / "python"
    # when the client is generated as the README says
    run([ariadne_codegen()], cwd=work)
    # then the example (URL, bearer token, an Idempotency-Key) runs against a real server
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        ran = run([str(CODEGEN / "python"), "example.py", f"{server.url}/graphql"], cwd=work)
    assert "Private datasets are visible only to you" in ran.stdout
    assert "model 'Cats', version v1 (SDXL_1_0)" in ran.stdout


README_SNIPPET_HARNESS = """
import asyncio, sys, uuid
from lorashelf_client import Lorashelf
from lorashelf_client.input_types import CreateModelInput, SignUpInput

async def main():
    signed = await Lorashelf(url=sys.argv[1]).sign_up(
        SignUpInput(username="snippet", password="correct horse battery"))
    token = signed.sign_up.token
{snippet}
    assert made.create_model.user_errors == [], made
    print("made", made.create_model.model.name)

asyncio.run(main())
"""


def readme_python_snippet() -> str:
    """The README's Python example (in "The contract in short"), as written."""
    blocks = re.findall(
        r"^( *)```python\n(.*?)^\1```", (ROOT / "README.md").read_text(), re.M | re.S
    )
    assert len(blocks) == 1, "the README shows one Python example"
    return textwrap.dedent(blocks[0][1])


def test_the_readmes_python_snippet_runs_as_written(tmp_path: Path) -> None:
    # given the client generated from the documented config
    clients = tmp_path / "docs" / "clients"
    shutil.copytree(
        ROOT / "docs" / "clients",
        clients,
        ignore=shutil.ignore_patterns("lorashelf_client", "node_modules", "gql", "dist"),
    )
    shutil.copy(ROOT / "schema.graphql", tmp_path / "schema.graphql")
    work = clients / "python"
    run([ariadne_codegen()], cwd=work)
    snippet = readme_python_snippet()
    assert "http://127.0.0.1:8000/graphql" in snippet
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        # when the README's lines run with a signed-up user's token, pointed at this
        # server instead of the default address
        script = README_SNIPPET_HARNESS.format(
            snippet=textwrap.indent(snippet.replace("http://127.0.0.1:8000", server.url), "    ")
        )
        (work / "snippet.py").write_text(script)
        ran = run([str(CODEGEN / "python"), "snippet.py", f"{server.url}/graphql"], cwd=work)
    # then the model is made
    assert "made Cats" in ran.stdout


def test_a_default_graphql_codegen_client_preset_type_checks(tmp_path: Path) -> None:
    # given graphql-codegen's client preset with its defaults over the schema and operations
    shutil.copy(ROOT / "schema.graphql", tmp_path / "schema.graphql")
    shutil.copy(ROOT / "docs" / "clients" / "operations.graphql", tmp_path / "operations.graphql")
    (tmp_path / "codegen.json").write_text(
        '{"schema": "schema.graphql", "documents": ["operations.graphql"],'
        ' "generates": {"gql/": {"preset": "client"}}}'
    )
    (tmp_path / "tsconfig.json").write_text(
        '{"compilerOptions": {"strict": true, "module": "ESNext", "target": "ES2022",'
        ' "moduleResolution": "bundler", "noEmit": true}, "include": ["gql"]}'
    )
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    # when it generates
    run([node_tool("graphql-codegen"), "--config", "codegen.json"], cwd=tmp_path)
    generated = (tmp_path / "gql" / "graphql.ts").read_text()
    assert "export type BaseModelName" in generated or "export enum BaseModelName" in generated
    # then the output type-checks as it is
    run([node_tool("tsc"), "--noEmit", "-p", "tsconfig.json"], cwd=tmp_path)


def test_the_documented_typescript_example_runs_against_a_live_server(tmp_path: Path) -> None:
    # given the TypeScript example (docs/clients/typescript, its own package.json) in a
    # copy of the repository's layout, with the packages its package.json names
    clients = tmp_path / "docs" / "clients"
    shutil.copytree(
        ROOT / "docs" / "clients",
        clients,
        ignore=shutil.ignore_patterns("lorashelf_client", "node_modules", "gql", "dist"),
    )
    shutil.copy(ROOT / "schema.graphql", tmp_path / "schema.graphql")
    work = clients / "typescript"
    (work / "node_modules").symlink_to(NODE_MODULES)
    # when it is built as its README comment says (codegen, then tsc)
    run([node_tool("graphql-codegen"), "--config", "codegen.ts"], cwd=work)
    run([node_tool("tsc")], cwd=work)
    # then it signs up and creates a model and a version through a real server
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        ran = run(["node", "dist/example.js", f"{server.url}/graphql"], cwd=work)
    assert "Private datasets are visible only to you" in ran.stdout
    assert 'model "Cats", version v1 (SDXL_1_0)' in ran.stdout
