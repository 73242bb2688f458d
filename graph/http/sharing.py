"""Signed-in viewers served the anonymous answer when it is provably theirs too.

A signed-in viewer's answer is the anonymous one when both hold:

1. the document selects only fields declared ``SHARED`` (graph/schema/sharing.py:
   decided once per document by the cache's ``Classifier``; a document that cannot
   be classified is not shared);
2. the viewer owns nothing only they see (a draft, a dataset or weights file that is
   not public, withheld header keys, an NSFW model): read with the token itself, in
   the one statement that signs the request in (``storage.accounts.authenticate``),
   so it is exactly as current as the token: a change the viewer commits is seen by
   their next request, and a revoked token is refused (401) by the same read.

Then the request goes on as an anonymous one (the response cache answers it, with
its ``ETag`` rules; the answer stays ``Cache-Control: private, no-store``). Otherwise
it takes the full path, already signed in (``SIGN_IN`` in its scope's state: the
GraphQL app does not sign it in again). The shared answer holds only what anonymous
viewers see, so privacy cannot get worse; what could go wrong is a viewer not seeing
their own objects, which (2) rules out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from graph.http.endpoint import SIGN_IN, GraphQLApp, Unauthenticated
from graph.http.metrics import ApiMetrics


@dataclass(frozen=True)
class Decision:
    shared: bool
    scope: Scope  # what the rest of the app sees: anonymous when shared


class Sharing:
    def __init__(self, app: GraphQLApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def decide(self, scope: Scope, shared_document: bool) -> Decision:
        """Whether this signed-in query gets the anonymous answer; ``shared_document``:
        whether its document selects only shared fields (``Shape.shared``)."""
        if not shared_document:
            self.metrics.signed_in("per_viewer")
            return Decision(False, scope)
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        authorization = next((v for k, v in headers if k == b"authorization"), None)
        outcome: Any
        try:
            outcome = await self.app.sign_in(
                authorization.decode("latin-1") if authorization is not None else None
            )
        except Unauthenticated as refused:
            outcome = refused
        if outcome is None or isinstance(outcome, Unauthenticated) or outcome[1].owns_unshared:
            if outcome is not None and not isinstance(outcome, Unauthenticated):
                self.metrics.signed_in("owner")
            state = {**scope.get("state", {}), SIGN_IN: outcome}
            return Decision(False, {**scope, "state": state})
        self.metrics.signed_in("shared")
        anonymous = [(k, v) for k, v in headers if k != b"authorization"]
        return Decision(True, {**scope, "headers": anonymous})
