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
from graph.enums import BaseModel, LoraType, ModelSort
from graph.errors import MaskUnexpected, log_errors
from graph.limits import GuardedValidation, limit_rules
from graph.metrics import Measured
from graph.mutations import Mutation
from graph.scalars import SCALARS
from graph.subscriptions import Subscription, WebSocketOperations
from graph.types import (
    AfterArg,
    Connection,
    FirstArg,
    IncludeNsfwArg,
    ModelFileType,
    ModelType,
    ModelVersionType,
    Node,
    NotificationType,
    RetentionPolicy,
    TrainingDatasetType,
    UserType,
    connection,
    opened,
)
from storage import catalog, files, lookups
from storage import models as db
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
        (lookups.FILE, ModelFileType),
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
    row = await info.context.loaders.public(kind).load(decoded[1])
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
        public_id = ids.decode(str(id), lookups.MODEL.name)
        model = await info.context.loaders.public(lookups.MODEL).load(public_id or "")
        return ModelType.of(model) if model is not None else None

    @strawberry.field(
        description=(
            "The catalogue: models you may see (published ones, and your own drafts), "
            "narrowed by the arguments given (all must match) and sorted."
        )
    )
    async def models(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        owner_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this user's models.")
        ] = None,
        query: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "Words that must all appear (case-insensitive, anywhere in a word) in the "
                    "name, description, tags, trained words or owner's name; each at least 3 "
                    "characters."
                )
            ),
        ] = None,
        tag: Annotated[
            str | None, strawberry.argument(description="Only models with this tag.")
        ] = None,
        base_model: Annotated[
            BaseModel | None,
            strawberry.argument(description="Only models with a version for this base model."),
        ] = None,
        type: Annotated[
            LoraType | None, strawberry.argument(description="Only models of this type.")
        ] = None,
        sort: Annotated[
            ModelSort, strawberry.argument(description="The order.")
        ] = ModelSort.NEWEST,
        include_nsfw: IncludeNsfwArg = False,
    ) -> Connection[ModelType]:
        owner = None
        if owner_id is not None:
            owner = ids.decode(str(owner_id), lookups.USER.name) or ""
        narrow = catalog.CatalogueFilter(
            owner_id=owner,
            query=query,
            tag=tag,
            base_model=db.BaseModel(base_model) if base_model is not None else None,
            type=db.LoraType(type) if type is not None else None,
            include_nsfw=include_nsfw,
        )
        page = await catalog.models_page(
            viewer=info.context.viewer_id,
            narrow=narrow,
            sort=db.ModelSort(sort),
            first=first,
            after=opened(info, after),
        )
        return connection(info, page, ModelType.of)

    @strawberry.field(
        description=(
            "The version a local weights file belongs to, found by one of its hashes as the "
            "public downloads it: sha256, autoV2 or autoV3 (any case); null if none you may "
            "see. For tools (A1111, ComfyUI) that identify a file on disk."
        )
    )
    async def model_version_by_hash(
        self,
        info: Info,
        hash: Annotated[str, strawberry.argument(description="A SHA-256, AutoV2 or AutoV3.")],
    ) -> ModelVersionType | None:
        ctx = info.context
        row = await files.version_by_hash(ctx.viewer_id, hash, now=ctx.now())
        return ModelVersionType.of(row) if row is not None else None

    @strawberry.field(description="What happens to private datasets, and when.")
    def retention_policy(self, info: Info) -> RetentionPolicy:
        policy = info.context.runtime.policy
        return RetentionPolicy(
            private_retention_seconds=policy.private_retention,
            reminder_offsets_seconds=list(policy.reminders),
            notice=policy.notice(),
            draft_retention_seconds=policy.draft_retention,
            withheld_header_keys=list(policy.withheld_keys),
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
