"""moto's S3 server (``python -m moto.server``) with two of its costs taken away, for
runs that keep a thousand objects and more in one bucket (tests/proof_scenario.py):

- ``ListObjectVersions`` with a prefix copied every version of every key in the bucket
  before filtering (the app lists one blob's versions to delete it: quadratic work
  over a run); here only the keys under the prefix are looked at;
- a key deleted while another request lists the bucket made that listing fail with a
  500 (``TypeError: 'NoneType' object is not iterable``); here it is skipped.

Run as ``python -m tests.moto_server -H 127.0.0.1 -p PORT`` (the arguments of moto's).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from moto import server
from moto.s3.models import S3Backend
from moto.s3.utils import _VersionedKeyStore

_local = threading.local()
_get_bucket = S3Backend.get_bucket
_list_object_versions = S3Backend.list_object_versions


def _iterlists(self: _VersionedKeyStore) -> Iterator[tuple[str, list[Any]]]:
    for key in self._self_iterable():
        found = self.getlist(key)
        if found is not None:  # gone since the copy of the keys was taken
            yield key, found


def _get_bucket_under_prefix(self: S3Backend, bucket_name: str) -> Any:
    bucket = _get_bucket(self, bucket_name)
    prefix = getattr(_local, "prefix", "")
    if not prefix:
        return bucket
    view = copy.copy(bucket)
    view.keys = _VersionedKeyStore()
    for key in list(dict.keys(bucket.keys)):
        versions = dict.get(bucket.keys, key)
        if key.startswith(prefix) and versions:
            dict.__setitem__(view.keys, key, versions)
    return view


def _list_object_versions_under_prefix(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
    _local.prefix = kwargs.get("prefix") or (args[4] if len(args) > 4 else "") or ""
    try:
        return _list_object_versions(self, *args, **kwargs)
    finally:
        _local.prefix = ""


_VersionedKeyStore.lists = _VersionedKeyStore.iterlists = _iterlists  # type: ignore[method-assign]
S3Backend.get_bucket = _get_bucket_under_prefix  # type: ignore[method-assign]
S3Backend.list_object_versions = _list_object_versions_under_prefix  # type: ignore[method-assign]

if __name__ == "__main__":
    server.main()
