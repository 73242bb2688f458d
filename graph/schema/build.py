"""The schema built for one configuration: its roots, its extensions (limits, error
masking, metrics), and its configuration-dependent wording."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLInputObjectType, print_schema
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.http.metrics import Measured
from graph.schema.error_masking import MaskUnexpected, log_errors
from graph.schema.limits import GuardedValidation, limit_rules
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
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


def build_schema(settings: Settings) -> strawberry.Schema:
    limits = settings.limits
    rules = limit_rules(limits)  # built once per configuration, shared by every request
    hide_suggestions = not settings.introspection
    extensions: list[Any] = [
        # Measured first: hooks are left in reverse order, so it sees the errors after
        # MaskUnexpected gave them their codes.
        Measured,
        lambda: MaskUnexpected(hide_suggestions=hide_suggestions),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(list(rules)),
        lambda: GuardedValidation(max_repeats=limits.max_field_repeats),
        WebSocketOperations,
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[NODE_TYPES[kind.name][1] for kind in lookups.KINDS],
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
    # The visibility argument states the configured retention policy.
    for type_name in ("StartDatasetUploadInput", "SetDatasetVisibilityInput"):
        gql_type = schema._schema.type_map[type_name]
        assert isinstance(gql_type, GraphQLInputObjectType)
        gql_type.fields["visibility"].description = visibility_help(settings)
    return schema


def export_sdl(settings: Settings) -> str:
    return print_schema(build_schema(settings)._schema) + "\n"
