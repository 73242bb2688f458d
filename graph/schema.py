"""The schema: queries, mutations, and its configuration-dependent wording."""

from __future__ import annotations

from typing import Annotated, Any

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

from graph import ids
from graph.context import Info
from graph.errors import MaskUnexpected, log_errors
from graph.limits import GuardedValidation, limit_rules
from graph.mutations import Mutation
from graph.scalars import SCALARS
from graph.types import (
    AfterArg,
    Connection,
    FirstArg,
    ModelType,
    ModelVersionType,
    Node,
    NotificationType,
    RetentionPolicy,
    TrainingDatasetType,
    UserType,
    connection,
)
from storage import catalog, lookups
from storage.config import Settings
from storage.lookups import Kind
from storage.policy import RetentionPolicy as Policy

# Every Node type with the kind of object behind it (its lookups). ``node(id)`` reads
# this table; a new Node type adds one line (its class has ``of(row)``).
NODE_TYPES: dict[str, tuple[Kind[Any], Any]] = {
    kind.name: (kind, node_type)
    for kind, node_type in (
        (lookups.USER, UserType),
        (lookups.MODEL, ModelType),
        (lookups.VERSION, ModelVersionType),
        (lookups.DATASET, TrainingDatasetType),
        (lookups.NOTIFICATION, NotificationType),
    )
}


async def resolve_node(info: Info, global_id: str) -> Node | None:
    """``node(id)``: the same visible-lookup as every other path; not allowed is not found."""
    decoded = ids.decode_any(global_id)
    entry = NODE_TYPES.get(decoded[0]) if decoded else None
    if decoded is None or entry is None:
        return None
    kind, node_type = entry
    row = await info.context.loaders.of(kind).load(decoded[1])
    return node_type.of(row) if row is not None else None  # type: ignore[no-any-return]


@strawberry.type(description="Reads.")
class Query:
    @strawberry.field(description="You, when signed in; null when anonymous.")
    def viewer(self, info: Info) -> UserType | None:
        user = info.context.viewer
        return UserType.of(user) if user else None

    @strawberry.field(description="Any object by its global ID; null if you may not see it.")
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global ID.")],
    ) -> Node | None:
        return await resolve_node(info, str(id))

    @strawberry.field(description="A model by its global ID; null if you may not see it.")
    async def model(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The model's global ID.")],
    ) -> ModelType | None:
        pk = ids.decode(str(id), lookups.MODEL.name)
        model = await info.context.loaders.of(lookups.MODEL).load(pk) if pk else None
        return ModelType.of(model) if model is not None else None

    @strawberry.field(
        description="Models you may see, newest first: published ones, and your own drafts."
    )
    async def models(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        owner_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this user's models.")
        ] = None,
    ) -> Connection[ModelType]:
        owner = None
        if owner_id is not None:
            owner = ids.decode(str(owner_id), lookups.USER.name) or 0
        page = await catalog.models_page(
            viewer=info.context.viewer_id, owner_id=owner, first=first, after=after
        )
        return connection(page, ModelType.of)

    @strawberry.field(description="What happens to private datasets, and when.")
    def retention_policy(self, info: Info) -> RetentionPolicy:
        policy = info.context.runtime.policy
        return RetentionPolicy(
            private_retention_seconds=policy.private_retention,
            reminder_offsets_seconds=list(policy.reminders),
            notice=policy.notice(),
        )


def visibility_help(settings: Settings) -> str:
    return (
        "PUBLIC shares the dataset with everyone once the version is published. PRIVATE: "
        + Policy.of(settings).notice()
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
        lambda: MaskUnexpected(hide_suggestions=hide_suggestions),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(list(rules)),
        lambda: GuardedValidation(max_repeats=limits.max_field_repeats),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    schema = Schema(
        query=Query,
        mutation=Mutation,
        types=[node_type for _, node_type in NODE_TYPES.values()],
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
