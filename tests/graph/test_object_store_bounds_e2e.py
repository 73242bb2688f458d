"""How long a request waits on an object store that does not answer, and what it leaves
there, with real processes: `lorashelf serve` on an S3 bucket (moto's server) reached
through a TCP forwarder the test hangs (connections accepted, nothing answered), stops
(refused and reset), or stops in the middle of a transfer.

- the store hung: a download and an upload answer 503 ``TRY_AGAIN`` with
  ``Retry-After`` within the bound docs/operations.md states (a call on a request's path
  is bounded as a whole, every try included: storage/blobs/s3_client.py);
- ``HEAD`` on a download answers what ``GET`` would: 503 ``TRY_AGAIN`` with the store
  away, not a 200 whose ``GET`` would fail;
- a multipart upload cut while the store is away, whose abort the store could not take
  either, is aborted by the sweep as soon as the store answers again (not an hour later).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.graph.test_object_store_outage_e2e import (
    assert_try_again,
    gate,
    new_version,
    site,
    start_dataset,
    timed,
)
from tests.processes import Owner, S3Server, serve, wait_for, zip_bytes
from tests.proxy import Proxy

__all__ = ["gate"]  # the fixture: the way to the object store

# docs/operations.md: with the store hung, a download or an upload answers TRY_AGAIN
# within 5 s (before, two tries of 10 s of silence each: about 20 s).
HUNG_BOUND = 5.0


@pytest.mark.backend_independent(reason="the object store's hang, before any database write")
def test_with_the_store_hung_a_download_and_an_upload_answer_try_again_within_the_bound(
    tmp_path: Path, s3: S3Server, gate: Proxy
) -> None:
    bucket = s3.new_bucket()
    with serve(site(tmp_path, s3, gate, bucket), cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        # a small upload (one PutObject) and a larger one (a multipart upload)
        small = zip_bytes({"images/heron.png": os.urandom(20_000)})
        larger = zip_bytes({"images/herons.bin": os.urandom(3 * 1024 * 1024)})
        uploads = [(start_dataset(owner, new_version(owner), b), b) for b in (small, larger)]

        # when the store hangs: connections accepted, nothing answered
        gate.hang()
        try:
            # then a download answers 503 TRY_AGAIN within the bound, no status before
            download, took = timed(lambda: httpx.get(published.download_url, timeout=60))
            assert_try_again(download)
            assert took < HUNG_BOUND, took
            print(f"download's answer with the store hung: {took:.2f} s")
            # and so does an upload, whatever its size, its claim given back
            for started, body in uploads:
                began = time.monotonic()
                upload = httpx.put(started["uploadUrl"], content=body, timeout=60)
                took = time.monotonic() - began
                assert_try_again(upload)
                assert took < HUNG_BOUND, took
                print(f"upload's answer ({len(body)} bytes) with the store hung: {took:.2f} s")
        finally:
            gate.resume()

        # when the store answers again, the same requests succeed
        download = httpx.get(published.download_url, timeout=30)
        assert download.status_code == 200 and download.content == published.body
        for started, body in uploads:
            upload = httpx.put(started["uploadUrl"], content=body, timeout=30)
            assert upload.status_code == 200, upload.text
            assert owner.dataset(started["dataset"]["id"])["status"] == "AVAILABLE"


@pytest.mark.backend_independent(reason="the object store away; the database answers as ever")
def test_head_on_a_download_answers_what_get_would_with_the_store_away(
    tmp_path: Path, s3: S3Server, gate: Proxy
) -> None:
    bucket = s3.new_bucket()
    with serve(site(tmp_path, s3, gate, bucket), cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        healthy = httpx.head(published.download_url, timeout=30)
        assert healthy.status_code == 200, healthy.text
        assert healthy.headers["content-length"] == str(len(published.body))

        # when the object store stops answering
        gate.stop()
        try:
            # then HEAD answers as GET does: 503 TRY_AGAIN with Retry-After
            head = httpx.head(published.download_url, timeout=30)
            get = httpx.get(published.download_url, timeout=30)
            assert_try_again(get)
            assert head.status_code == get.status_code == 503
            assert head.headers["retry-after"] == get.headers["retry-after"] == "1"
            ranged = httpx.head(published.download_url, headers={"Range": "bytes=5-"}, timeout=30)
            assert ranged.status_code == 503
        finally:
            gate.start()

        # and once it is back, HEAD answers 200 with the download's headers again
        head = httpx.head(published.download_url, timeout=30)
        assert head.status_code == 200
        assert head.headers["etag"] == healthy.headers["etag"]
        get = httpx.get(published.download_url, timeout=30)
        assert get.status_code == 200 and get.content == published.body


def test_a_multipart_upload_cut_while_the_store_is_away_is_aborted_once_it_is_back(
    tmp_path: Path, s3: S3Server, gate: Proxy
) -> None:
    bucket = s3.new_bucket()
    env = site(tmp_path, s3, gate, bucket, LORASHELF_SWEEP_INTERVAL="2s")
    with serve(env, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        # more than one 8 MiB part: sent as a multipart upload
        body = zip_bytes({"images/heron.bin": os.urandom(20 * 1024 * 1024)})
        started = start_dataset(owner, new_version(owner), body)

        def in_progress() -> list[str]:
            uploads = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return [str(u["UploadId"]) for u in uploads]

        # when the store goes away in the middle of the second part (its abort refused too)
        gate.stop_after(12 * 1024 * 1024)
        upload = httpx.put(started["uploadUrl"], content=body, timeout=120)
        assert_try_again(upload)
        assert len(in_progress()) == 1  # what the store could not be told to drop

        # then once the store is back, the sweep aborts it within seconds
        gate.start()
        back = time.monotonic()
        wait_for(lambda: not in_progress(), timeout=15, interval=0.25)
        print(f"multipart upload aborted {time.monotonic() - back:.1f} s after the store")
        # and the same URL works: the claim was given back
        upload = httpx.put(started["uploadUrl"], content=body, timeout=120)
        assert upload.status_code == 200, upload.text
        assert not in_progress()
