"""The schema built for one configuration: its roots, its extensions (limits, error
masking, metrics), and its configuration-dependent wording."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLInputObjectType, print_schema
from graphql.validation import NoSchemaIntrospectionCustomRule, specified_rules
from strawberry.extensions import MaxTokensLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.http.metrics import Measured
from graph.schema.documents import CachedParsing, CachedValidation, Documents
from graph.schema.error_masking import MaskUnexpected, log_errors
from graph.schema.execution import Executor
from graph.schema.limits import limit_rules
from graph.schema.mutation import Mutation
from graph.schema.query import Query
from graph.schema.scalars import SCALARS
from graph.schema.subscriptions import Subscription, WebSocketOperations
from graph.schema.types.relay import NODE_TYPES
from storage.config.settings import Settings
from storage.privacy import lookups
from storage.retention.policy import RetentionPolicy


def visibility_help(settings: Settings) -> str:
    return (
        "PUBLIC shares the dataset with everyone once the version is published. PRIVATE: "
        + RetentionPolicy.of(settings).notice()
    )


class Schema(strawberry.Schema):
    documents: Documents  # its documents, parsed and validated once (graph/schema/documents.py)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


def build_schema(settings: Settings) -> Schema:
    limits = settings.limits
    # Every validation rule, built once per configuration, shared by every request.
    rules = (
        *specified_rules,
        *limit_rules(limits),
        *(() if settings.introspection else (NoSchemaIntrospectionCustomRule,)),
    )
    documents = Documents(max_bytes=limits.parsed_documents_bytes, limits=limits, rules=rules)
    hide_suggestions = not settings.introspection
    extensions: list[Any] = [
        # Measured first: hooks are left in reverse order, so it sees the errors after
        # MaskUnexpected gave them their codes.
        Measured,
        lambda: MaskUnexpected(hide_suggestions=hide_suggestions, max_errors=limits.max_errors),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: CachedParsing(documents=documents),
        lambda: CachedValidation(documents=documents),
        WebSocketOperations,
    ]
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[NODE_TYPES[kind.name][1] for kind in lookups.KINDS],
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=Executor,
    )
    documents.schema = schema._schema
    schema.documents = documents
    # The visibility argument states the configured retention policy.
    for type_name in ("StartDatasetUploadInput", "SetDatasetVisibilityInput"):
        gql_type = schema._schema.type_map[type_name]
        assert isinstance(gql_type, GraphQLInputObjectType)
        gql_type.fields["visibility"].description = visibility_help(settings)
    return schema


def export_sdl(settings: Settings) -> str:
    return print_schema(build_schema(settings)._schema) + "\n"
