"""Account deletion: every key destroyed at once, then the bytes, then every row.

``deleteAccount`` checks the password again, marks the account (``users.deleting_at``:
from then on no token of it works and it cannot sign in) and runs the steps below;
each is idempotent, so a crash half-way is finished by the next sweep
(:func:`unfinished`), at start-up at once:

1. **claim** every live dataset, weights file and data export of the account;
2. **destroy every key at once**: one transaction deletes all their data keys from the
   key store and records ``key_destroyed_at`` on the datasets;
3. **delete the objects**, every stored version of each;
4. **tombstones and receipts**: each dataset gets its signed receipt
   (:mod:`storage.retention.deletion`);
5. **the rows**, in one transaction: models, versions, files, datasets (their history
   with them), notifications, exports, sessions, download links, outgoing e-mail, the
   account (its e-mail address with it); the username is held back from sign-up for
   ``LORASHELF_USERNAME_QUARANTINE`` (kept as a keyed hash, :func:`held_name`, never
   as the name);
6. **leave no trace**: SQLite's write-ahead log emptied (deleted rows are zeroed by
   ``secure_delete``), its search index rebuilt without the account's models.

The answer carries a signed account-deletion receipt holding every dataset's receipt,
since the owner can no longer sign in to read them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.transactions import in_transaction

from storage import accounts, changes
from storage.crypto import keystore, receipts
from storage.crypto.receipts import Receipt
from storage.db.enums import DatasetStatus, DeletionReason, ExportStatus
from storage.db.global_ids import encode
from storage.db.models import (
    AuthToken,
    DataExport,
    DownloadLink,
    LoraModel,
    ModelFile,
    ModelVersion,
    Notification,
    TrainingDataset,
    User,
    UsernameHold,
)
from storage.db.site import OutgoingMail
from storage.errors import ServiceError
from storage.privacy import lookups
from storage.retention import deletion
from storage.retention.policy import LIVE
from storage.runtime import Runtime
from storage.system.claim_holder import holder

log = logging.getLogger("lorashelf.accounts")

GONE = (DatasetStatus.DELETING, DatasetStatus.DELETED)


def held_name(secret_key: str, username: str) -> str:
    """How a held-back username is kept: HMAC-SHA256 under the server's secret key (a
    copy of the database alone cannot be searched for names)."""
    name = accounts.normalise_username(username)
    return hmac.new(
        secret_key.encode(), b"username-hold\x00" + name.encode(), hashlib.sha256
    ).hexdigest()


async def is_held(secret_key: str, username: str, *, now: datetime) -> bool:
    return await UsernameHold.filter(
        name_hash=held_name(secret_key, username), until__gt=now
    ).exists()


async def release_holds(now: datetime) -> int:
    """Forget held-back usernames whose time is over (the sweep)."""
    return int(await UsernameHold.filter(until__lte=now).delete())


async def delete_account(
    rt: Runtime, viewer: int | None, *, password: str
) -> tuple[Receipt, list[Receipt]]:
    """The signed-in user deletes their account: the password checked again (a wrong one
    changes nothing), then every step. Returns the account's receipt and its datasets'."""
    user = await User.get_or_none(id=viewer, deleting_at=None) if viewer is not None else None
    if user is None:
        raise ServiceError("Sign in to delete your account.", code="UNAUTHENTICATED")
    if not await accounts.password_matches(user, password):
        raise ServiceError("The password is wrong.", field="password", code="INVALID_PASSWORD")
    now = rt.clock.now()
    # The mark is the change (from here the account is gone to every request); the
    # steps follow, each idempotent: what fails is finished by the sweep.
    async with changes.transaction(now, public=False):
        await User.filter(id=user.id, deleting_at=None).update(deleting_at=now)
    found = await finish(rt, user.id)
    if found is None:  # another request finished it first
        raise ServiceError("This account has been deleted.", code="NOT_FOUND")
    return found


async def unfinished(now: datetime, *, older_than: int, limit: int) -> list[int]:
    """Accounts whose deletion started ``older_than`` seconds ago and is not finished
    (its process died): the sweep finishes them."""
    cutoff = now - timedelta(seconds=older_than)
    rows = User.filter(deleting_at__lte=cutoff).order_by("deleting_at").limit(limit)
    return [row.id for row in await rows.only("id")]


async def finish(rt: Runtime, user_id: int) -> tuple[Receipt, list[Receipt]] | None:
    """Run (or finish) the deletion of an account marked ``deleting_at``; its receipts,
    or None if there is no such account (any more). Safe to run twice, concurrently."""
    user = await User.get_or_none(id=user_id, deleting_at__isnull=False)
    if user is None:
        return None
    now = rt.clock.now()
    # Whether anonymous viewers see anything of the account (a published model): only
    # then may its deletion move the public generation (private work never does).
    seen = await LoraModel.filter(lookups.MODEL.visible(None), owner_id=user.id).exists()
    await _claim(user.id, now=now)  # 1
    blob_keys = await _destroy_keys(rt, user.id)  # 2
    for key in blob_keys:  # 3
        await rt.blobs.remove_bytes(key)
    for dataset_id in await _ids(
        TrainingDataset.filter(owner_id=user.id, status=DatasetStatus.DELETING)
    ):
        await deletion.complete_deletion(rt, dataset_id, now=now)  # 4
    # its public models leave anonymous answers with its rows (only then)
    found = await _remove_rows(rt, user, now=now, public=seen)  # 5
    if found is None:
        return None
    await changes.after_commit("leaving no trace", _leave_no_trace())  # 6
    log.info("an account was deleted")
    return found


async def _ids(query: object) -> list[int]:
    return [row.id for row in await query.only("id")]  # type: ignore[attr-defined]


async def _claim(user_id: int, *, now: datetime) -> None:
    claim = {"claimed_at": now, "claimed_by": holder()}
    await TrainingDataset.filter(owner_id=user_id, status__in=LIVE).update(
        status=DatasetStatus.DELETING, deletion_reason=DeletionReason.ACCOUNT_DELETED, **claim
    )
    await (
        ModelFile.filter(owner_id=user_id)
        .exclude(status__in=GONE)
        .update(
            status=DatasetStatus.DELETING, deletion_reason=DeletionReason.ACCOUNT_DELETED, **claim
        )
    )
    await (
        DataExport.filter(owner_id=user_id)
        .exclude(status=ExportStatus.EXPIRED)
        .update(status=ExportStatus.EXPIRED, **claim)
    )


async def _destroy_keys(rt: Runtime, user_id: int) -> set[str]:
    """Every data key of the account's blobs, in one transaction; the blob keys."""
    keys: set[str] = set()
    datasets = await TrainingDataset.filter(owner_id=user_id).exclude(blob_key=None)
    keys.update(d.blob_key for d in datasets if d.blob_key)
    for file in await ModelFile.filter(owner_id=user_id):
        keys.update(file.blob_keys())
    exports = await DataExport.filter(owner_id=user_id).exclude(blob_key=None)
    keys.update(e.blob_key for e in exports if e.blob_key)
    async with in_transaction():
        at = rt.clock.now()
        await keystore.destroy(keys)
        await TrainingDataset.filter(
            owner_id=user_id, key_destroyed_at=None, blob_key__in=list(keys)
        ).update(key_destroyed_at=at)
    await keystore.settle()
    return keys


async def _remove_rows(
    rt: Runtime, user: User, *, now: datetime, public: bool
) -> tuple[Receipt, list[Receipt]] | None:
    """Every row of the account, and the account, in one transaction (the public
    generation moves with it if ``public``); the receipts are signed from the rows as
    they go."""
    async with changes.transaction(now, public=public) as change:
        if not await User.filter(id=user.id, deleting_at__isnull=False).exists():
            change.public = False  # another run removed them (and moved it)
            return None
        datasets = await TrainingDataset.filter(owner_id=user.id).order_by("id")
        signed = [
            Receipt(d.receipt_payload, d.receipt_signature, d.receipt_key_id)
            for d in datasets
            if d.receipt_payload and d.receipt_signature and d.receipt_key_id
        ]
        files = await ModelFile.filter(owner_id=user.id).values_list("id", flat=True)
        exports = await DataExport.filter(owner_id=user.id).values_list("id", flat=True)
        counts = {
            "models": await LoraModel.filter(owner_id=user.id).count(),
            "modelVersions": await ModelVersion.filter(owner_id=user.id).count(),
            "modelFiles": len(files),
            "trainingDatasets": len(datasets),
            "notifications": await Notification.filter(user_id=user.id).count(),
            "dataExports": len(exports),
        }
        for kind, ids in (
            ("d", [d.id for d in datasets]),
            ("f", list(files)),
            ("x", list(exports)),
        ):
            if ids:
                await DownloadLink.filter(kind=kind, object_id__in=ids).delete()
        await Notification.filter(user_id=user.id).delete()
        await TrainingDataset.filter(owner_id=user.id).delete()  # their history with them
        await ModelFile.filter(owner_id=user.id).delete()
        await ModelVersion.filter(owner_id=user.id).delete()
        await LoraModel.filter(owner_id=user.id).delete()  # tags, search rows with them
        await DataExport.filter(owner_id=user.id).delete()
        await AuthToken.filter(user_id=user.id).delete()
        # Its e-mail: the messages waiting to go (addresses and texts), then the account
        # row with its address columns (a foreign key's cascade is not relied on).
        await OutgoingMail.filter(user_id=user.id).delete()
        await User.filter(id=user.id).delete()
        until = now + timedelta(seconds=rt.settings.username_quarantine)
        name = held_name(rt.settings.secret_key, user.username)
        await UsernameHold.filter(name_hash=name).delete()
        await UsernameHold.create(name_hash=name, until=until)
        payload = {
            "kind": "ACCOUNT_DELETED",
            "issuer": rt.settings.public_url or None,
            "account": {
                "id": encode("User", user.public_id),
                "username": user.username,
                "createdAt": receipts.instant(user.created_at),
            },
            "requestedAt": receipts.instant(user.deleting_at),
            "completedAt": receipts.instant(rt.clock.now()),
            "usernameHeldUntil": receipts.instant(until),
            "removed": counts,
            "datasetReceipts": [r.as_json() for r in signed],
        }
        account = await receipts.sign(rt.master, payload, now=rt.clock.now())
    return account, signed


async def _leave_no_trace() -> None:
    """SQLite: rebuild the search index without the deleted models, and empty the
    write-ahead log (the deleted rows were zeroed in place by ``secure_delete``)."""
    client = connections.get("default")
    if client.capabilities.dialect == "sqlite":
        await client.execute_script("INSERT INTO model_search(model_search) VALUES ('optimize')")
    await keystore.settle()
