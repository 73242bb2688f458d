"""Training dataset mutations: start an upload, change the visibility, delete."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.enums import Visibility
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
from graph.schema.types.datasets import TrainingDatasetType
from storage import datasets, signing
from storage.db import enums as stored
from storage.privacy import lookups

VISIBILITY_HELP = "Private datasets are visible only to you."  # replaced per configuration


@strawberry.input(
    description="Record a training dataset for a draft version and get an upload URL."
)
class StartDatasetUploadInput:
    version_id: strawberry.ID = strawberry.field(description="The draft version's ID.")
    filename: str = strawberry.field(description="The zip file's name, for display.")
    size_bytes: BigInt = strawberry.field(description="The exact size of the zip file in bytes.")
    visibility: Visibility = strawberry.field(description=VISIBILITY_HELP)
    owns_rights: bool | None = strawberry.field(
        default=None,
        description="Required true for PUBLIC: you confirm you hold the rights to share it.",
    )


@strawberry.input(description="Make a training dataset public or private.")
class SetDatasetVisibilityInput:
    dataset_id: strawberry.ID = strawberry.field(description="The dataset's ID.")
    visibility: Visibility = strawberry.field(description=VISIBILITY_HELP)
    owns_rights: bool | None = strawberry.field(
        default=None,
        description="Required true for PUBLIC: you confirm you hold the rights to share it.",
    )


@strawberry.input(description="Delete a training dataset's bytes now, keeping a tombstone.")
class DeleteDatasetInput:
    dataset_id: strawberry.ID = strawberry.field(description="The dataset's ID.")


@strawberry.type(description="The result of startDatasetUpload.")
class StartDatasetUploadPayload:
    dataset: TrainingDatasetType | None = null_field("The pending dataset.")
    upload_url: str | None = null_field(
        "Send the zip file's bytes here with HTTP PUT. Single use, valid for an hour; "
        "the body must be exactly sizeBytes long."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of setDatasetVisibility or deleteDataset.")
class DatasetPayload:
    dataset: TrainingDatasetType | None = null_field("The dataset.")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Record the training dataset of a draft version and get a single-use upload URL. "
    "PUBLIC needs ownsRights: true.",
)
async def start_dataset_upload(
    info: Info, input: Annotated[StartDatasetUploadInput, INPUT]
) -> StartDatasetUploadPayload:
    ctx = info.context
    row, nonce = await ctx.call(
        datasets.start_upload,
        version_id=pk(lookups.VERSION, input.version_id),
        request=datasets.UploadRequest(
            filename=input.filename,
            size_bytes=int(input.size_bytes),
            visibility=stored.Visibility(input.visibility),
            owns_rights=input.owns_rights,
        ),
    )
    url = upload_url(info, signing.UploadGrant(signing.DATASET, row.id, nonce))
    return StartDatasetUploadPayload(dataset=TrainingDatasetType.of(row), upload_url=url)


@payload_mutation(
    "Make a dataset public (needs ownsRights: true; clears the expiry) or private "
    "(a published version's dataset then gets a full window from now)."
)
async def set_dataset_visibility(
    info: Info, input: Annotated[SetDatasetVisibilityInput, INPUT]
) -> DatasetPayload:
    row = await info.context.call(
        datasets.set_visibility,
        dataset_id=pk(lookups.DATASET, input.dataset_id),
        visibility=stored.Visibility(input.visibility),
        owns_rights=input.owns_rights,
    )
    return DatasetPayload(dataset=TrainingDatasetType.of(row))


@payload_mutation("Delete a dataset's bytes now; a tombstone (DELETED) remains for you.")
async def delete_dataset(info: Info, input: Annotated[DeleteDatasetInput, INPUT]) -> DatasetPayload:
    row = await info.context.call(
        datasets.delete_dataset, dataset_id=pk(lookups.DATASET, input.dataset_id)
    )
    return DatasetPayload(dataset=TrainingDatasetType.of(row))
