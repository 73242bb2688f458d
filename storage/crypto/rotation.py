"""``lorashelf rotate-master-key``: every wrapped key re-wrapped by a new master key,
without touching a blob.

- With the key file (the default): a new key is generated and written first in the
  file, the old ones kept after it (processes running now read the file again when
  they meet a key wrapped by the new one); every data key and receipt key is re-wrapped
  by the new one; then the file keeps the new key alone. Interrupted, it is run again:
  a file with more than one key is a rotation under way, finished with its first key.
- With ``LORASHELF_MASTER_KEY``: the operator puts the new key first (the old ones
  after it, comma-separated) in every process's configuration; this re-wraps what the
  others wrapped; then the old ones can be removed from the configuration.

Each row is re-wrapped by a conditional update (only if it is still as it was read),
so running processes and a second rotation never lose a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.crypto import keystore, receipts
from storage.crypto.master import MasterKeys, new_key, read_key_file, write_key_file
from storage.db.key_tables import BlobKey, ReceiptKey

BATCH = 500


@dataclass(frozen=True)
class Rotation:
    master_key_id: str  # the key everything is wrapped by now
    data_keys: int  # re-wrapped by this run
    receipt_keys: int
    retired: list[str]  # master keys no longer needed


async def _rewrap_data_keys(master: MasterKeys) -> int:
    done = 0
    target = master.current_id
    while True:
        rows = await BlobKey.exclude(master_key_id=target).order_by("object_id").limit(BATCH)
        if not rows:
            return done
        for row in rows:
            purpose = keystore.purpose(row.object_id)
            secret = master.unwrap(row.master_key_id, bytes(row.wrapped), purpose=purpose)
            kid, wrapped = master.wrap(secret, purpose=purpose)
            done += await BlobKey.filter(
                object_id=row.object_id, master_key_id=row.master_key_id
            ).update(master_key_id=kid, wrapped=wrapped)


async def _rewrap_receipt_keys(master: MasterKeys) -> int:
    done = 0
    for row in await ReceiptKey.exclude(master_key_id=master.current_id):
        purpose = receipts.key_purpose(row.key_id)
        secret = master.unwrap(row.master_key_id, bytes(row.wrapped_private), purpose=purpose)
        kid, wrapped = master.wrap(secret, purpose=purpose)
        done += await ReceiptKey.filter(key_id=row.key_id, master_key_id=row.master_key_id).update(
            master_key_id=kid, wrapped_private=wrapped
        )
    return done


async def rotate(master: MasterKeys) -> Rotation:
    """Re-wrap every key by the new master key (see the module)."""
    await keystore.ready(master)
    if master.from_file:
        keys = read_key_file(master.path)
        if len(keys) == 1:  # a new rotation: the new key first, the old one kept after it
            write_key_file(master.path, [new_key(), *keys])
        master.load()
    before = set(master.ids())
    data = await _rewrap_data_keys(master)
    receipt = await _rewrap_receipt_keys(master)
    retired = sorted(before - {master.current_id})
    if master.from_file:
        write_key_file(master.path, [read_key_file(master.path)[0]])
        master.load()
    return Rotation(master.current_id, data, receipt, retired)
