"""``/.well-known/lorashelf-receipt-keys.json``: the public keys that sign deletion
receipts, for anyone who checks one (the same list as ``Query.receiptPublicKeys``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graph.schema.context import services_of
from storage.crypto import receipts

PATH = "/.well-known/lorashelf-receipt-keys.json"


async def receipt_keys(request: Request) -> Response:
    rt = services_of(request).runtime
    keys = await receipts.published(rt.master, now=rt.clock.now())
    body = {
        "format": receipts.FORMAT,
        "algorithm": "Ed25519",
        "keys": [
            {
                "keyId": row.key_id,
                "publicKey": row.public_key,
                "createdAt": receipts.instant(row.created_at),
                "retiredAt": receipts.instant(row.retired_at),
            }
            for row in keys
        ],
    }
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
