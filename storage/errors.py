"""Expected failures of storage services: each carries a stable ``code``."""

from __future__ import annotations


class ServiceError(Exception):
    """An expected failure the API reports as a ``userErrors`` entry."""

    code = "INVALID"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(ServiceError):
    """The object does not exist, or the viewer may not see it (never distinguished)."""

    code = "NOT_FOUND"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    """Only operators may do this. Raised before anything about the subject is looked
    up: the same answer, after the same work, whatever the input names."""

    code = "FORBIDDEN"

    def __init__(self) -> None:
        super().__init__("Only operators of this site may do this.")


def retryable(exc: BaseException) -> bool:
    """Whether a failure is a dependency's passing state that a retry can cure, so the
    answer is ``TRY_AGAIN``: the database busy or unreachable
    (``storage.db.connection.is_busy``), or the object store not answering
    (``storage.blobs.base.StoreUnavailable``)."""
    from storage.blobs.base import StoreUnavailable
    from storage.db.connection import is_busy

    return isinstance(exc, StoreUnavailable) or is_busy(exc)


class InvalidState(ServiceError):
    code = "INVALID_STATE"


class TryAgain(ServiceError):
    """The database stayed busy with other writers past the busy timeout: nothing was
    changed, and the same request can succeed a moment later."""

    code = "TRY_AGAIN"

    def __init__(self) -> None:
        super().__init__("The server is busy; nothing was changed. Try again in a moment.")
