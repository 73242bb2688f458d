"""The pages the links in e-mail open: confirming an address (``/email/verify``) and
stopping a kind of e-mail (``/email/unsubscribe``, also the ``List-Unsubscribe`` target).

A GET only shows a page with one button; the change is the POST (so a mail scanner that
follows links changes nothing). A one-click unsubscribe (RFC 8058: a POST with
``List-Unsubscribe=One-Click``) is that same POST. A link that does not work says why
(expired, used, replaced, not valid), with the code the API gives for it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graph.schema.context import services_of
from storage import email_addresses
from storage.errors import ServiceError
from storage.mail import messages
from storage.mail.messages import text

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": _CSP,
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def _page(
    title: str, paragraphs: list[str], *, form: str | None = None, status: int = 200
) -> Response:
    return HTMLResponse(
        messages.page(title, paragraphs, form=form), status_code=status, headers=_HEADERS
    )


def _failed(title: str, exc: ServiceError) -> Response:
    response = _page(title, [text("page.failed", reason=exc.message)], status=400)
    response.headers["x-lorashelf-code"] = exc.code
    return response


async def verify(request: Request) -> Response:
    title = text("page.verify.title")
    token = request.query_params.get("token", "")
    if request.method == "GET":
        return _page(title, [], form=text("page.verify.button"))
    try:
        await email_addresses.verify_email(services_of(request).runtime, token=token)
    except ServiceError as exc:
        return _failed(title, exc)
    return _page(title, [text("page.verify.done")])


async def unsubscribe(request: Request) -> Response:
    title = text("page.unsubscribe.title")
    token = request.query_params.get("token", "")
    if request.method == "GET":
        try:
            _, topic = email_addresses.read_unsubscribe(services_of(request).runtime, token)
        except ServiceError as exc:
            return _failed(title, exc)
        ask = text("page.unsubscribe.ask", topic=text(f"topic.{topic}"))
        return _page(title, [ask], form=text("page.unsubscribe.button"))
    try:
        topic = await email_addresses.unsubscribe(services_of(request).runtime, token=token)
    except ServiceError as exc:
        return _failed(title, exc)
    return _page(title, [text("page.unsubscribe.done", topic=text(f"topic.{topic}"))])
