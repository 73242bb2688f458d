"""The weights file type: its header as the viewer may see it, its hashes, and what
its header says about the training."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import BaseModel, FileStatus, LoraType, shown_status
from graph.schema.links import download_link
from graph.schema.scalars import BigInt, as_utc
from graph.schema.types.relay import Node, node_of, node_type
from storage import signing
from storage.db import enums as stored
from storage.db import models as db
from storage.privacy import access, lookups
from storage.retention import header_firewall

if TYPE_CHECKING:
    from graph.schema.types.versions import ModelVersionType

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
        if self.row.status != stored.DatasetStatus.AVAILABLE:
            return []
        dataset = await ctx.loaders.dataset_of_version.load(self.row.version_id)
        entries = await header_firewall.metadata(
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
        if self.row.status != stored.DatasetStatus.AVAILABLE:
            return None
        return download_link(info, signing.FILE, self.row.id)

    @strawberry.field(description="The model version this file belongs to.")
    async def version(self, info: Info) -> VersionRef | None:
        version = await info.context.loaders.of(lookups.VERSION).load(self.row.version_id)
        if version is None:
            return None
        return cast("ModelVersionType", node_of(lookups.VERSION, version))
