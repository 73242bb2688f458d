"""An ariadne-codegen plugin for lorashelf's schema.

The schema has an enum called ``BaseModel`` (what a LoRA was trained on), and the
generated client's pydantic models derive from a class of that same name. The client
gets the enum as ``BaseModelName`` instead; the values on the wire are unchanged.
"""

from __future__ import annotations

from ariadne_codegen.plugins.base import Plugin
from graphql import GraphQLEnumType, GraphQLSchema

RENAMED = {"BaseModel": "BaseModelName"}


class EnumNames(Plugin):
    def process_schema(self, schema: GraphQLSchema) -> GraphQLSchema:
        for old, new in RENAMED.items():
            enum = schema.type_map.pop(old, None)
            if isinstance(enum, GraphQLEnumType):
                enum.name = new
                schema.type_map[new] = enum
        return schema
