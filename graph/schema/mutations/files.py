"""Weights file mutations: start an upload, delete a file, choose the primary file."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.links import upload_url
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    pk,
    user_errors_field,
)
from graph.schema.scalars import BigInt
from graph.schema.types.files import ModelFileType
from storage import files, signing
from storage.privacy import lookups


@strawberry.input(
    description="Record a weights file (safetensors) for a draft version and get an upload URL."
)
class StartModelFileUploadInput:
    version_id: strawberry.ID = strawberry.field(description="The draft version's ID.")
    filename: str = strawberry.field(
        description=(
            "The file's name, for display, e.g. cats.safetensors. Pickled checkpoints "
            "(.ckpt, .pt, .bin) are refused: they can run code when loaded."
        )
    )
    size_bytes: BigInt = strawberry.field(description="The exact size of the file in bytes.")


@strawberry.input(description="Delete a weights file of one of your draft versions.")
class DeleteModelFileInput:
    file_id: strawberry.ID = strawberry.field(description="The file's ID.")


@strawberry.input(description="Make one of your files its version's primary file.")
class SetPrimaryModelFileInput:
    file_id: strawberry.ID = strawberry.field(description="The file's ID.")


@strawberry.type(description="The result of startModelFileUpload.")
class StartModelFileUploadPayload:
    file: ModelFileType | None = null_field("The pending file.")
    upload_url: str | None = null_field(
        "Send the file's bytes here with HTTP PUT. Single use, valid for an hour; the body "
        "must be exactly sizeBytes long and a valid safetensors file (checked as it arrives)."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of deleteModelFile or setPrimaryModelFile.")
class ModelFilePayload:
    file: ModelFileType | None = null_field("The file.")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Record a weights file (safetensors) of a draft version and get a single-use upload "
    "URL; the first file to arrive becomes the primary one.",
)
async def start_model_file_upload(
    info: Info, input: Annotated[StartModelFileUploadInput, INPUT]
) -> StartModelFileUploadPayload:
    ctx = info.context
    row, nonce = await ctx.call(
        files.start_file_upload,
        version_id=pk(lookups.VERSION, input.version_id),
        request=files.FileUploadRequest(filename=input.filename, size_bytes=int(input.size_bytes)),
    )
    url = upload_url(info, signing.UploadGrant(signing.FILE, row.id, nonce))
    return StartModelFileUploadPayload(file=ModelFileType.of(row), upload_url=url)


@payload_mutation("Delete a weights file of one of your draft versions (bytes gone now).")
async def delete_model_file(
    info: Info, input: Annotated[DeleteModelFileInput, INPUT]
) -> ModelFilePayload:
    row = await info.context.call(files.delete_file, file_id=pk(lookups.FILE, input.file_id))
    return ModelFilePayload(file=ModelFileType.of(row))


@payload_mutation("Make one of your available files its version's primary file.")
async def set_primary_model_file(
    info: Info, input: Annotated[SetPrimaryModelFileInput, INPUT]
) -> ModelFilePayload:
    row = await info.context.call(files.set_primary, file_id=pk(lookups.FILE, input.file_id))
    return ModelFilePayload(file=ModelFileType.of(row))
