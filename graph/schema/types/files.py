"""GraphQL object types. Resolvers translate rows: loading goes through the
per-request DataLoaders (which apply the privacy rule) and storage services.

A type object is only ever built for a row its viewer may see (from a lookup, a
loader or a listing, all filtered by ``storage.access``); fields check only what
depends on more than seeing: downloading, and what is the owner's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from graph import ids
from graph.context import Info
from graph.enums import (
    BaseModel,
    DatasetEventKind,
    DatasetStatus,
    DeletionReason,
    FileStatus,
    LoraType,
    NotificationKind,
    VersionStatus,
    Visibility,
    shown_status,
)
from graph.scalars import BigInt
from storage import access, catalog, datasets, headers, lookups, notifications, signing
from storage import models as db
from storage.errors import ServiceError
from storage.files import MAX_FILES_PER_VERSION
from storage.pages import Page

T = TypeVar("T")


def as_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def download_link(info: Info, kind: signing.Kind, object_id: int) -> str:
    """A signed download URL for this viewer, good for a few minutes and only while the
    sign-in it was minted for lasts (the route checks both, and the rule, again when it
    is used)."""
    ctx = info.context
    lifetime = ctx.services.settings.download_url_lifetime
    expires = ctx.now() + timedelta(seconds=lifetime)
    session = ctx.token.id if ctx.token is not None else None
    grant = signing.DownloadGrant(
        kind, object_id, ctx.viewer_id, int(expires.timestamp()) + 1, session
    )
    token = ctx.services.signer.download_token(grant)
    return ctx.services.link(ctx.request, "download", token=token)


# Relay plumbing ------------------------------------------------------------


@strawberry.interface(description="An object with a globally unique, opaque ID.")
class Node:
    id: strawberry.ID = strawberry.field(description="The opaque global ID of this object.")


@strawberry.type(description="Where a page of a connection ends.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last item on this page; pass it as `after`."
    )


def _sealed(root: Edge[Any]) -> str:
    # Sealing is randomised: seal once, so endCursor and the last edge's cursor agree.
    if root.sealed is None:
        root.sealed = root.sealer(root.position)
    return root.sealed


@strawberry.type(description="One item of a connection, with its cursor.")
class Edge(Generic[T]):
    # The cursor is sealed only when asked for (sealing is the costly part of a page).
    cursor: str = strawberry.field(resolver=_sealed, description="Opaque position of this item.")
    node: T = strawberry.field(description="The item.")
    position: strawberry.Private[Any] = None
    sealer: strawberry.Private[Callable[[Any], str]] = str
    sealed: strawberry.Private[str | None] = None


@strawberry.type(description="A page of items (Relay connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items on this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


def connection(info: Info, page: Page, wrap) -> Connection:  # type: ignore[no-untyped-def, type-arg]
    """A Relay connection of a page, each position sealed into an opaque cursor."""
    seal = info.context.services.cursors.seal
    edges = [Edge(position=page.position(row), sealer=seal, node=wrap(row)) for row in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next, end_cursor=_sealed(edges[-1]) if edges else None
        ),
    )


def bounded(first: int, most: int) -> int:
    """A plain list's ``first``, or INVALID_PAGE_SIZE."""
    if not 0 <= first <= most:
        raise ServiceError(
            f"first must be between 0 and {most}.", field="first", code="INVALID_PAGE_SIZE"
        )
    return first


def opened(info: Info, after: str | None) -> str | None:
    """The position in an ``after`` cursor (INVALID_CURSOR if it is not one of ours)."""
    return None if after is None else info.context.services.cursors.open(after)


FirstArg = Annotated[
    int | None,
    strawberry.argument(description="How many items to return (at most 100; default 20)."),
]
AfterArg = Annotated[str | None, strawberry.argument(description="Return items after this cursor.")]
IncludeNsfwArg = Annotated[
    bool,
    strawberry.argument(description="Also list models marked NSFW (your own are always listed)."),
]


# Objects -------------------------------------------------------------------


@strawberry.type(name="User", description="A person with an account.")
class UserType(Node):
    row: strawberry.Private[db.User]

    @classmethod
    def of(cls, row: db.User) -> UserType:
        return cls(
            id=strawberry.ID(ids.encode("User", row.public_id)), row=row, username=row.username
        )

    username: str = strawberry.field(description="The user's unique name.")

    @strawberry.field(
        description=(
            "The user's models that you may see, newest first (your own always include NSFW ones)."
        )
    )
    async def models(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        include_nsfw: IncludeNsfwArg = False,
    ) -> Connection[ModelType]:
        page = await catalog.models_page(
            viewer=info.context.viewer_id,
            narrow=catalog.CatalogueFilter(owner_id=self.row.public_id, include_nsfw=include_nsfw),
            first=first,
            after=opened(info, after),
        )
        return connection(info, page, ModelType.of)

    @strawberry.field(
        description=(
            "The user's training datasets that you may see, newest first: for yourself all "
            'of them, tombstones included (your "my datasets" page); for anybody else only '
            "public ones."
        )
    )
    async def training_datasets(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        status: Annotated[
            DatasetStatus | None, strawberry.argument(description="Only datasets in this state.")
        ] = None,
    ) -> Connection[TrainingDatasetType]:
        page = await datasets.datasets_page(
            viewer=info.context.viewer_id,
            owner_id=self.row.id,
            status=db.DatasetStatus(status) if status else None,
            first=first,
            after=opened(info, after),
        )
        return connection(info, page, TrainingDatasetType.of)

    @strawberry.field(
        description="Your notifications, newest first; null for anybody but yourself."
    )
    async def notifications(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        unread_only: Annotated[
            bool, strawberry.argument(description="Only notifications not yet read.")
        ] = False,
    ) -> Connection[NotificationType] | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        page = await notifications.notifications_page(
            user_id=self.row.id, unread_only=unread_only, first=first, after=opened(info, after)
        )
        return connection(info, page, NotificationType.of)

    @strawberry.field(
        description="How many of your notifications are unread; null for anybody but yourself."
    )
    async def unread_notification_count(self, info: Info) -> int | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return await notifications.unread_count(self.row.id)


@strawberry.type(name="Model", description="A LoRA model: a name, a description and versions.")
class ModelType(Node):
    row: strawberry.Private[db.LoraModel]

    @classmethod
    def of(cls, row: db.LoraModel) -> ModelType:
        return cls(
            id=strawberry.ID(ids.encode("Model", row.public_id)),
            row=row,
            name=row.name,
            description=row.description,
            created_at=row.created_at.astimezone(UTC),
            type=row.type,
            nsfw=row.nsfw,
            download_count=row.download_count,
        )

    name: str = strawberry.field(description="The model's name.")

    description: str = strawberry.field(description="The model's description.")

    created_at: datetime = strawberry.field(description="When the model was created.")

    type: LoraType = strawberry.field(description="What kind of adapter it is.")

    nsfw: bool = strawberry.field(
        description="Not safe for work: left out of `models` unless `includeNsfw: true`."
    )

    download_count: int = strawberry.field(
        description="Full downloads of the files of all its versions."
    )

    @strawberry.field(
        description="Catalogue tags: lower-case, at most 10, each at most 32 characters."
    )
    async def tags(self, info: Info) -> list[str]:
        return await info.context.loaders.tags_of_model.load(self.row.id)

    @strawberry.field(description="Who published the model.")
    async def owner(self, info: Info) -> UserType:
        user = await info.context.loaders.of(lookups.USER).load(self.row.owner_id)
        assert user is not None  # the owner of a visible model is visible
        return UserType.of(user)

    @strawberry.field(
        description=(
            "The versions you may see, newest first (drafts only for the owner): the "
            f"newest {catalog.DEFAULT_VERSIONS} unless `first` asks for more; a model has at "
            f"most {catalog.MAX_VERSIONS}."
        )
    )
    async def versions(
        self,
        info: Info,
        first: Annotated[
            int,
            strawberry.argument(
                description=f"How many versions to return (at most {catalog.MAX_VERSIONS})."
            ),
        ] = catalog.DEFAULT_VERSIONS,
    ) -> list[ModelVersionType]:
        rows = await info.context.loaders.versions_of_model.load(self.row.id)
        return [ModelVersionType.of(v) for v in rows[: bounded(first, catalog.MAX_VERSIONS)]]


@strawberry.type(name="ModelVersion", description="One trained version of a model.")
class ModelVersionType(Node):
    row: strawberry.Private[db.ModelVersion]

    @classmethod
    def of(cls, row: db.ModelVersion) -> ModelVersionType:
        return cls(
            id=strawberry.ID(ids.encode("ModelVersion", row.public_id)),
            row=row,
            name=row.name,
            status=row.status,
            published_at=as_utc(row.published_at),
            created_at=row.created_at.astimezone(UTC),
            base_model=row.base_model,
            trained_words=list(row.trained_words),
            download_count=row.download_count,
        )

    name: str = strawberry.field(description="The version's name, e.g. v1.")

    status: VersionStatus = strawberry.field(description="Draft or published.")

    published_at: datetime | None = strawberry.field(
        description="When the version was published; null for a draft."
    )

    created_at: datetime = strawberry.field(description="When the version was created.")

    base_model: BaseModel = strawberry.field(description="The base checkpoint it was trained for.")

    trained_words: list[str] = strawberry.field(
        description="Trigger words to put in a prompt (at most 20)."
    )

    download_count: int = strawberry.field(
        description=(
            "Full downloads of its files (a download link counts once, however many ranged "
            "requests it serves)."
        )
    )

    @strawberry.field(description="The model this version belongs to.")
    async def model(self, info: Info) -> ModelType:
        model = await info.context.loaders.of(lookups.MODEL).load(self.row.model_id)
        assert model is not None  # the model of a visible version is visible
        return ModelType.of(model)

    @strawberry.field(
        description=(
            "The dataset this version was trained on, if you may see it: null when there is "
            "none, and for anybody but the owner when it is private."
        )
    )
    async def training_dataset(self, info: Info) -> TrainingDatasetType | None:
        dataset = await info.context.loaders.dataset_of_version.load(self.row.id)
        return TrainingDatasetType.of(dataset) if dataset is not None else None

    @strawberry.field(
        description=(
            "The weights files (safetensors), primary first; at most 10. Anybody sees the "
            "available files of a published version; the owner also sees pending uploads "
            "and deleted files."
        )
    )
    async def files(
        self,
        info: Info,
        first: Annotated[
            int,
            strawberry.argument(
                description=f"How many files to return (at most {MAX_FILES_PER_VERSION})."
            ),
        ] = MAX_FILES_PER_VERSION,
    ) -> list[ModelFileType]:
        rows = await info.context.loaders.files_of_version.load(self.row.id)
        return [ModelFileType.of(f) for f in rows[: bounded(first, MAX_FILES_PER_VERSION)]]


@strawberry.type(description="One entry of a safetensors header's `__metadata__`.")
class MetadataEntry:
    key: str = strawberry.field(description="The metadata key, e.g. ss_network_dim.")
    value: str = strawberry.field(description="Its value, as written in the file.")


@strawberry.type(
    description=(
        "What a weights file's header says about how it was trained (null where it says "
        "nothing usable)."
    )
)
class ModelArchitecture:
    network_module: str | None = strawberry.field(
        description="ss_network_module, e.g. networks.lora or lycoris.kohya."
    )
    network_dim: int | None = strawberry.field(description="ss_network_dim: the rank.")
    network_alpha: float | None = strawberry.field(description="ss_network_alpha.")
    base_model_version: str | None = strawberry.field(
        description="ss_base_model_version, e.g. sd_v1, sdxl_base_v1-0, flux1."
    )
    modelspec_architecture: str | None = strawberry.field(
        description="modelspec.architecture, e.g. stable-diffusion-xl-v1-base/lora."
    )
    algo: str | None = strawberry.field(
        description="The LyCORIS algorithm from ss_network_args (locon, loha...)."
    )
    suggested_base_model: BaseModel | None = strawberry.field(
        description="The base model these values point to, to pre-fill the version's."
    )
    suggested_type: LoraType | None = strawberry.field(
        description="The model type these values point to."
    )


@strawberry.type(
    name="ModelFile",
    description=(
        "A weights file of a model version, in the safetensors format. Its header's "
        "training-data keys (ss_tag_frequency and friends) follow the version's training "
        "dataset: public only when the dataset is PUBLIC, otherwise seen by the owner alone "
        "until the dataset's window ends, then erased. Everybody else gets the file "
        "without them: same tensors, same autoV3."
    ),
)
class ModelFileType(Node):
    row: strawberry.Private[db.ModelFile]

    @classmethod
    def of(cls, row: db.ModelFile) -> ModelFileType:
        return cls(
            id=strawberry.ID(ids.encode(lookups.FILE.name, row.public_id)),
            row=row,
            filename=row.filename,
            status=shown_status(row.status),
            primary=row.primary,
            auto_v3=row.auto_v3,
            created_at=row.created_at.astimezone(UTC),
            uploaded_at=as_utc(row.uploaded_at),
            architecture=ModelArchitecture(
                network_module=row.network_module,
                network_dim=row.network_dim,
                network_alpha=row.network_alpha,
                base_model_version=row.base_model_version,
                modelspec_architecture=row.modelspec_architecture,
                algo=row.algo,
                suggested_base_model=row.suggested_base_model,
                suggested_type=row.suggested_type,
            ),
        )

    filename: str = strawberry.field(description="The file name given at upload.")

    status: FileStatus = strawberry.field(
        description="Waiting for its bytes, available, or deleted."
    )

    primary: bool = strawberry.field(description="Whether this is the version's main file.")

    auto_v3: str | None = strawberry.field(
        description=(
            "SHA-256 of the tensor data (the bytes after the header), hex: the same for the "
            "owner's and the public file, unchanged when only metadata changes."
        )
    )

    created_at: datetime = strawberry.field(description="When the file was recorded.")

    uploaded_at: datetime | None = strawberry.field(
        description="When its bytes arrived; null until then."
    )

    architecture: ModelArchitecture = strawberry.field(
        description="What the header says about the training (empty until the bytes arrive)."
    )

    async def _keys_public(self, info: Info) -> bool:
        """Whether the public downloads the original (the withheld keys are public)."""
        dataset = await info.context.loaders.dataset_of_version.load(self.row.version_id)
        return access.sees_withheld_keys(None, self.row, dataset, info.context.now())

    @strawberry.field(
        description=(
            "The size in bytes of the file as the public downloads it (without withheld "
            "keys); until the bytes arrive, the size declared for the upload."
        )
    )
    async def size_bytes(self, info: Info) -> BigInt:
        row = self.row
        if row.header_size is None or row.public_header_size is None:
            return BigInt(row.size_bytes)
        if await self._keys_public(info):
            return BigInt(row.size_bytes)
        return BigInt(row.size_bytes - row.header_size + row.public_header_size)

    @strawberry.field(
        description="SHA-256 of the file as the public downloads it, hex; null until uploaded."
    )
    async def sha256(self, info: Info) -> str | None:
        return self.row.sha256 if await self._keys_public(info) else self.row.public_sha256

    @strawberry.field(
        description="AutoV2: the first 10 hex characters of sha256 (what A1111 shows)."
    )
    async def auto_v2(self, info: Info) -> str | None:
        return self.row.auto_v2 if await self._keys_public(info) else self.row.public_auto_v2

    @strawberry.field(
        description=(
            "The header's __metadata__ as you may see it, in header order: without the "
            "withheld training-data keys unless the dataset is public, or you are the owner "
            "and their window is open."
        )
    )
    async def header_metadata(self, info: Info) -> list[MetadataEntry]:
        ctx = info.context
        if self.row.status != db.DatasetStatus.AVAILABLE:
            return []
        dataset = await ctx.loaders.dataset_of_version.load(self.row.version_id)
        entries = await headers.metadata(
            ctx.runtime, self.row, viewer=ctx.viewer_id, dataset=dataset, now=ctx.now()
        )
        return [MetadataEntry(key=k, value=v) for k, v in entries]

    @strawberry.field(
        description=(
            "For the owner: the header keys withheld from everybody else as training data "
            "(also after they were erased); null for anybody else."
        )
    )
    def withheld_keys(self, info: Info) -> list[str] | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        return list(self.row.withheld_keys)

    @strawberry.field(
        description=(
            "For the owner: when the withheld keys will be erased from the stored file (the "
            "end of the private window); null when they never will be, or for anybody else."
        )
    )
    def header_expires_at(self, info: Info) -> datetime | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        return as_utc(self.row.header_expires_at)

    @strawberry.field(
        description=(
            "For the owner: when the withheld keys were erased (the stored file became the "
            "public one); null until then, or for anybody else."
        )
    )
    def header_erased_at(self, info: Info) -> datetime | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        return as_utc(self.row.header_erased_at)

    @strawberry.field(
        description=(
            "For the owner while the withheld keys exist: SHA-256 of the file as uploaded "
            "(what your downloadUrl serves you); null otherwise."
        )
    )
    async def original_sha256(self, info: Info) -> str | None:
        ctx = info.context
        if not access.owns(ctx.viewer_id, self.row.owner_id):
            return None
        dataset = await ctx.loaders.dataset_of_version.load(self.row.version_id)
        if not access.sees_withheld_keys(ctx.viewer_id, self.row, dataset, ctx.now()):
            return None
        return self.row.sha256

    @strawberry.field(
        description=(
            "A signed URL that downloads the file, good for a few minutes; null when you may "
            "not download it. The owner gets the original header while the window is open; "
            "everybody else the public one."
        )
    )
    async def download_url(self, info: Info) -> str | None:
        if self.row.status != db.DatasetStatus.AVAILABLE:
            return None
        return download_link(info, signing.FILE, self.row.id)

    @strawberry.field(description="The model version this file belongs to.")
    async def version(self, info: Info) -> ModelVersionType | None:
        version = await info.context.loaders.of(lookups.VERSION).load(self.row.version_id)
        return ModelVersionType.of(version) if version is not None else None


@strawberry.type(name="DatasetEvent", description="One entry in a dataset's history.")
class DatasetEventType:
    @classmethod
    def of(cls, row: db.DatasetEvent) -> DatasetEventType:
        return cls(kind=row.kind, at=row.at.astimezone(UTC), detail=row.detail)

    kind: DatasetEventKind = strawberry.field(description="What happened.")

    at: datetime = strawberry.field(description="When it happened.")

    detail: str = strawberry.field(description="Details, e.g. the checksum of an upload.")


@strawberry.type(
    name="TrainingDataset",
    description=(
        "The data a model version was trained on: a zip archive, public or private. A "
        "private one is visible only to its owner and deleted automatically when its "
        "window ends (expiresAt)."
    ),
)
class TrainingDatasetType(Node):
    row: strawberry.Private[db.TrainingDataset]

    @classmethod
    def of(cls, row: db.TrainingDataset) -> TrainingDatasetType:
        deleting = row.status == db.DatasetStatus.DELETING  # access ended at the claim
        return cls(
            id=strawberry.ID(ids.encode("TrainingDataset", row.public_id)),
            row=row,
            filename=row.filename,
            size_bytes=BigInt(row.size_bytes),
            sha256=row.sha256,
            visibility=row.visibility,
            status=shown_status(row.status),
            expires_at=as_utc(row.expires_at),
            deleted_at=as_utc(row.claimed_at if deleting else row.deleted_at),
            deletion_reason=row.deletion_reason,
            created_at=row.created_at.astimezone(UTC),
            uploaded_at=as_utc(row.uploaded_at),
        )

    filename: str = strawberry.field(
        description="The file name given at upload (for display only)."
    )

    size_bytes: BigInt = strawberry.field(description="The size in bytes.")

    sha256: str | None = strawberry.field(
        description="SHA-256 of the bytes, hex; null until they arrive."
    )

    visibility: Visibility = strawberry.field(description="Public or private.")

    status: DatasetStatus = strawberry.field(
        description="Waiting for its bytes, available, or deleted."
    )

    expires_at: datetime | None = strawberry.field(
        description=(
            "When a private dataset stops being downloadable and is deleted: publishedAt + "
            "the retention period, or, while its version is a draft, its upload + the draft "
            "lifetime (see retentionPolicy); null for public datasets, pending uploads, and "
            "datasets deleted before their window ended."
        )
    )

    deleted_at: datetime | None = strawberry.field(
        description=(
            "When the dataset was deleted (access ended then; the bytes are gone within "
            "moments); null while it exists."
        )
    )

    deletion_reason: DeletionReason | None = strawberry.field(
        description="Why the bytes were deleted; null while they exist."
    )

    created_at: datetime = strawberry.field(description="When the dataset was recorded.")

    uploaded_at: datetime | None = strawberry.field(
        description="When its bytes arrived; null until then."
    )

    @strawberry.field(description="The model version trained on this dataset.")
    async def version(self, info: Info) -> ModelVersionType | None:
        version = await info.context.loaders.of(lookups.VERSION).load(self.row.version_id)
        return ModelVersionType.of(version) if version is not None else None

    @strawberry.field(
        description=(
            "A signed URL that downloads the zip archive, good for a few minutes. It stops "
            "working at expiresAt and on deletion, whichever comes first, and is null "
            "whenever you may not download."
        )
    )
    async def download_url(self, info: Info) -> str | None:
        if not access.downloadable(self.row, info.context.now()):
            return None
        return download_link(info, signing.DATASET, self.row.id)

    @strawberry.field(
        description=(
            "The dataset's history (its most recent 100 events), oldest first; only the "
            "owner sees it (else null)."
        )
    )
    async def events(self, info: Info) -> list[DatasetEventType] | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        rows = await info.context.loaders.events_of_dataset.load(self.row.id)
        return [DatasetEventType.of(r) for r in rows]


@strawberry.type(name="Notification", description="A message to you about your datasets.")
class NotificationType(Node):
    row: strawberry.Private[db.Notification]

    @classmethod
    def of(cls, row: db.Notification) -> NotificationType:
        return cls(
            id=strawberry.ID(ids.encode("Notification", row.public_id)),
            row=row,
            kind=row.kind,
            message=row.message,
            created_at=row.created_at.astimezone(UTC),
            read_at=as_utc(row.read_at),
        )

    kind: NotificationKind = strawberry.field(description="What it is about.")

    message: str = strawberry.field(
        description="The message, naming the model, version, file and date."
    )

    created_at: datetime = strawberry.field(description="When it was sent.")

    read_at: datetime | None = strawberry.field(
        description="When you marked it read; null while unread."
    )

    @strawberry.field(description="The dataset it is about (a tombstone once deleted).")
    async def dataset(self, info: Info) -> TrainingDatasetType | None:
        if self.row.dataset_id is None:
            return None
        dataset = await info.context.loaders.of(lookups.DATASET).load(self.row.dataset_id)
        return TrainingDatasetType.of(dataset) if dataset is not None else None


@strawberry.type(description="What happens to private datasets, from the configured values.")
class RetentionPolicy:
    private_retention_seconds: int = strawberry.field(
        description="How long after publishing a private dataset is kept, in seconds."
    )
    reminder_offsets_seconds: list[int] = strawberry.field(
        description="When the owner is reminded, in seconds before deletion, largest first."
    )
    notice: str = strawberry.field(
        description="The sentence the upload form shows next to the sharing option."
    )
    draft_retention_seconds: int = strawberry.field(
        description=(
            "How long a private dataset of a version that is never published is kept after "
            "its upload, in seconds (publishing starts the normal window instead)."
        )
    )
    withheld_header_keys: list[str] = strawberry.field(
        description=(
            "The safetensors __metadata__ keys treated as training data: withheld from "
            "everybody but the owner unless the version's dataset is public, and erased "
            "when its window ends (for the upload form to warn about)."
        )
    )
