"""Why a safetensors file is refused: the stable codes, and the error that carries one.
The rules behind each code are in :mod:`storage.formats.safetensors.header`."""

from __future__ import annotations

from typing import Literal, NoReturn, get_args

ErrorCode = Literal[
    "NOT_SAFETENSORS",
    "HEADER_TOO_LARGE",
    "BAD_HEADER",
    "UNKNOWN_DTYPE",
    "BAD_TENSOR",
    "BAD_OFFSETS",
    "BAD_METADATA",
    "TRUNCATED",
    "TRAILING_DATA",
]
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


class SafetensorsError(ValueError):
    """The bytes are not an acceptable safetensors file; ``code`` says why (see above)."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code: ErrorCode = code

    def __repr__(self) -> str:
        return f"SafetensorsError({self.message!r}, {self.code!r})"


def fail(code: ErrorCode, message: str) -> NoReturn:
    raise SafetensorsError(message, code)
