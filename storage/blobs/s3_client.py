"""The S3 client's bounds and its failures: how long the object store may take (the one
place the timeouts and retries are set), and which failures mean that it does not answer
now (:class:`~storage.blobs.base.StoreUnavailable`: the routes answer 503
``TRY_AGAIN``) rather than a refusal."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from storage.blobs.base import StoreUnavailable
from storage.config.parse import ConfigError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

MISSING = {"NoSuchKey", "NotFound", "404"}  # error codes of an object that is not there


def error_code(exc: Exception) -> str:
    """An S3 error's code (``NoSuchKey``, ``SlowDown``...), or ``""``."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# How long the object store may take, in one place. A request's contact with the store
# is bounded as a whole: a call that carries no data (a HEAD, a GET until its first
# chunk, starting, finishing or aborting a multipart upload) gets CONTACT seconds, every
# try included; a call that sends data gets CONTACT plus a second per SEND_FLOOR bytes
# it carries (a store taking data slower than that counts as away). A hung store so
# answers TRY_AGAIN in CONTACT seconds, where its tries used to cost ATTEMPTS x
# READ_TIMEOUT. Between the chunks of a download in progress only READ_TIMEOUT applies:
# a slow transfer is never cut for its length. Work off any request's path (deleting,
# listing) is bounded per try: ATTEMPTS x (CONNECT_TIMEOUT or READ_TIMEOUT) plus a
# jittered back-off (botocore's "standard" retries); AWS_MAX_ATTEMPTS and AWS_RETRY_MODE
# override the retries, as for any AWS client.
CONNECT_TIMEOUT = 2  # seconds to open a connection
READ_TIMEOUT = 10  # seconds an open connection may stay silent
ATTEMPTS = 2  # tries of one call: one retry
CONTACT = 4.0  # seconds a call on a request's path may take, every try included
SEND_FLOOR = 256 * 1024  # bytes a second a call sending data is granted on top
_SLOW = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


def client_config() -> Any:
    """The object store client's timeouts and retries."""
    from aiobotocore.config import AioConfig

    return AioConfig(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE") or "standard",  # type: ignore[typeddict-item]
            "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or ATTEMPTS),
        },
    )


def deadline(sending: int = 0) -> asyncio.Timeout:
    """The bound of one call on a request's path: :data:`CONTACT` seconds, and a second
    more per :data:`SEND_FLOOR` bytes it sends. Its expiry is a ``TimeoutError``, which
    :func:`reaching` takes for a store that does not answer."""
    return asyncio.timeout(CONTACT + sending / SEND_FLOOR)


def unavailable(exc: BaseException) -> bool:
    """Whether a failure means the store does not answer now (a wait can cure it)."""
    import aiohttp
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as CannotConnect

    reaching = (HTTPClientError, CannotConnect, aiohttp.ClientError, TimeoutError, ConnectionError)
    if isinstance(exc, reaching):
        return True
    if isinstance(exc, ClientError):
        http = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return http >= 500 or error_code(exc) in _SLOW
    return False


@contextlib.contextmanager
def reaching(where: str) -> Iterator[None]:
    """Calls to the store within: a store that does not answer raises
    :class:`StoreUnavailable` (naming ``where``)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if unavailable(exc):
            # not chained: the database's is_busy must not take a socket error of the
            # store for one of its own
            raise StoreUnavailable(
                f"{where}: the object store does not answer ({type(exc).__name__}: {exc})"
            ) from None
        raise


async def bucket_versioning(client: S3Client, bucket: str, where: str) -> str | None:
    """The bucket's versioning status (at start-up): what no wait can cure (no
    credentials, no bucket) is a ``ConfigError``, a store that does not answer
    :class:`StoreUnavailable`."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    try:
        answer = await client.get_bucket_versioning(Bucket=bucket)
    except NoCredentialsError:
        raise ConfigError(
            f"{where}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from None
    except EndpointConnectionError as exc:
        raise StoreUnavailable(
            f"{where}: the object store does not answer at {exc.kwargs.get('endpoint_url')} "
            "(AWS_ENDPOINT_URL_S3, AWS_REGION)"
        ) from None
    except (ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
        raise StoreUnavailable(f"{where}: the object store timed out ({exc})") from None
    except ClientError as exc:
        http = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if http >= 500 or error_code(exc) in ("SlowDown", "ServiceUnavailable"):
            raise StoreUnavailable(
                f"{where}: the object store answers {error_code(exc) or http} for now"
            ) from None
        raise ConfigError(
            f"{where}: the bucket cannot be used ({error_code(exc) or exc}); it must exist and "
            "these credentials must reach it"
        ) from None
    return answer.get("Status")
