"""The Query root: the entry points for reads. Resolvers translate: decode ids, ask a
loader or one storage function, wrap the result."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import BaseModelName, LoraType, ModelSort, ReportStatus
from graph.schema.relations import load_ahead
from graph.schema.types.models import ModelType
from graph.schema.types.moderation import AuditEntryType, ReportType
from graph.schema.types.policy import RetentionPolicyType
from graph.schema.types.receipts import ReceiptKeyType
from graph.schema.types.relay import (
    NODE_TYPES,
    AfterArg,
    Connection,
    FirstArg,
    IncludeNsfwArg,
    Node,
    connection,
    opened,
)
from graph.schema.types.users import UserType
from graph.schema.types.versions import ModelVersionType
from storage import audit, catalog, hashes, reports
from storage.crypto import receipts
from storage.db import enums as stored
from storage.privacy import lookups
from storage.retention import header_firewall


async def resolve_node(info: Info, global_id: str) -> Node | None:
    """``node(id)``: the same visible-lookup as every other path; not allowed is not found."""
    decoded = ids.decode_any(global_id)
    entry = NODE_TYPES.get(decoded[0]) if decoded else None
    if decoded is None or entry is None:
        return None
    kind, node_type = entry
    row = await info.context.loaders.public(kind).load(decoded[1])
    if row is None:
        return None
    await load_ahead(info, [row], kind.name)
    return node_type.of(row)  # type: ignore[no-any-return]


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
        if model is None:
            return None
        await load_ahead(info, [model], lookups.MODEL.name)
        return ModelType.of(model)

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
            BaseModelName | None,
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
            base_model=stored.BaseModel(base_model) if base_model is not None else None,
            type=stored.LoraType(type) if type is not None else None,
            include_nsfw=include_nsfw,
        )
        page = await catalog.models_page(
            viewer=info.context.viewer_id,
            narrow=narrow,
            sort=stored.ModelSort(sort),
            first=first,
            after=opened(info, after),
        )
        return await connection(info, page, ModelType.of, lookups.MODEL.name)

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
        row = await hashes.version_by_hash(ctx.viewer_id, hash, now=ctx.now())
        if row is None:
            return None
        await load_ahead(info, [row], lookups.VERSION.name)
        return ModelVersionType.of(row)

    @strawberry.field(
        description=(
            "The public keys that sign deletion receipts, oldest first (retired ones stay, "
            "so old receipts can still be checked); also at "
            "/.well-known/lorashelf-receipt-keys.json."
        )
    )
    async def receipt_public_keys(self, info: Info) -> list[ReceiptKeyType]:
        rt = info.context.runtime
        return [
            ReceiptKeyType.of(row)
            for row in await receipts.published(rt.master, now=rt.clock.now())
        ]

    @strawberry.field(description="What happens to private datasets, and when.")
    def retention_policy(self, info: Info) -> RetentionPolicyType:
        policy = info.context.runtime.policy
        return RetentionPolicyType(
            private_retention_seconds=policy.private_retention,
            reminder_offsets_seconds=list(policy.reminders),
            notice=policy.notice(),
            draft_retention_seconds=policy.draft_retention,
            withheld_header_keys=list(
                header_firewall.withheld_keys(info.context.services.settings)
            ),
        )

    @strawberry.field(
        description=(
            "Operators: the reports, newest first (those in `status`, or all). Anybody else: "
            "an error with code FORBIDDEN."
        )
    )
    async def reports(
        self,
        info: Info,
        status: Annotated[
            ReportStatus | None, strawberry.argument(description="Only reports in this state.")
        ] = None,
        first: FirstArg = None,
        after: AfterArg = None,
    ) -> Connection[ReportType]:
        ctx = info.context
        await ctx.require_operator()
        page = await reports.reports_page(
            viewer=ctx.viewer_id,
            operator=True,
            status=stored.ReportStatus(status) if status is not None else None,
            first=first,
            after=opened(info, after),
        )
        return await connection(info, page, ReportType.of, "Report")

    @strawberry.field(
        description=(
            "Operators: the audit trail, newest first (every operator action; entries are "
            "never changed or removed). Anybody else: an error with code FORBIDDEN (your "
            "own entries are on `viewer.auditLog`)."
        )
    )
    async def audit_log(
        self, info: Info, first: FirstArg = None, after: AfterArg = None
    ) -> Connection[AuditEntryType]:
        ctx = info.context
        await ctx.require_operator()
        page = await audit.entries_page(
            viewer=ctx.viewer_id, operator=True, first=first, after=opened(info, after)
        )
        return await connection(info, page, AuditEntryType.of, "AuditEntry")
