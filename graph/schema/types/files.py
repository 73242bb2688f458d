"""The weights file type: its header as the viewer may see it, its hashes, and what
its header says about the training."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import strawberry

from graph.schema import ids, relations
from graph.schema.context import Info
from graph.schema.enums import BaseModelName, FileStatus, LoraType, shown_status
from graph.schema.links import download_link
from graph.schema.relations import awaited, related, then
from graph.schema.scalars import BigInt, as_utc
from graph.schema.types.receipts import DeletionReceiptType
from graph.schema.types.relay import Node, node_of, node_type
from storage import hashes, headers, signing
from storage.db import enums as stored
from storage.db import models as db
from storage.formats.safetensors.kohya import architecture_of, suggest_base_model, suggest_type
from storage.privacy import access, lookups

if TYPE_CHECKING:
    from graph.schema.types.versions import ModelVersionType

R = TypeVar("R")
VersionRef = Annotated["ModelVersionType", strawberry.lazy("graph.schema.types.versions")]


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
    suggested_base_model: BaseModelName | None = strawberry.field(
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
@node_type(lookups.FILE)
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

    async def _metadata(self, info: Info) -> headers.Metadata:
        """The header's metadata as this viewer may read it: all of it for the owner
        while the withheld keys' window is open (or for everybody while the dataset is
        public), else the public part. Read once per request, however often asked."""
        ctx, row = info.context, self.row
        if row.status != stored.DatasetStatus.AVAILABLE:
            return headers.EMPTY
        dataset = await awaited(related(info, relations.FILE_DATASET, row))
        withheld = access.sees_withheld_keys(ctx.viewer_id, row, dataset, ctx.now())
        return await ctx.loaders.file_metadata(row, withheld=withheld)

    @strawberry.field(
        description=(
            "What the header says about the training, from the metadata you may see "
            "(empty until the bytes arrive): nothing here is derived from a withheld key "
            "unless you may see that key."
        )
    )
    async def architecture(self, info: Info) -> ModelArchitecture:
        arch = architecture_of((await self._metadata(info)).entries)
        return ModelArchitecture(
            network_module=arch.network_module,
            network_dim=arch.network_dim,
            network_alpha=arch.network_alpha,
            base_model_version=arch.base_model_version,
            modelspec_architecture=arch.modelspec_architecture,
            algo=arch.algo,
            suggested_base_model=suggest_base_model(arch),
            suggested_type=suggest_type(arch) if arch.network_module or arch.algo else None,
        )

    def _sees_original(self, info: Info, viewer: int | None, use: Callable[[bool], R]) -> R:
        """``use(whether viewer downloads the original file)`` (withheld keys included;
        ``viewer`` None: whether the public does), now or once the version's dataset is
        loaded."""
        now = info.context.now()
        return then(
            related(info, relations.FILE_DATASET, self.row),
            lambda dataset: use(access.sees_withheld_keys(viewer, self.row, dataset, now)),
        )

    def _size(self, original: bool) -> BigInt:
        return BigInt(hashes.size_of(self.row, original=original))

    def _sha256(self, original: bool) -> str | None:
        return hashes.sha256_of(self.row, original=original)

    @strawberry.field(
        description=(
            "The size in bytes of the file you download: for the owner the original "
            "(training-data keys included, while they are shown to the owner), for "
            "everybody else the public file (publicSizeBytes); until the bytes arrive, the "
            "size declared for the upload."
        )
    )
    def size_bytes(self, info: Info) -> BigInt:
        return self._sees_original(info, info.context.viewer_id, self._size)

    @strawberry.field(
        description=(
            "The size in bytes of the file as the public downloads it (without withheld "
            "keys, unless the dataset is public); until the bytes arrive, the size declared."
        )
    )
    def public_size_bytes(self, info: Info) -> BigInt:
        return self._sees_original(info, None, self._size)

    @strawberry.field(
        description=(
            "SHA-256 of the file you download, hex: for the owner the original, for "
            "everybody else the public file (publicSha256); null until uploaded."
        )
    )
    def sha256(self, info: Info) -> str | None:
        return self._sees_original(info, info.context.viewer_id, self._sha256)

    @strawberry.field(
        description=(
            "SHA-256 of the file as the public downloads it, hex (what others see as "
            "sha256); null until uploaded."
        )
    )
    def public_sha256(self, info: Info) -> str | None:
        return self._sees_original(info, None, self._sha256)

    @strawberry.field(
        description="AutoV2: the first 10 hex characters of sha256 (what A1111 shows)."
    )
    def auto_v2(self, info: Info) -> str | None:
        row = self.row
        return self._sees_original(
            info,
            info.context.viewer_id,
            lambda original: row.auto_v2 if original else row.public_auto_v2,
        )

    @strawberry.field(
        description=(
            "The header's __metadata__ as you may see it, in header order: without the "
            "withheld training-data keys unless the dataset is public, or you are the owner "
            "and their window is open."
        )
    )
    async def header_metadata(self, info: Info) -> list[MetadataEntry]:
        found = await self._metadata(info)
        info.context.loaders.metadata_budget.charge(found.size)
        return [MetadataEntry(key=k, value=v) for k, v in found.entries.items()]

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
            "For the owner: the signed receipt of the withheld keys' erasure (what was "
            "erased, when its window ended, when its key was destroyed, when the last "
            "copy went); null until then, or for anybody else."
        )
    )
    def header_erasure_receipt(self, info: Info) -> DeletionReceiptType | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        row = self.row
        return DeletionReceiptType.stored(
            row.header_receipt_payload, row.header_receipt_signature, row.header_receipt_key_id
        )

    @strawberry.field(
        description=(
            "For the owner while the withheld keys exist: SHA-256 of the file as uploaded "
            "(what your downloadUrl serves you); null otherwise."
        ),
        deprecation_reason="The owner's sha256 is the original's; publicSha256 the public's.",
    )
    async def original_sha256(self, info: Info) -> str | None:
        ctx = info.context
        if not access.owns(ctx.viewer_id, self.row.owner_id):
            return None
        dataset = await awaited(related(info, relations.FILE_DATASET, self.row))
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
        if self.row.status != stored.DatasetStatus.AVAILABLE:
            return None
        return download_link(info, signing.FILE, self.row.id)

    @strawberry.field(description="The model version this file belongs to.")
    def version(self, info: Info) -> VersionRef | None:
        return then(related(info, relations.VERSION, self.row), _version)


def _version(version: db.ModelVersion | None) -> ModelVersionType | None:
    if version is None:
        return None
    return cast("ModelVersionType", node_of(lookups.VERSION, version))
