"""What a real ``lorashelf serve`` writes to disk is its user's alone: the data dir
0700, every file in it 0600 (private datasets, original weights headers, the SQLite
database, the secret key), whatever the umask it was started with; a data dir left
open to other local users is closed at start, with a warning."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.conftest import make_safetensors
from tests.processes import Owner, serve

SECRET_TAGS = '{"cats": {"zebra_secret_tag": 3}}'


def modes(root: Path) -> dict[str, int]:
    """Every path under ``root`` (itself included) and its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_everything_serve_writes_is_its_users_alone_even_under_a_lax_umask(
    tmp_path: Path,
) -> None:
    # given a server started under the usual umask (022: files 0644 by default)
    data_dir = tmp_path / "var"
    previous = os.umask(0o022)
    try:
        with serve({"LORASHELF_DATA_DIR": str(data_dir)}, cwd=tmp_path, fresh=True) as server:
            # when a creator uploads a private dataset and a weights file whose header
            # holds training data (its original header is kept for the owner)
            owner = Owner.sign_up(server.url)
            published = owner.publish_private_dataset()
            version_id = owner.mutate(
                "createModelVersion",
                "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
                "{ version { id } userErrors { code message } } }",
                {
                    "i": {
                        "modelId": owner.create_model("Dogs"),
                        "name": "v1",
                        "baseModel": "SDXL_1_0",
                    }
                },
            )["version"]["id"]
            owner.upload_weights(version_id, make_safetensors({"ss_tag_frequency": SECRET_TAGS}))
            assert published.dataset_id
            found = modes(data_dir)
    finally:
        os.umask(previous)
    # then no file or directory of the data dir lets anybody but its user in
    open_to_others = {path: f"{mode:04o}" for path, mode in found.items() if mode & 0o077}
    assert open_to_others == {}
    assert found["."] == 0o700
    assert any(path.startswith("blobs/") for path in found)  # the bytes were looked at


def test_a_data_dir_open_to_other_users_is_closed_at_start_with_a_warning(
    tmp_path: Path,
) -> None:
    # given a data dir an older version left world-readable, with a world-readable file
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    old = data_dir / "old-blob"
    old.write_bytes(b"private bytes")
    old.chmod(0o644)
    # when serve starts on it
    with serve({"LORASHELF_DATA_DIR": str(data_dir)}, cwd=tmp_path, fresh=True) as server:
        log = server.log.read_text()
    # then other users cannot enter it any more (its files are out of their reach),
    # and the operator was told
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o750
    assert (
        f"LORASHELF_DATA_DIR: {data_dir} was open to every local user (mode 0755); "
        "it is now 0750" in log
    )
