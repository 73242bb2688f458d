"""GraphQL errors as clients see them: expected failures keep their message and code;
unexpected ones are masked.

An expected failure raised in a query (a :class:`ServiceError`, e.g. a malformed
cursor) reaches the client as a GraphQL error carrying its ``code`` and ``field``;
in a mutation it becomes ``userErrors`` instead (``graph.schema.mutations``). An unexpected
exception reaches the client as "Unexpected error." with a request id, and the
server log has the traceback under the same id. Validation errors keep
their message; with introspection off they also lose any "Did you mean" hint, so
the schema cannot be guessed through suggestions. An answer carries at most
``LORASHELF_MAX_ERRORS`` errors, then one ``TOO_MANY_ERRORS``.
"""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from graph.schema.limits import too_many_errors
from storage.db.connection import is_busy
from storage.errors import ServiceError

log = logging.getLogger("lorashelf.errors")

_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def is_unexpected(error: GraphQLError) -> bool:
    """Raised by our code and not an expected, coded failure."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False
    return not isinstance(original, ServiceError) and not is_busy(original)


def request_id_of(execution_context: ExecutionContext | None) -> str | None:
    context = getattr(execution_context, "context", None)
    value = getattr(context, "request_id", None)
    return value if isinstance(value, str) else None


def log_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    request_id = request_id_of(execution_context)
    for error in errors:
        if is_unexpected(error):
            log.error(
                "request %s: unexpected error at %s",
                request_id,
                error.path,
                exc_info=error.original_error,
            )
        else:
            log.debug("request %s: %s", request_id, error.message)


class MaskUnexpected(MaskErrors):
    def __init__(self, *, hide_suggestions: bool, max_errors: int):
        super().__init__(should_mask_error=is_unexpected, error_message="Unexpected error.")
        self.hide_suggestions = hide_suggestions
        self.max_errors = max_errors

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return GraphQLError(
            message=self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={
                "code": "INTERNAL_ERROR",
                "requestId": request_id_of(self.execution_context),
            },
        )

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        if len(errors) > self.max_errors and not _ends_the_list(errors[self.max_errors]):
            errors = [*errors[: self.max_errors], too_many_errors(self.max_errors)]
        processed = [_with_code(error) for error in super()._process_errors(errors)]
        if not self.hide_suggestions:
            return processed
        return [_without_suggestion(error) for error in processed]


def _ends_the_list(error: GraphQLError) -> bool:
    return (error.extensions or {}).get("code") == "TOO_MANY_ERRORS"


def _with_code(error: GraphQLError) -> GraphQLError:
    """An expected failure keeps its message and gains its code and field."""
    original = error.original_error
    if original is not None and not isinstance(original, ServiceError) and is_busy(original):
        # A field could not be read (mutations report a busy database in their payload,
        # graph/schema/mutations/payload.py): it says nothing about changes.
        original = ServiceError(
            "The server is busy: this could not be read. Try again in a moment.", code="TRY_AGAIN"
        )
    if not isinstance(original, ServiceError):
        return error
    return GraphQLError(
        original.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": original.code, "field": original.field},
    )


def _without_suggestion(error: GraphQLError) -> GraphQLError:
    message = _SUGGESTION.sub("", error.message)
    if message == error.message:
        return error
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=error.extensions,
    )
