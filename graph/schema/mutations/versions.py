"""Model version mutations: create, change, publish and delete a version."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.enums import BaseModelName
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    pk,
    user_errors_field,
)
from graph.schema.types.versions import ModelVersionType
from storage import catalog
from storage.db import enums as stored
from storage.privacy import lookups

WORDS_HELP = "Trigger words to put in a prompt: at most 20, each at most 100 characters."


@strawberry.input(description="Add a draft version to one of your models.")
class CreateModelVersionInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")
    name: str = strawberry.field(description="The version's name, e.g. v1.")
    base_model: BaseModelName = strawberry.field(
        description=(
            "The base checkpoint it was trained for (a file's "
            "architecture.suggestedBaseModel can pre-fill it)."
        )
    )
    trained_words: list[str] = strawberry.field(default_factory=list, description=WORDS_HELP)


@strawberry.input(description="Change one of your versions; fields left out stay as they are.")
class UpdateModelVersionInput:
    version_id: strawberry.ID = strawberry.field(description="The version's ID.")
    name: str | None = strawberry.field(default=None, description="A new name.")
    base_model: BaseModelName | None = strawberry.field(
        default=None, description="A new base model."
    )
    trained_words: list[str] | None = strawberry.field(
        default=None, description="The new trained words, replacing the old ones. " + WORDS_HELP
    )


@strawberry.input(description="Publish a draft version.")
class PublishModelVersionInput:
    version_id: strawberry.ID = strawberry.field(description="The draft version's ID.")


@strawberry.input(description="Delete one of your model versions.")
class DeleteModelVersionInput:
    version_id: strawberry.ID = strawberry.field(description="The version's ID.")


@strawberry.type(
    description="The result of createModelVersion, publishModelVersion or deleteModelVersion."
)
class ModelVersionPayload:
    version: ModelVersionType | None = null_field("The version.")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation("Add a draft version to one of your models.")
async def create_model_version(
    info: Info, input: Annotated[CreateModelVersionInput, INPUT]
) -> ModelVersionPayload:
    row = await info.context.call(
        catalog.create_version,
        model_id=pk(lookups.MODEL, input.model_id),
        name=input.name,
        base_model=stored.BaseModel(input.base_model),
        trained_words=input.trained_words,
    )
    return ModelVersionPayload(version=ModelVersionType.of(row))


@payload_mutation("Change one of your versions' name, base model or trained words.")
async def update_model_version(
    info: Info, input: Annotated[UpdateModelVersionInput, INPUT]
) -> ModelVersionPayload:
    row = await info.context.call(
        catalog.update_version,
        version_id=pk(lookups.VERSION, input.version_id),
        name=input.name,
        base_model=stored.BaseModel(input.base_model) if input.base_model is not None else None,
        trained_words=input.trained_words,
    )
    return ModelVersionPayload(version=ModelVersionType.of(row))


@payload_mutation(
    "Publish a draft version. A private dataset's window starts now: it expires at "
    "publishedAt + the retention period."
)
async def publish_model_version(
    info: Info, input: Annotated[PublishModelVersionInput, INPUT]
) -> ModelVersionPayload:
    row = await info.context.call(
        catalog.publish_version, version_id=pk(lookups.VERSION, input.version_id)
    )
    return ModelVersionPayload(version=ModelVersionType.of(row))


@payload_mutation(
    "Delete one of your model versions. Its dataset's bytes are deleted now; you "
    "keep a tombstone with deletionReason MODEL_DELETED."
)
async def delete_model_version(
    info: Info, input: Annotated[DeleteModelVersionInput, INPUT]
) -> ModelVersionPayload:
    row = await info.context.call(
        catalog.delete_version, version_id=pk(lookups.VERSION, input.version_id)
    )
    return ModelVersionPayload(version=ModelVersionType.of(row))
