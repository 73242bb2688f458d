"""The erasure commands of ``lorashelf``: rotate-master-key, rotate-receipt-key,
encrypt-existing, verify-receipt (graph/cli.py registers them)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from storage.config.parse import ConfigError
from storage.config.settings import Settings
from storage.runtime import Runtime

T = TypeVar("T")


def _say(line: str) -> None:
    print(f"lorashelf: {line}", flush=True)


@asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The database migrated and connected, and a runtime that plans nothing."""
    from jobs.assembly import assemble
    from storage.db import connection
    from storage.runtime import NoScheduler

    await connection.migrate(settings.database_url)
    await connection.connect(settings.database_url, settings.database_pool_size)
    assembly = assemble(settings, scheduler=NoScheduler())
    try:
        await assembly.runtime.blobs.connect()
        yield assembly.runtime
    finally:
        await assembly.runtime.blobs.close()
        await connection.disconnect()


def _run(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _runtime(settings) as rt:
            return await work(rt)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        print(f"lorashelf: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def rotate_master_key(settings: Settings, args: argparse.Namespace) -> None:
    from storage.crypto import rotation

    result = _run(settings, lambda rt: rotation.rotate(rt.master))
    _say(
        f"every key is wrapped by master key {result.master_key_id} ({result.data_keys} data "
        f"keys and {result.receipt_keys} receipt keys re-wrapped; no blob was touched)"
    )
    if result.retired and settings.master_key is not None:
        _say(
            "master keys no longer needed: "
            f"{', '.join(result.retired)}; remove them from LORASHELF_MASTER_KEY"
        )
    elif settings.master_key is not None and not result.data_keys:
        _say(
            "to rotate, put a new key first in LORASHELF_MASTER_KEY (the old one after it, "
            "comma-separated; make one with: openssl rand -base64 32), restart the "
            "processes, and run this again"
        )


def rotate_receipt_key(settings: Settings, args: argparse.Namespace) -> None:
    from storage.crypto import receipts

    row = _run(settings, lambda rt: receipts.rotate(rt.master, now=rt.clock.now()))
    _say(
        f"new receipts are signed by {row.key_id} (public key {row.public_key}); the old "
        "keys stay published"
    )


def encrypt_existing(settings: Settings, args: argparse.Namespace) -> None:
    from storage import encryption
    from storage.crypto import keystore

    async def work(rt: Runtime) -> int:
        left = await encryption.remaining()
        if args.status:
            _say(f"{left} blob{'s' if left != 1 else ''} still stored in plaintext")
            return left
        _say(f"{left} blob{'s' if left != 1 else ''} stored in plaintext to seal")
        done, after = 0, ""
        while True:
            batch = await keystore.plaintext_batch(50, after=after)
            if not batch:
                break
            for object_id in batch:
                after = object_id
                outcome = await encryption.seal_one(rt, object_id)
                done += outcome != "kept"
                _say(f"{object_id}: {outcome} ({done}/{left})")
        remaining = await encryption.remaining()
        _say(f"done: {remaining} left in plaintext" + (" (being deleted)" if remaining else ""))
        return remaining

    left = _run(settings, work)
    if args.status:
        raise SystemExit(0 if left == 0 else 1)


def _public_key(receipt: dict[str, Any], args: argparse.Namespace, settings: Settings) -> str:
    """The public key to check with: --public-key, --keys (a file or URL of the
    well-known list), or the configured deployment's own."""
    wanted = receipt.get("keyId")
    if args.public_key:
        return str(args.public_key)
    if args.keys:
        source = str(args.keys)
        if source.startswith(("http://", "https://")):
            import httpx

            listing = httpx.get(source, timeout=10).json()
        else:
            listing = json.loads(Path(source).read_text())
        keys = listing.get("keys", listing) if isinstance(listing, dict) else listing
    else:
        from storage.crypto import receipts

        rows = _run(settings, lambda rt: receipts.published(rt.master, now=rt.clock.now()))
        keys = [{"keyId": r.key_id, "publicKey": r.public_key} for r in rows]
    for key in keys:
        if key.get("keyId") == wanted:
            return str(key["publicKey"])
    raise KeyError(f"no public key {wanted!r} in the keys given")


def verify_receipt(settings: Settings | None, args: argparse.Namespace) -> None:
    """Exit 0 and print the payload if the receipt verifies; 1 if not."""
    from storage.crypto import receipts

    try:
        document = json.loads(Path(args.file).read_text())
        # the receipt itself, or an API answer holding one
        receipt = _find_receipt(document)
        if receipt is None:
            raise ValueError("no receipt (payload, signature, keyId) in the file")
        if settings is None and not (args.public_key or args.keys):
            raise ValueError("give --public-key or --keys")
        key = _public_key(receipt, args, settings)  # type: ignore[arg-type]
        payload = receipts.verify(receipt, key)
    except (OSError, ValueError, KeyError, receipts.InvalidReceipt) as exc:
        print(f"lorashelf: the receipt does NOT verify: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    # the verdict on stderr, the payload alone on stdout (for a pipe)
    print(
        f"lorashelf: the receipt verifies: signed by receipt key {receipt['keyId']}",
        file=sys.stderr,
    )
    print(json.dumps(payload, indent=2, ensure_ascii=False))


def _find_receipt(document: Any) -> dict[str, Any] | None:
    if isinstance(document, dict):
        if {"payload", "signature"} <= document.keys():
            found = dict(document)
            if "keyId" not in found:
                found["keyId"] = json.loads(found["payload"]).get("keyId")
            return found
        for value in document.values():
            inner = _find_receipt(value)
            if inner is not None:
                return inner
    if isinstance(document, list):
        for value in document:
            inner = _find_receipt(value)
            if inner is not None:
                return inner
    return None


def register(sub: Any, settings: Callable[[], Settings]) -> None:
    """Add the commands to ``lorashelf``'s subcommands."""
    rotate = sub.add_parser(
        "rotate-master-key",
        help="re-wrap every data key and receipt key by a new master key (no blob touched)",
        description="With the key file: generate a new master key and re-wrap every key by "
        "it (resumable). With LORASHELF_MASTER_KEY: put the new key first (the old ones "
        "after it), restart, then run this to re-wrap what the old ones wrapped.",
    )
    rotate.set_defaults(func=lambda a: rotate_master_key(settings(), a))
    receipt = sub.add_parser(
        "rotate-receipt-key",
        help="sign new deletion receipts with a new Ed25519 key (the old one stays published)",
    )
    receipt.set_defaults(func=lambda a: rotate_receipt_key(settings(), a))
    encrypt = sub.add_parser(
        "encrypt-existing",
        help="seal the blobs stored before encryption (resumable; the sweep does it too)",
        description="Seal every blob stored in plaintext by an earlier release, one at a "
        "time: copy under a new key, point the rows at the copy, delete the plaintext "
        "(every version). Safe to interrupt and to run again, beside running servers.",
    )
    encrypt.add_argument(
        "--status",
        action="store_true",
        help="only say how many are left (exit 0 when none, 1 otherwise)",
    )
    encrypt.set_defaults(func=lambda a: encrypt_existing(settings(), a))
    verify = sub.add_parser(
        "verify-receipt",
        help="check a deletion receipt's signature offline",
        description="Check a receipt saved as JSON ({payload, signature, keyId}, or an API "
        "answer holding one) against a public key: --public-key, --keys (a saved copy or "
        "the URL of /.well-known/lorashelf-receipt-keys.json), or else this deployment's "
        "own keys (its configuration). Prints the payload; exit 1 if it does not verify.",
    )
    verify.add_argument("file", help="the receipt, as JSON")
    verify.add_argument("--public-key", help="the Ed25519 public key, base64url (32 bytes)")
    verify.add_argument("--keys", help="a file or URL listing the receipt keys")

    def _verify(a: argparse.Namespace) -> None:
        configured = None if (a.public_key or a.keys) else settings()
        verify_receipt(configured, a)

    verify.set_defaults(func=_verify)
