"""Mutations: one ``input`` argument each, a payload with ``userErrors``.

Resolvers translate: decode IDs, call one storage service, wrap the result.
Expected failures (``ServiceError``) become ``userErrors`` with a stable code.
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph import ids
from graph.context import Info
from graph.scalars import BigInt
from graph.types import (
    ModelType,
    ModelVersionType,
    NotificationType,
    TrainingDatasetType,
    UserType,
    Visibility,
)
from storage import accounts, catalog, datasets, notifications
from storage import models as db
from storage.errors import ServiceError


@strawberry.type(description="An expected failure of a mutation, with a stable code.")
class UserError:
    field: str | None = strawberry.field(
        description="The input field at fault, if one is; null for the whole input."
    )
    message: str = strawberry.field(description="What went wrong, for people.")
    code: str = strawberry.field(
        description="A stable machine-readable code, e.g. NOT_FOUND or RIGHTS_NOT_CONFIRMED."
    )

    @classmethod
    def of(cls, exc: ServiceError) -> list[UserError]:
        return [cls(field=exc.field, message=exc.message, code=exc.code)]


INPUT = strawberry.argument(description="The mutation's input.")
ERRORS = strawberry.field(description="Expected failures; empty when the mutation succeeded.")


SIGN_IN_FIRST = UserError(field=None, message="Sign in first.", code="UNAUTHENTICATED")
RATE_LIMITED = UserError(
    field=None, message="Too many attempts; wait a little and try again.", code="RATE_LIMITED"
)


# Inputs ----------------------------------------------------------------------

VISIBILITY_HELP = "Private datasets are visible only to you."  # replaced per configuration


@strawberry.input(description="Create an account.")
class SignUpInput:
    username: str = strawberry.field(
        description="3 to 32 characters: letters, digits, '-' or '_' (case-insensitive)."
    )
    password: str = strawberry.field(description="At least 10 characters.")


@strawberry.input(description="Sign in to an account.")
class LogInInput:
    username: str = strawberry.field(description="The account's username.")
    password: str = strawberry.field(description="The account's password.")


@strawberry.input(description="Create a model.")
class CreateModelInput:
    name: str = strawberry.field(description="The model's name (at most 200 characters).")
    description: str = strawberry.field(default="", description="What the model does.")


@strawberry.input(description="Add a draft version to one of your models.")
class CreateModelVersionInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")
    name: str = strawberry.field(description="The version's name, e.g. v1.")


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


@strawberry.input(description="Publish a draft version.")
class PublishModelVersionInput:
    version_id: strawberry.ID = strawberry.field(description="The draft version's ID.")


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


@strawberry.input(description="Delete one of your models with all its versions.")
class DeleteModelInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")


@strawberry.input(description="Delete one of your model versions.")
class DeleteModelVersionInput:
    version_id: strawberry.ID = strawberry.field(description="The version's ID.")


@strawberry.input(description="Mark some of your notifications read.")
class MarkNotificationsReadInput:
    ids: list[strawberry.ID] = strawberry.field(description="The notifications' IDs.")


# Payloads ----------------------------------------------------------------------


@strawberry.type(description="The result of signUp.")
class SignUpPayload:
    token: str | None = strawberry.field(
        description="A bearer token: send it as `Authorization: Bearer <token>`."
    )
    user: UserType | None = strawberry.field(description="The new account.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of logIn.")
class LogInPayload:
    token: str | None = strawberry.field(
        description="A bearer token: send it as `Authorization: Bearer <token>`."
    )
    user: UserType | None = strawberry.field(description="The account signed in to.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of logOut.")
class LogOutPayload:
    ok: bool = strawberry.field(description="Whether a token was revoked.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of createModel.")
class CreateModelPayload:
    model: ModelType | None = strawberry.field(description="The new model.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(
    description="The result of createModelVersion, publishModelVersion or deleteModelVersion."
)
class ModelVersionPayload:
    version: ModelVersionType | None = strawberry.field(description="The version.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of startDatasetUpload.")
class StartDatasetUploadPayload:
    dataset: TrainingDatasetType | None = strawberry.field(description="The pending dataset.")
    upload_url: str | None = strawberry.field(
        description=(
            "Send the zip file's bytes here with HTTP PUT. Single use, valid for an hour; "
            "the body must be exactly sizeBytes long."
        )
    )
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of setDatasetVisibility or deleteDataset.")
class DatasetPayload:
    dataset: TrainingDatasetType | None = strawberry.field(description="The dataset.")
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of deleteModel.")
class DeleteModelPayload:
    model: ModelType | None = strawberry.field(
        description="The model as it was deleted (it has no versions left)."
    )
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="The result of markNotificationsRead.")
class MarkNotificationsReadPayload:
    notifications: list[NotificationType] = strawberry.field(
        description="The notifications now marked read."
    )
    user_errors: list[UserError] = ERRORS


@strawberry.type(description="Changes.")
class Mutation:
    @strawberry.mutation(description="Create an account and sign in to it.")
    async def sign_up(self, info: Info, input: Annotated[SignUpInput, INPUT]) -> SignUpPayload:
        ctx = info.context
        settings = ctx.services.settings
        if not await ctx.services.limiter.allow_signup(address=ctx.client_address):
            return SignUpPayload(token=None, user=None, user_errors=[RATE_LIMITED])
        try:
            user, token = await accounts.sign_up(
                username=input.username,
                password=input.password,
                now=info.context.now(),
                token_lifetime=settings.token_lifetime,
            )
        except ServiceError as exc:
            return SignUpPayload(token=None, user=None, user_errors=UserError.of(exc))
        return SignUpPayload(token=token, user=UserType.of(user), user_errors=[])

    @strawberry.mutation(description="Sign in; returns a new bearer token.")
    async def log_in(self, info: Info, input: Annotated[LogInInput, INPUT]) -> LogInPayload:
        ctx = info.context
        settings = ctx.services.settings
        allowed = await ctx.services.limiter.allow_login(
            username=input.username, address=ctx.client_address
        )
        if not allowed:
            return LogInPayload(token=None, user=None, user_errors=[RATE_LIMITED])
        try:
            user, token = await accounts.log_in(
                username=input.username,
                password=input.password,
                now=info.context.now(),
                token_lifetime=settings.token_lifetime,
            )
        except ServiceError as exc:
            return LogInPayload(token=None, user=None, user_errors=UserError.of(exc))
        return LogInPayload(token=token, user=UserType.of(user), user_errors=[])

    @strawberry.mutation(description="Revoke the bearer token this request was sent with.")
    async def log_out(self, info: Info) -> LogOutPayload:
        token = info.context.token
        if token is None:
            return LogOutPayload(
                ok=False,
                user_errors=[SIGN_IN_FIRST],
            )
        await accounts.log_out(token_id=token.id, now=info.context.now())
        return LogOutPayload(ok=True, user_errors=[])

    @strawberry.mutation(description="Create a model (private until a version is published).")
    async def create_model(
        self, info: Info, input: Annotated[CreateModelInput, INPUT]
    ) -> CreateModelPayload:
        try:
            row = await catalog.create_model(
                viewer=info.context.viewer_id,
                name=input.name,
                description=input.description,
                now=info.context.now(),
            )
        except ServiceError as exc:
            return CreateModelPayload(model=None, user_errors=UserError.of(exc))
        return CreateModelPayload(model=ModelType.of(row), user_errors=[])

    @strawberry.mutation(description="Add a draft version to one of your models.")
    async def create_model_version(
        self, info: Info, input: Annotated[CreateModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        try:
            row = await catalog.create_version(
                viewer=info.context.viewer_id,
                model_id=ids.decode(input.model_id, "Model"),
                name=input.name,
                now=info.context.now(),
            )
        except ServiceError as exc:
            return ModelVersionPayload(version=None, user_errors=UserError.of(exc))
        return ModelVersionPayload(version=ModelVersionType.of(row), user_errors=[])

    @strawberry.mutation(
        description=(
            "Record the training dataset of a draft version and get a single-use upload URL. "
            "PUBLIC needs ownsRights: true."
        )
    )
    async def start_dataset_upload(
        self, info: Info, input: Annotated[StartDatasetUploadInput, INPUT]
    ) -> StartDatasetUploadPayload:
        ctx = info.context
        settings = ctx.services.settings
        try:
            row, nonce = await datasets.start_upload(
                viewer=ctx.viewer_id,
                version_id=ids.decode(input.version_id, "ModelVersion"),
                filename=input.filename,
                size_bytes=int(input.size_bytes),
                visibility=db.Visibility(input.visibility.name),
                owns_rights=input.owns_rights,
                now=ctx.now(),
                max_bytes=settings.max_dataset_bytes,
                url_lifetime=settings.upload_url_lifetime,
                max_datasets_per_user=settings.limits.max_datasets_per_user,
                max_bytes_per_user=settings.limits.max_bytes_per_user,
            )
        except ServiceError as exc:
            return StartDatasetUploadPayload(
                dataset=None, upload_url=None, user_errors=UserError.of(exc)
            )
        token = ctx.services.signer.upload_token(row.id, nonce)
        url = str(ctx.request.url_for("upload", token=token))
        return StartDatasetUploadPayload(
            dataset=TrainingDatasetType.of(row), upload_url=url, user_errors=[]
        )

    @strawberry.mutation(
        description=(
            "Publish a draft version. A private dataset's window starts now: it expires at "
            "publishedAt + the retention period."
        )
    )
    async def publish_model_version(
        self, info: Info, input: Annotated[PublishModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        ctx = info.context
        try:
            row, dataset = await catalog.publish_version(
                viewer=ctx.viewer_id,
                version_id=ids.decode(input.version_id, "ModelVersion"),
                now=ctx.now(),
                retention_seconds=ctx.services.settings.private_retention,
                reminders=ctx.services.settings.reminders,
            )
        except ServiceError as exc:
            return ModelVersionPayload(version=None, user_errors=UserError.of(exc))
        if dataset is not None:
            await ctx.services.scheduler.dataset_changed(dataset.id)
        return ModelVersionPayload(version=ModelVersionType.of(row), user_errors=[])

    @strawberry.mutation(
        description=(
            "Make a dataset public (needs ownsRights: true; clears the expiry) or private "
            "(a published version's dataset then gets a full window from now)."
        )
    )
    async def set_dataset_visibility(
        self, info: Info, input: Annotated[SetDatasetVisibilityInput, INPUT]
    ) -> DatasetPayload:
        ctx = info.context
        try:
            row = await datasets.set_visibility(
                viewer=ctx.viewer_id,
                dataset_id=ids.decode(input.dataset_id, "TrainingDataset"),
                visibility=db.Visibility(input.visibility.name),
                owns_rights=input.owns_rights,
                now=ctx.now(),
                retention_seconds=ctx.services.settings.private_retention,
                reminders=ctx.services.settings.reminders,
            )
        except ServiceError as exc:
            return DatasetPayload(dataset=None, user_errors=UserError.of(exc))
        await ctx.services.scheduler.dataset_changed(row.id)
        return DatasetPayload(dataset=TrainingDatasetType.of(row), user_errors=[])

    @strawberry.mutation(
        description="Delete a dataset's bytes now; a tombstone (DELETED) remains for you."
    )
    async def delete_dataset(
        self, info: Info, input: Annotated[DeleteDatasetInput, INPUT]
    ) -> DatasetPayload:
        ctx = info.context
        try:
            row = await datasets.delete_dataset(
                viewer=ctx.viewer_id,
                dataset_id=ids.decode(input.dataset_id, "TrainingDataset"),
                now=ctx.now(),
                blobs=ctx.services.blobs,
            )
        except ServiceError as exc:
            return DatasetPayload(dataset=None, user_errors=UserError.of(exc))
        await ctx.services.scheduler.dataset_changed(row.id)
        return DatasetPayload(dataset=TrainingDatasetType.of(row), user_errors=[])

    @strawberry.mutation(
        description=(
            "Delete one of your models and all its versions. Their datasets' bytes are "
            "deleted now; you keep tombstones with deletionReason MODEL_DELETED."
        )
    )
    async def delete_model(
        self, info: Info, input: Annotated[DeleteModelInput, INPUT]
    ) -> DeleteModelPayload:
        ctx = info.context
        try:
            row, dataset_ids = await catalog.delete_model(
                viewer=ctx.viewer_id,
                model_id=ids.decode(input.model_id, "Model"),
                now=ctx.now(),
                blobs=ctx.services.blobs,
            )
        except ServiceError as exc:
            return DeleteModelPayload(model=None, user_errors=UserError.of(exc))
        for dataset_id in dataset_ids:
            await ctx.services.scheduler.dataset_changed(dataset_id)
        return DeleteModelPayload(model=ModelType.of(row), user_errors=[])

    @strawberry.mutation(
        description=(
            "Delete one of your model versions. Its dataset's bytes are deleted now; you "
            "keep a tombstone with deletionReason MODEL_DELETED."
        )
    )
    async def delete_model_version(
        self, info: Info, input: Annotated[DeleteModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        ctx = info.context
        try:
            row, dataset_ids = await catalog.delete_version(
                viewer=ctx.viewer_id,
                version_id=ids.decode(input.version_id, "ModelVersion"),
                now=ctx.now(),
                blobs=ctx.services.blobs,
            )
        except ServiceError as exc:
            return ModelVersionPayload(version=None, user_errors=UserError.of(exc))
        for dataset_id in dataset_ids:
            await ctx.services.scheduler.dataset_changed(dataset_id)
        return ModelVersionPayload(version=ModelVersionType.of(row), user_errors=[])

    @strawberry.mutation(description="Mark some of your notifications read.")
    async def mark_notifications_read(
        self, info: Info, input: Annotated[MarkNotificationsReadInput, INPUT]
    ) -> MarkNotificationsReadPayload:
        ctx = info.context
        if ctx.viewer_id is None:
            return MarkNotificationsReadPayload(
                notifications=[],
                user_errors=[SIGN_IN_FIRST],
            )
        rows = await notifications.mark_read(
            user_id=ctx.viewer_id,
            ids=ids.decode_many([str(i) for i in input.ids], "Notification"),
            now=ctx.now(),
        )
        return MarkNotificationsReadPayload(
            notifications=[NotificationType.of(r) for r in rows], user_errors=[]
        )
