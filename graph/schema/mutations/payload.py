"""Mutations: one ``input`` argument each, a payload with ``userErrors``.

Resolvers translate: decode IDs, call one storage service, wrap the result. Every
mutation is declared with :func:`payload_mutation`, the one error path: an expected
failure (a ``ServiceError`` raised anywhere below) becomes the payload's
``userErrors`` with a stable code, and the payload's other fields keep their
defaults (null, empty, false). A test checks that every mutation is declared so.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, get_type_hints

import strawberry

from graph import ids
from graph.context import Info
from graph.enums import BaseModel, LoraType, Visibility
from graph.scalars import BigInt
from graph.types import (
    ModelFileType,
    ModelType,
    ModelVersionType,
    NotificationType,
    TrainingDatasetType,
    UserType,
)
from storage import accounts, catalog, datasets, files, lookups, notifications, signing
from storage import models as db
from storage.db import is_busy
from storage.errors import ServiceError, TryAgain, Unauthenticated


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


def _errors() -> Any:
    return strawberry.field(
        default_factory=list,
        description="Expected failures; empty when the mutation succeeded.",
    )


def _none(description: str) -> Any:
    return strawberry.field(default=None, description=description)


R = TypeVar("R")
PAYLOAD_MUTATION = "__lorashelf_payload_mutation__"


def payload_mutation(
    description: str, *, public: bool = True
) -> Callable[[Callable[..., Awaitable[R]]], Any]:
    """Declare a mutation whose expected failures become its payload's ``userErrors``.

    ``public``: whether it can change what anonymous viewers see; when it succeeds, the
    answers cached for them (graph/cache.py) are not reused. Only mutations that touch
    nothing but the caller's own account and inbox say ``public=False``.
    """

    def decorate(resolver: Callable[..., Awaitable[R]]) -> Any:
        payload = get_type_hints(resolver)["return"]

        @functools.wraps(resolver)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            try:
                result = await resolver(*args, **kwargs)
                if public:
                    info: Info = kwargs["info"]
                    await info.context.services.generation.advance()
                return result
            except ServiceError as exc:
                failed: R = payload(user_errors=UserError.of(exc))
                return failed
            except Exception as exc:
                if not is_busy(exc):
                    raise
                busy: R = payload(user_errors=UserError.of(TryAgain()))
                return busy

        setattr(wrapper, PAYLOAD_MUTATION, True)
        return strawberry.mutation(description=description)(wrapper)

    return decorate


def pk(kind: lookups.Kind[Any], global_id: strawberry.ID) -> str | None:
    """The public id in a global ID of this kind; None (then: not found) for anything else."""
    return ids.decode(str(global_id), kind.name)


def upload_url(info: Info, grant: signing.UploadGrant) -> str:
    ctx = info.context
    return ctx.services.link(ctx.request, "upload", token=ctx.services.signer.upload_token(grant))


def rate_limited() -> ServiceError:
    return ServiceError("Too many attempts; wait a little and try again.", code="RATE_LIMITED")


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


TAGS_HELP = (
    "Catalogue tags: at most 10, each at most 32 letters, digits, spaces or + . _ - "
    "(stored lower-case)."
)
WORDS_HELP = "Trigger words to put in a prompt: at most 20, each at most 100 characters."


@strawberry.input(description="Change your password; every sign-in of the account ends.")
class ChangePasswordInput:
    current_password: str = strawberry.field(description="Your password now.")
    new_password: str = strawberry.field(description="The new one: 10 to 1,024 characters.")


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


@strawberry.input(description="Add a draft version to one of your models.")
class CreateModelVersionInput:
    model_id: strawberry.ID = strawberry.field(description="The model's ID.")
    name: str = strawberry.field(description="The version's name, e.g. v1.")
    base_model: BaseModel = strawberry.field(
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
    base_model: BaseModel | None = strawberry.field(default=None, description="A new base model.")
    trained_words: list[str] | None = strawberry.field(
        default=None, description="The new trained words, replacing the old ones. " + WORDS_HELP
    )


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

BEARER = "A bearer token: send it as `Authorization: Bearer <token>`."


@strawberry.type(description="The result of signUp.")
class SignUpPayload:
    token: str | None = _none(BEARER)
    user: UserType | None = _none("The new account.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of logIn.")
class LogInPayload:
    token: str | None = _none(BEARER)
    user: UserType | None = _none("The account signed in to.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of changePassword.")
class ChangePasswordPayload:
    token: str | None = _none(
        "A new bearer token: every earlier one (this request's included) no longer works."
    )
    user: UserType | None = _none("The account.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of logOut.")
class LogOutPayload:
    ok: bool = strawberry.field(default=False, description="Whether a token was revoked.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of createModel.")
class CreateModelPayload:
    model: ModelType | None = _none("The new model.")
    user_errors: list[UserError] = _errors()


@strawberry.type(
    description="The result of createModelVersion, publishModelVersion or deleteModelVersion."
)
class ModelVersionPayload:
    version: ModelVersionType | None = _none("The version.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of startDatasetUpload.")
class StartDatasetUploadPayload:
    dataset: TrainingDatasetType | None = _none("The pending dataset.")
    upload_url: str | None = _none(
        "Send the zip file's bytes here with HTTP PUT. Single use, valid for an hour; "
        "the body must be exactly sizeBytes long."
    )
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of startModelFileUpload.")
class StartModelFileUploadPayload:
    file: ModelFileType | None = _none("The pending file.")
    upload_url: str | None = _none(
        "Send the file's bytes here with HTTP PUT. Single use, valid for an hour; the body "
        "must be exactly sizeBytes long and a valid safetensors file (checked as it arrives)."
    )
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of deleteModelFile or setPrimaryModelFile.")
class ModelFilePayload:
    file: ModelFileType | None = _none("The file.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of updateModel.")
class UpdateModelPayload:
    model: ModelType | None = _none("The model as it is now.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of setDatasetVisibility or deleteDataset.")
class DatasetPayload:
    dataset: TrainingDatasetType | None = _none("The dataset.")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of deleteModel.")
class DeleteModelPayload:
    model: ModelType | None = _none("The model as it was deleted (it has no versions left).")
    user_errors: list[UserError] = _errors()


@strawberry.type(description="The result of markNotificationsRead.")
class MarkNotificationsReadPayload:
    notifications: list[NotificationType] = strawberry.field(
        default_factory=list, description="The notifications now marked read."
    )
    user_errors: list[UserError] = _errors()


@strawberry.type(description="Changes.")
class Mutation:
    @payload_mutation("Create an account and sign in to it.", public=False)
    async def sign_up(self, info: Info, input: Annotated[SignUpInput, INPUT]) -> SignUpPayload:
        ctx = info.context
        if not await ctx.services.limiter.allow_signup(address=ctx.client_address):
            raise rate_limited()
        user, token = await accounts.sign_up(
            username=input.username,
            password=input.password,
            now=ctx.now(),
            token_lifetime=ctx.services.settings.token_lifetime,
        )
        return SignUpPayload(token=token, user=UserType.of(user))

    @payload_mutation("Sign in; returns a new bearer token.", public=False)
    async def log_in(self, info: Info, input: Annotated[LogInInput, INPUT]) -> LogInPayload:
        ctx = info.context
        allowed = await ctx.services.limiter.allow_login(
            username=input.username, address=ctx.client_address
        )
        if not allowed:
            raise rate_limited()
        user, token = await accounts.log_in(
            username=input.username,
            password=input.password,
            now=ctx.now(),
            token_lifetime=ctx.services.settings.token_lifetime,
        )
        return LogInPayload(token=token, user=UserType.of(user))

    @payload_mutation("Revoke the bearer token this request was sent with.", public=False)
    async def log_out(self, info: Info) -> LogOutPayload:
        token = info.context.token
        if token is None:
            raise Unauthenticated("Sign in first.")
        await accounts.log_out(token_id=token.id, now=info.context.now())
        return LogOutPayload(ok=True)

    @payload_mutation(
        "Change your password. Every sign-in of the account ends (and the download links "
        "made for them stop working); the answer carries a new token.",
        public=False,
    )
    async def change_password(
        self, info: Info, input: Annotated[ChangePasswordInput, INPUT]
    ) -> ChangePasswordPayload:
        ctx = info.context
        user_id = lookups.require_viewer(ctx.viewer_id)
        assert ctx.viewer is not None
        allowed = await ctx.services.limiter.allow_login(
            username=ctx.viewer.username, address=ctx.client_address
        )
        if not allowed:
            raise rate_limited()
        user, token = await accounts.change_password(
            user_id=user_id,
            current=input.current_password,
            new=input.new_password,
            now=ctx.now(),
            token_lifetime=ctx.services.settings.token_lifetime,
        )
        return ChangePasswordPayload(token=token, user=UserType.of(user))

    @payload_mutation("Create a model (private until a version is published).", public=False)
    async def create_model(
        self, info: Info, input: Annotated[CreateModelInput, INPUT]
    ) -> CreateModelPayload:
        row = await info.context.call(
            catalog.create_model,
            name=input.name,
            description=input.description,
            type=db.LoraType(input.type),
            tags=input.tags,
            nsfw=input.nsfw,
        )
        return CreateModelPayload(model=ModelType.of(row))

    @payload_mutation("Change one of your models' name, description, type, tags or nsfw flag.")
    async def update_model(
        self, info: Info, input: Annotated[UpdateModelInput, INPUT]
    ) -> UpdateModelPayload:
        row = await info.context.call(
            catalog.update_model,
            model_id=pk(lookups.MODEL, input.model_id),
            name=input.name,
            description=input.description,
            type=db.LoraType(input.type) if input.type is not None else None,
            tags=input.tags,
            nsfw=input.nsfw,
        )
        return UpdateModelPayload(model=ModelType.of(row))

    @payload_mutation("Add a draft version to one of your models.", public=False)
    async def create_model_version(
        self, info: Info, input: Annotated[CreateModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        row = await info.context.call(
            catalog.create_version,
            model_id=pk(lookups.MODEL, input.model_id),
            name=input.name,
            base_model=db.BaseModel(input.base_model),
            trained_words=input.trained_words,
        )
        return ModelVersionPayload(version=ModelVersionType.of(row))

    @payload_mutation("Change one of your versions' name, base model or trained words.")
    async def update_model_version(
        self, info: Info, input: Annotated[UpdateModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        row = await info.context.call(
            catalog.update_version,
            version_id=pk(lookups.VERSION, input.version_id),
            name=input.name,
            base_model=db.BaseModel(input.base_model) if input.base_model is not None else None,
            trained_words=input.trained_words,
        )
        return ModelVersionPayload(version=ModelVersionType.of(row))

    @payload_mutation(
        "Record a weights file (safetensors) of a draft version and get a single-use upload "
        "URL; the first file to arrive becomes the primary one.",
        public=False,  # a draft's: nobody else sees it
    )
    async def start_model_file_upload(
        self, info: Info, input: Annotated[StartModelFileUploadInput, INPUT]
    ) -> StartModelFileUploadPayload:
        ctx = info.context
        row, nonce = await ctx.call(
            files.start_file_upload,
            version_id=pk(lookups.VERSION, input.version_id),
            request=files.FileUploadRequest(
                filename=input.filename, size_bytes=int(input.size_bytes)
            ),
        )
        url = upload_url(info, signing.UploadGrant(signing.FILE, row.id, nonce))
        return StartModelFileUploadPayload(file=ModelFileType.of(row), upload_url=url)

    @payload_mutation("Delete a weights file of one of your draft versions (bytes gone now).")
    async def delete_model_file(
        self, info: Info, input: Annotated[DeleteModelFileInput, INPUT]
    ) -> ModelFilePayload:
        row = await info.context.call(files.delete_file, file_id=pk(lookups.FILE, input.file_id))
        return ModelFilePayload(file=ModelFileType.of(row))

    @payload_mutation("Make one of your available files its version's primary file.")
    async def set_primary_model_file(
        self, info: Info, input: Annotated[SetPrimaryModelFileInput, INPUT]
    ) -> ModelFilePayload:
        row = await info.context.call(files.set_primary, file_id=pk(lookups.FILE, input.file_id))
        return ModelFilePayload(file=ModelFileType.of(row))

    @payload_mutation(
        "Record the training dataset of a draft version and get a single-use upload URL. "
        "PUBLIC needs ownsRights: true.",
        public=False,  # a draft's: nobody else sees it
    )
    async def start_dataset_upload(
        self, info: Info, input: Annotated[StartDatasetUploadInput, INPUT]
    ) -> StartDatasetUploadPayload:
        ctx = info.context
        row, nonce = await ctx.call(
            datasets.start_upload,
            version_id=pk(lookups.VERSION, input.version_id),
            request=datasets.UploadRequest(
                filename=input.filename,
                size_bytes=int(input.size_bytes),
                visibility=db.Visibility(input.visibility),
                owns_rights=input.owns_rights,
            ),
        )
        url = upload_url(info, signing.UploadGrant(signing.DATASET, row.id, nonce))
        return StartDatasetUploadPayload(dataset=TrainingDatasetType.of(row), upload_url=url)

    @payload_mutation(
        "Publish a draft version. A private dataset's window starts now: it expires at "
        "publishedAt + the retention period."
    )
    async def publish_model_version(
        self, info: Info, input: Annotated[PublishModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        row = await info.context.call(
            catalog.publish_version, version_id=pk(lookups.VERSION, input.version_id)
        )
        return ModelVersionPayload(version=ModelVersionType.of(row))

    @payload_mutation(
        "Make a dataset public (needs ownsRights: true; clears the expiry) or private "
        "(a published version's dataset then gets a full window from now)."
    )
    async def set_dataset_visibility(
        self, info: Info, input: Annotated[SetDatasetVisibilityInput, INPUT]
    ) -> DatasetPayload:
        row = await info.context.call(
            datasets.set_visibility,
            dataset_id=pk(lookups.DATASET, input.dataset_id),
            visibility=db.Visibility(input.visibility),
            owns_rights=input.owns_rights,
        )
        return DatasetPayload(dataset=TrainingDatasetType.of(row))

    @payload_mutation("Delete a dataset's bytes now; a tombstone (DELETED) remains for you.")
    async def delete_dataset(
        self, info: Info, input: Annotated[DeleteDatasetInput, INPUT]
    ) -> DatasetPayload:
        row = await info.context.call(
            datasets.delete_dataset, dataset_id=pk(lookups.DATASET, input.dataset_id)
        )
        return DatasetPayload(dataset=TrainingDatasetType.of(row))

    @payload_mutation(
        "Delete one of your models and all its versions. Their datasets' bytes are "
        "deleted now; you keep tombstones with deletionReason MODEL_DELETED."
    )
    async def delete_model(
        self, info: Info, input: Annotated[DeleteModelInput, INPUT]
    ) -> DeleteModelPayload:
        row = await info.context.call(
            catalog.delete_model, model_id=pk(lookups.MODEL, input.model_id)
        )
        return DeleteModelPayload(model=ModelType.of(row))

    @payload_mutation(
        "Delete one of your model versions. Its dataset's bytes are deleted now; you "
        "keep a tombstone with deletionReason MODEL_DELETED."
    )
    async def delete_model_version(
        self, info: Info, input: Annotated[DeleteModelVersionInput, INPUT]
    ) -> ModelVersionPayload:
        row = await info.context.call(
            catalog.delete_version, version_id=pk(lookups.VERSION, input.version_id)
        )
        return ModelVersionPayload(version=ModelVersionType.of(row))

    @payload_mutation("Mark some of your notifications read.", public=False)
    async def mark_notifications_read(
        self, info: Info, input: Annotated[MarkNotificationsReadInput, INPUT]
    ) -> MarkNotificationsReadPayload:
        ctx = info.context
        rows = await notifications.mark_read(
            user_id=lookups.require_viewer(ctx.viewer_id),
            ids=ids.decode_many([str(i) for i in input.ids], lookups.NOTIFICATION.name),
            now=ctx.now(),
        )
        return MarkNotificationsReadPayload(notifications=[NotificationType.of(r) for r in rows])
