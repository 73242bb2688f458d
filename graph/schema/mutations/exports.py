"""Data export mutations: requestDataExport."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    user_errors_field,
)
from graph.schema.types.exports import DataExportType
from storage import exports


@strawberry.input(description="Ask for a zip of everything you own (nothing to choose).")
class RequestDataExportInput:
    reserved: str | None = strawberry.field(
        default=None, description="Unused; the input has no fields to fill yet."
    )


@strawberry.type(description="The result of requestDataExport.")
class RequestDataExportPayload:
    export: DataExportType | None = null_field(
        "The export: PENDING until it is built (you are notified then), or the one already "
        "on its way."
    )
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Ask for a zip of everything you own: a job builds it, sealed at rest; you are "
    "notified when it is ready, and can download it for LORASHELF_EXPORT_RETENTION "
    "(7 days by default); then it is shredded. One at a time: while one is on its way, "
    "asking again returns it.",
)
async def request_data_export(
    info: Info, input: Annotated[RequestDataExportInput, INPUT]
) -> RequestDataExportPayload:
    export = await info.context.call(exports.request_export)
    return RequestDataExportPayload(export=DataExportType.of(export))
