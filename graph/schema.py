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
    query_error,
)
from storage import access, catalog, notifications
from storage.config import Settings
from storage.errors import ServiceError


async def resolve_node(info: Info, global_id: str) -> Node | None:
    """``node(id)``: the same rule as every other path; not allowed is not found."""
    decoded = ids.decode_any(global_id)
    if decoded is None:
        return None
    kind, pk = decoded
    ctx = info.context
    viewer = ctx.viewer_id
    loaders = ctx.loaders
    if kind == "User":
        user = await loaders.user.load(pk)
        return UserType.of(user) if user else None
    if kind == "Model":
        model = await loaders.model.load(pk)
        return ModelType.of(model) if model and access.can_see_model(viewer, model) else None
    if kind == "ModelVersion":
        version = await loaders.version.load(pk)
        if version and access.can_see_version(viewer, version):
            return ModelVersionType.of(version)
        return None
    if kind == "TrainingDataset":
        dataset = await loaders.dataset.load(pk)
        if dataset is None:
            return None
        version = await loaders.version.load(dataset.version_id)
        if version and access.can_see_dataset(viewer, dataset, version):
            return TrainingDatasetType.of(dataset)
        return None
    if kind == "Notification":
        row = await notifications.notification_of(user_id=viewer, notification_id=pk)
        return NotificationType.of(row) if row else None
    return None


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
        pk = ids.decode(str(id), "Model")
        model = await info.context.loaders.model.load(pk) if pk else None
        if model is None or not access.can_see_model(info.context.viewer_id, model):
            return None
        return ModelType.of(model)

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
            owner = ids.decode(str(owner_id), "User") or 0
        try:
            page = await catalog.models_page(
                viewer=info.context.viewer_id, owner_id=owner, first=first, after=after
            )
        except ServiceError as exc:
            raise query_error(exc) from None
        return connection(page, ModelType.of)

    @strawberry.field(description="What happens to private datasets, and when.")
    def retention_policy(self, info: Info) -> RetentionPolicy:
        settings = info.context.services.settings
        return RetentionPolicy(
            private_retention_seconds=settings.private_retention,
            reminder_offsets_seconds=list(settings.reminders),
            notice=settings.retention_notice(),
        )


def visibility_help(settings: Settings) -> str:
    return (
        "PUBLIC shares the dataset with everyone once the version is published. PRIVATE: "
        + settings.retention_notice()
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
        types=[UserType, ModelType, ModelVersionType, TrainingDatasetType, NotificationType],
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
