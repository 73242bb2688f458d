"""The sealed blob format: AES-256-GCM over fixed-size chunks (pure: no I/O).

A blob of ``P`` plaintext bytes is stored as ``n = max(1, ceil(P / CHUNK))`` chunks laid
end to end, each ``CHUNK`` plaintext bytes (the last one shorter, possibly empty)
sealed as ``ciphertext || 16-byte tag``: so the stored size is ``P + 16 n`` and chunk
``i`` starts at ``i * (CHUNK + 16)``. Each chunk is one ``AESGCM`` call under the
blob's own random 256-bit data key, with

- nonce: the chunk's index, 12 bytes big-endian (a data key seals one blob, each index
  once, so a nonce is never reused under a key);
- associated data: ``b"lorashelf-blob-v1" || object id || index (8 bytes BE) || final``
  (one byte, 1 on the last chunk only).

A chunk moved to another index or another blob, a chunk changed, or a blob cut short
or lengthened (the last chunk is the only one marked final) fails authentication:
:class:`TamperedBlob`, never served as data. A ranged read decrypts only the chunks
it touches (:func:`span`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 1024 * 1024  # plaintext bytes per chunk
TAG = 16  # bytes of a GCM tag
SEALED_CHUNK = CHUNK + TAG
KEY_BYTES = 32  # AES-256
CONTEXT = b"lorashelf-blob-v1"


class TamperedBlob(Exception):
    """A stored chunk failed authentication: changed, moved, cut short or lengthened."""

    def __init__(self, object_id: str, index: int):
        super().__init__(f"blob {object_id}: chunk {index} failed authentication")
        self.object_id = object_id
        self.index = index


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def chunk_count(plain_size: int) -> int:
    return max(1, -(-plain_size // CHUNK))


def sealed_size(plain_size: int) -> int:
    """Stored bytes of a blob of ``plain_size`` plaintext bytes."""
    return plain_size + TAG * chunk_count(plain_size)


def plain_size(stored: int) -> int:
    """Plaintext bytes of a stored blob of ``stored`` bytes (every chunk has its tag)."""
    if stored < TAG:
        raise ValueError("a sealed blob has at least one tag")
    chunks = -(-stored // SEALED_CHUNK)
    return stored - TAG * chunks


@dataclass(frozen=True)
class Span:
    """The chunks a plaintext range touches and where they are stored."""

    first: int  # index of the first chunk
    last: int  # index of the last chunk
    stored_start: int  # offset of the first chunk in the stored blob
    stored_end: int  # offset of the last chunk's last byte (inclusive)
    skip: int  # plaintext bytes of the first chunk before the range


def span(start: int, end: int, stored: int) -> Span:
    """The chunks holding plaintext bytes ``start`` .. ``end`` (inclusive) of a blob
    stored in ``stored`` bytes."""
    first, last = start // CHUNK, end // CHUNK
    stored_end = min((last + 1) * SEALED_CHUNK, stored) - 1
    return Span(first, last, first * SEALED_CHUNK, stored_end, start - first * CHUNK)


class ChunkCipher:
    """One blob's data key and identity: seals and opens its chunks, one AESGCM call each."""

    def __init__(self, key: bytes, object_id: str):
        if len(key) != KEY_BYTES:
            raise ValueError("a data key has 32 bytes")
        self._aead = AESGCM(key)
        self.object_id = object_id
        self._context = CONTEXT + object_id.encode("ascii")

    def _aad(self, index: int, final: bool) -> bytes:
        return self._context + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")

    def seal(self, index: int, plaintext: bytes | bytearray | memoryview, *, final: bool) -> bytes:
        return self._aead.encrypt(index.to_bytes(12, "big"), plaintext, self._aad(index, final))

    def open(self, index: int, sealed: bytes | bytearray | memoryview, *, final: bool) -> bytes:
        try:
            return self._aead.decrypt(index.to_bytes(12, "big"), sealed, self._aad(index, final))
        except InvalidTag:
            raise TamperedBlob(self.object_id, index) from None
