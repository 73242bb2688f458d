"""An upgraded deployment whose blobs were stored in plaintext: `lorashelf encrypt-existing`
seals them in place, survives a SIGKILL half-way, and afterwards every download is
byte-exact and no plaintext byte is left at rest."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import signal
import subprocess
import zipfile
from pathlib import Path

import httpx

from jobs.assembly import assemble
from storage.db import connection as db
from storage.runtime import NoScheduler
from tests.erasure import configured, unseal_everything
from tests.processes import LORASHELF, Owner, child_env, lorashelf, serve


def marked_zip(mark: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("captions.txt", mark * (1_500_000 // len(mark)))
    return buffer.getvalue()


def unseal(env: dict[str, str]) -> int:
    """Make the deployment's store what an earlier release left: plaintext blobs."""
    settings = configured(env)

    async def work() -> int:
        await db.connect(settings.database_url)
        try:
            rt = assemble(settings, scheduler=NoScheduler()).runtime
            return len(await unseal_everything(rt))
        finally:
            await db.disconnect()

    return asyncio.run(work())


def test_encrypt_existing_seals_a_plaintext_store_and_survives_a_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {"LORASHELF_DATA_DIR": str(data_dir)}
    marks = [secrets.token_hex(16).encode() for _ in range(10)]
    with serve(env, cwd=tmp_path) as server:
        # given a deployment with ten private datasets (and their weights files)
        owner = Owner.sign_up(server.url)
        model_id = owner.create_model()
        published = [
            owner.publish_private_dataset(model_id, version=f"v{i}", body=marked_zip(mark))
            for i, mark in enumerate(marks)
        ]
    # stored in plaintext, as before this release
    assert unseal(env) >= 20
    blobs = [p for p in (data_dir / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert sum(any(m in p.read_bytes() for m in marks) for p in blobs) == 10
    status = lorashelf("encrypt-existing", "--status", env=env, cwd=tmp_path)
    assert status.returncode == 1 and "still stored in plaintext" in status.stdout

    # when encrypt-existing is killed after sealing a few
    proc = subprocess.Popen(
        [*LORASHELF, "encrypt-existing"],
        cwd=tmp_path,
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    sealed = 0
    for line in proc.stdout:
        sealed += ": sealed (" in line
        if sealed >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(30)
    left = lorashelf("encrypt-existing", "--status", env=env, cwd=tmp_path)
    print(f"[encrypt-existing] killed after {sealed} sealed: {left.stdout.strip()}")
    assert left.returncode == 1  # some are left

    # and run again to the end
    done = lorashelf("encrypt-existing", env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done: 0 left" in done.stdout
    assert lorashelf("encrypt-existing", "--status", env=env, cwd=tmp_path).returncode == 0

    # then no plaintext byte of any dataset is left at rest
    at_rest = [p for p in data_dir.rglob("*") if p.is_file()]
    assert [p for p in at_rest if any(m in p.read_bytes() for m in marks)] == []
    # and every dataset downloads exactly as it was uploaded
    with serve(env, cwd=tmp_path) as server:
        again = Owner(server.url, owner.username, owner.token)
        for each in published:
            url = again.dataset(each.dataset_id)["downloadUrl"]
            assert httpx.get(url, timeout=30).content == each.body
