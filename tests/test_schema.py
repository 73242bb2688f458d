"""The schema: the committed SDL, descriptions everywhere, the configured policy text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    specified_scalar_types,
)

from graph.schema.build import build_schema, export_sdl
from storage.config.settings import load_settings
from storage.retention.policy import RetentionPolicy

pytestmark = pytest.mark.backend_independent(
    reason="the exported schema text; the API behind it runs on both databases"
)

ROOT = Path(__file__).resolve().parents[1]


def built(env: dict[str, str] | None = None) -> GraphQLSchema:
    schema: GraphQLSchema = build_schema(load_settings(env or {}, create=False))._schema
    return schema


def undescribed(schema: GraphQLSchema) -> list[str]:
    """Every type, field, argument, input field and enum value lacking a description."""
    missing: list[str] = []
    for name, gql_type in schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        if not (gql_type.description or "").strip():
            missing.append(name)
        if isinstance(gql_type, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in gql_type.fields.items():
                if not (field.description or "").strip():
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in field.args.items():
                    if not (arg.description or "").strip():
                        missing.append(f"{name}.{field_name}({arg_name})")
        elif isinstance(gql_type, GraphQLInputObjectType):
            for field_name, input_field in gql_type.fields.items():
                if not (input_field.description or "").strip():
                    missing.append(f"{name}.{field_name}")
        elif isinstance(gql_type, GraphQLEnumType):
            for value_name, value in gql_type.values.items():
                if not (value.description or "").strip():
                    missing.append(f"{name}.{value_name}")
    return missing


def test_export_schema_equals_the_committed_file(tmp_path: Path) -> None:
    # given the committed schema.graphql, and an environment with a non-default policy
    committed = (ROOT / "schema.graphql").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASHELF_")}
    env["LORASHELF_PRIVATE_RETENTION"] = "12h"
    env["LORASHELF_DATA_DIR"] = str(tmp_path / "var")
    # when the command prints the SDL
    result = subprocess.run(
        [sys.executable, "-m", "graph.cli", "export-schema"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    # then it is the committed file byte for byte (the default configuration's schema),
    # and nothing was created on the way
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout == committed
    assert not (tmp_path / "var").exists()


def test_export_sdl_in_process_matches_too() -> None:
    # when / then
    assert export_sdl(load_settings({}, create=False)) == (ROOT / "schema.graphql").read_text()


def test_everything_in_the_schema_is_described() -> None:
    # given the built schema
    schema = built()
    # when every named part is checked
    missing = undescribed(schema)
    # then none lacks a description
    assert missing == [], "no description: " + ", ".join(missing)


def test_schema_uses_bigint_for_byte_counts() -> None:
    # given the built schema
    schema = built()
    # then sizeBytes is the BigInt scalar on output and input
    dataset = schema.type_map["TrainingDataset"]
    upload = schema.type_map["StartDatasetUploadInput"]
    assert isinstance(dataset, GraphQLObjectType)
    assert isinstance(upload, GraphQLInputObjectType)
    assert str(dataset.fields["sizeBytes"].type) == "BigInt!"
    assert str(upload.fields["sizeBytes"].type) == "BigInt!"


def test_visibility_description_states_the_configured_retention() -> None:
    # given a schema built for a 12-hour window (and a 2-day draft lifetime)
    config = {"LORASHELF_PRIVATE_RETENTION": "12h", "LORASHELF_DRAFT_RETENTION": "2d"}
    schema = built(config)
    notice = RetentionPolicy.of(load_settings(config, create=False)).notice()
    # when the visibility inputs are read
    for type_name in ("StartDatasetUploadInput", "SetDatasetVisibilityInput"):
        input_type = schema.type_map[type_name]
        assert isinstance(input_type, GraphQLInputObjectType)
        description = input_type.fields["visibility"].description or ""
        # then they carry the configured notice, not the default one
        assert notice in description
        assert "12 hours" in description
        assert "30 days" not in description


def test_default_schema_states_thirty_days() -> None:
    # given the default configuration
    schema = built()
    # when the upload input is read
    upload = schema.type_map["StartDatasetUploadInput"]
    assert isinstance(upload, GraphQLInputObjectType)
    # then
    assert (
        "Private datasets are visible only to you and are deleted automatically 30 days after "
        "the version is published (or 30 days after upload if it is never published)."
        in (upload.fields["visibility"].description or "")
    )


def test_building_for_one_configuration_does_not_change_another() -> None:
    # given schemas built for two configurations, one after the other
    short = built({"LORASHELF_PRIVATE_RETENTION": "12h"})
    default = built()
    # then each keeps its own wording
    short_upload = short.type_map["StartDatasetUploadInput"]
    default_upload = default.type_map["StartDatasetUploadInput"]
    assert isinstance(short_upload, GraphQLInputObjectType)
    assert isinstance(default_upload, GraphQLInputObjectType)
    assert "12 hours" in (short_upload.fields["visibility"].description or "")
    assert "30 days" in (default_upload.fields["visibility"].description or "")


# Names the usual generators emit beside the schema's types, in the same module: a
# schema type of one of these names breaks the generated client (pydantic models derive
# from BaseModel; graphql-codegen declares Maybe, Scalars, Exact...; ariadne-codegen's
# modules import Field, Enum, Any, Optional...).
GENERATOR_NAMES = frozenset(
    {
        # ariadne-codegen (pydantic, typing, its own base client)
        "BaseModel",
        "Field",
        "ConfigDict",
        "Enum",
        "Any",
        "Optional",
        "List",
        "Union",
        "Literal",
        "Annotated",
        "Dict",
        "Upload",
        "UnsetType",
        "UNSET",
        "AsyncBaseClient",
        # graphql-codegen (typescript plugin helpers, client preset)
        "Maybe",
        "InputMaybe",
        "Exact",
        "MakeOptional",
        "MakeMaybe",
        "MakeEmpty",
        "Incremental",
        "Scalars",
        "TypedDocumentString",
        "DocumentTypeDecoration",
        "FragmentType",
        "DocumentNode",
        "TypedDocumentNode",
        # TypeScript's own types a generated module may refer to
        "Record",
        "Partial",
        "Omit",
        "Pick",
        "Array",
        "Promise",
        "Object",
        "String",
        "Number",
        "Boolean",
        "Symbol",
        "Date",
        "Error",
        "Function",
        "Readonly",
    }
)


def test_no_schema_type_takes_a_name_the_usual_generators_use() -> None:
    # given the schema's own type names
    names = {
        name
        for name in built().type_map
        if not name.startswith("__") and name not in specified_scalar_types
    }
    # then none collides with a name a generated client declares or imports
    assert names & GENERATOR_NAMES == set()
    # and the base-model enum is BaseModelName (fields keep the name baseModel)
    sdl = (ROOT / "schema.graphql").read_text()
    assert "enum BaseModelName {" in sdl and "baseModel: BaseModelName!" in sdl
