"""Model mutations: create, change and delete a model."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.enums import LoraType
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    pk,
    user_errors_field,
)
from graph.schema.types.models import ModelType
from storage import catalog
from storage.db import enums as stored
from storage.privacy import lookups

TAGS_HELP = (
    "Catalogue tags: at most 10, each at most 32 letters, digits, spaces or + . _ - "
    "(stored lower-case)."
)


@strawberry.input(description="Create a model.")
class CreateModelInput:
    name: str = strawberry.field(description="The model's name (at most 200 characters).")
    description: str = strawberry.field(
        default="", description="What the model does (at most 20,000 characters)."
    )
    type: LoraType = strawberry.field(
        default=LoraType.LORA, description="What kind of adapter it is (default LORA)."
    )
    tags: list[str] = strawberry.field(default_factory=list, description=TAGS_HELP)
    nsfw: bool = strawberry.field(
        default=False, description="Not safe for work: hidden from `models` by default."
    )


@strawberry.input(description="Change one of your models; fields left out stay as they are.")
class UpdateModelInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")
    name: str | None = strawberry.field(default=None, description="A new name.")
    description: str | None = strawberry.field(default=None, description="A new description.")
    type: LoraType | None = strawberry.field(default=None, description="A new type.")
    tags: list[str] | None = strawberry.field(
        default=None, description="The new tags, replacing the old ones. " + TAGS_HELP
    )
    nsfw: bool | None = strawberry.field(default=None, description="Not safe for work.")


@strawberry.input(description="Delete one of your models with all its versions.")
class DeleteModelInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")


@strawberry.type(description="The result of createModel.")
class CreateModelPayload:
    model: ModelType | None = null_field("The new model.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of updateModel.")
class UpdateModelPayload:
    model: ModelType | None = null_field("The model as it is now.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of deleteModel.")
class DeleteModelPayload:
    model: ModelType | None = null_field("The model as it was deleted (it has no versions left).")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation("Create a model (private until a version is published).")
async def create_model(info: Info, input: Annotated[CreateModelInput, INPUT]) -> CreateModelPayload:
    row = await info.context.call(
        catalog.create_model,
        name=input.name,
        description=input.description,
        type=stored.LoraType(input.type),
        tags=input.tags,
        nsfw=input.nsfw,
    )
    return CreateModelPayload(model=ModelType.of(row))


@payload_mutation("Change one of your models' name, description, type, tags or nsfw flag.")
async def update_model(info: Info, input: Annotated[UpdateModelInput, INPUT]) -> UpdateModelPayload:
    row = await info.context.call(
        catalog.update_model,
        model_id=pk(lookups.MODEL, input.model_id),
        name=input.name,
        description=input.description,
        type=stored.LoraType(input.type) if input.type is not None else None,
        tags=input.tags,
        nsfw=input.nsfw,
    )
    return UpdateModelPayload(model=ModelType.of(row))


@payload_mutation(
    "Delete one of your models and all its versions. Their datasets' bytes are "
    "deleted now; you keep tombstones with deletionReason MODEL_DELETED."
)
async def delete_model(info: Info, input: Annotated[DeleteModelInput, INPUT]) -> DeleteModelPayload:
    row = await info.context.call(catalog.delete_model, model_id=pk(lookups.MODEL, input.model_id))
    return DeleteModelPayload(model=ModelType.of(row))
