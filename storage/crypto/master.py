"""The master keys: what wraps every data key (and the receipt keys' private halves).

A deployment's master key is ``LORASHELF_MASTER_KEY`` (base64 of 32 bytes), or else a
key file generated once into the data dir (``master_key``, mode 0600), one base64 key
a line. Several keys may be given at once (comma-separated, or several lines): the
first wraps what is wrapped from now on, the others are kept only to unwrap what they
wrapped, while ``lorashelf rotate-master-key`` re-wraps it (:mod:`storage.crypto.rotation`).

A wrapped secret is ``nonce (12) || AES-256-GCM(secret)`` under a master key, with the
purpose and the object it belongs to as associated data (a wrapped key cannot be moved
to another object), stored beside the id of the master key that wrapped it
(:func:`key_id`: a hash, never the key).

The key file is never generated over data: :func:`storage.crypto.keystore.check_master_keys`
refuses to start when keys are stored and the file is gone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.config.parse import ConfigError
from storage.config.settings import Settings

FILE_NAME = "master_key"
WRAP_CONTEXT = b"lorashelf-wrap-v1:"


def key_id(key: bytes) -> str:
    """A master key's public name: 16 hex digits of a hash of it."""
    return hashlib.sha256(b"lorashelf-master-key-id\x00" + key).hexdigest()[:16]


def encode(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def new_key() -> bytes:
    return secrets.token_bytes(32)


class UnknownMasterKey(Exception):
    """Something was wrapped by a master key this process does not have."""

    def __init__(self, wanted: str):
        super().__init__(f"wrapped by master key {wanted}, which this process does not have")
        self.wanted = wanted


def read_key_file(path: Path) -> list[bytes]:
    """The keys in a key file, first (current) first."""
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            key = base64.b64decode(line.strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(
                f"LORASHELF_MASTER_KEY: line {number} of the key file {path} is not a base64 "
                "key of 32 bytes"
            )
        keys.append(key)
    if not keys:
        raise ConfigError(f"LORASHELF_MASTER_KEY: the key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: list[bytes], *, exclusive: bool = False) -> bool:
    """Write ``keys`` (first: current) to the key file, mode 0600, durably and atomically.
    With ``exclusive`` only if there is none yet; returns whether this call wrote it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(encode(k) + "\n" for k in keys))
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(temp, path)  # a process starting at the same moment may win
            except FileExistsError:
                return False
        else:
            os.replace(temp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True
    finally:
        temp.unlink(missing_ok=True)


class MasterKeys:
    """This deployment's master keys, read from the configuration or the key file."""

    def __init__(self, settings: Settings):
        self.path = settings.data_dir / FILE_NAME
        self.configured: tuple[bytes, ...] | None = settings.master_key
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None

    @property
    def from_file(self) -> bool:
        return self.configured is None

    def loaded(self) -> bool:
        return self._current is not None

    def load(self) -> bool:
        """Read the keys (the configured ones, or the key file's); False if there is no
        key file yet."""
        if self.configured is not None:
            keys = list(self.configured)
        elif self.path.exists():
            keys = read_key_file(self.path)
        else:
            return False
        self._keys = {key_id(k): k for k in keys}
        self._current = key_id(keys[0])
        return True

    def generate(self) -> None:
        """Make the key file (once: a process starting at the same moment may win)."""
        assert self.from_file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(self.path, [new_key()], exclusive=True)
        self.load()

    @property
    def current_id(self) -> str:
        assert self._current is not None, "master keys not loaded"
        return self._current

    def ids(self) -> list[str]:
        return list(self._keys)

    def wrap(self, secret: bytes, *, purpose: str) -> tuple[str, bytes]:
        """``secret`` wrapped by the current master key: (its id, the wrapped bytes)."""
        kid = self.current_id
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._keys[kid]).encrypt(nonce, secret, WRAP_CONTEXT + purpose.encode())
        return kid, nonce + sealed

    def unwrap(self, kid: str, wrapped: bytes, *, purpose: str) -> bytes:
        """The secret ``wrapped`` holds. A key file rotated by another process is read
        again when it names a key this process has not seen."""
        if kid not in self._keys and self.from_file and self.path.exists():
            self.load()
        key = self._keys.get(kid)
        if key is None:
            raise UnknownMasterKey(kid)
        try:
            return AESGCM(key).decrypt(wrapped[:12], wrapped[12:], WRAP_CONTEXT + purpose.encode())
        except InvalidTag:
            raise ValueError(f"a key wrapped by master key {kid} failed authentication") from None
