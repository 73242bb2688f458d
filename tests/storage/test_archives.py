"""storage/formats/archives/: the directory checks kept from before, and every entry inflated.

All archives are built here, with zipfile or by hand-patching bytes; none is committed.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import random
import struct
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.formats.archives import directory, inflation, refusal
from storage.formats.archives.check import MAX_ENTRIES, ArchiveReport, check_archive
from storage.formats.archives.refusal import ArchiveRejected

pytestmark = pytest.mark.backend_independent(reason="a file-format parser over bytes")

MiB = 1 << 20
BOMB_ZEROS = 50 * MiB
RANDOM = random.Random(7).randbytes(4000)  # incompressible, the same every run


# Building archives ------------------------------------------------------------------------


def make(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def save(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "upload.zip"
    path.write_bytes(body)
    return path


# (offset in the local header, offset in the central header, format) of each field.
FIELDS = {
    "flags": (6, 8, "<H"),
    "method": (8, 10, "<H"),
    "crc": (14, 16, "<L"),
    "compressed": (18, 20, "<L"),
    "size": (22, 24, "<L"),
}


def headers(body: bytes) -> list[tuple[int, int]]:
    """(local header offset, central header offset) of every entry, in directory order."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        at = archive.start_dir
        count = len(archive.infolist())
    found = []
    for _ in range(count):
        assert body[at : at + 4] == b"PK\x01\x02"
        name, extra, comment = struct.unpack_from("<3H", body, at + 28)
        (local,) = struct.unpack_from("<L", body, at + 42)
        found.append((local, at))
        at += 46 + name + extra + comment
    return found


def patch(
    body: bytes, field: str, value: int, *, index: int = 0, local: bool = True, central: bool = True
) -> bytes:
    """``body`` with one header field of entry ``index`` overwritten."""
    local_at, central_at = headers(body)[index]
    in_local, in_central, fmt = FIELDS[field]
    patched = bytearray(body)
    if local:
        struct.pack_into(fmt, patched, local_at + in_local, value)
    if central:
        struct.pack_into(fmt, patched, central_at + in_central, value)
    return bytes(patched)


def payload(body: bytes, index: int = 0) -> bytes:
    """The compressed data of entry ``index`` as stored in the archive."""
    info = zipfile.ZipFile(io.BytesIO(body)).infolist()[index]
    name, extra = struct.unpack_from("<2H", body, info.header_offset + 26)
    start = info.header_offset + 30 + name + extra
    return body[start : start + info.compress_size]


@dataclass
class Raw:
    """An entry written by hand: ``data`` exactly as stored, every field chosen."""

    name: bytes
    data: bytes
    size: int
    crc: int
    method: int = 0
    flags: int = 0


def stored(name: bytes, content: bytes) -> Raw:
    return Raw(name, content, len(content), zlib.crc32(content))


def deflated(name: bytes, content: bytes, *, tail: bytes = b"", cut: int = 0) -> Raw:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(content) + packer.flush()
    return Raw(name, data[: len(data) - cut] + tail, len(content), zlib.crc32(content), method=8)


def raw_zip(
    entries: list[Raw],
    pointers: list[tuple[int, bytes]] | None = None,
    *,
    declared_entries: int | None = None,
) -> bytes:
    """Local entries one after the other, then one central header per (entry index,
    name) in ``pointers`` (default: one per entry, same name), then the end record."""
    body, offsets = b"", []
    for e in entries:
        offsets.append(len(body))
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, e.flags, e.method, 0, 0x21, e.crc,
            len(e.data), e.size, len(e.name), 0,
        )  # fmt: skip
        body += e.name + e.data
    directory = b""
    for index, name in (
        pointers if pointers is not None else list(enumerate(e.name for e in entries))
    ):
        e = entries[index]
        directory += struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, e.flags, e.method, 0, 0x21, e.crc,
            len(e.data), e.size, len(name), 0, 0, 0, 0, 0, offsets[index],
        ) + name  # fmt: skip
    count = min(len(pointers or entries) if declared_entries is None else declared_entries, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), 0)
    return body + directory + end


@functools.cache
def zeros_zip(count: int) -> bytes:
    return make({"zeros.bin": bytes(count)})


def rejected(path: Path, code: str, *, max_ratio: int = 100, **kwargs: int) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected) as caught:
        check_archive(path, max_ratio=max_ratio, **kwargs)
    assert caught.value.code == code, caught.value.message
    assert caught.value.status == refusal.STATUSES[code]
    return caught.value


# Sound archives pass ------------------------------------------------------------------------


def test_a_normal_archive_passes_with_its_numbers(tmp_path: Path) -> None:
    # given an archive of images and captions, a directory entry and an empty file
    files = {
        "images/": b"",
        "images/cat.png": b"\x89PNG\r\n\x1a\n" + RANDOM,
        "captions/cat.txt": b"a cat on a mat, " * 40,
        "captions/empty.txt": b"",
    }
    body = make(files)
    # when it is checked
    report = check_archive(save(tmp_path, body), max_ratio=100)
    # then it passes, every byte inflated and counted
    total = sum(len(data) for data in files.values())
    compressed = sum(i.compress_size for i in zipfile.ZipFile(io.BytesIO(body)).infolist())
    assert report == ArchiveReport(
        entries=4,
        archive_bytes=len(body),
        compressed_bytes=compressed,
        uncompressed_bytes=total,
        inflated_bytes=total,
    )


@pytest.mark.parametrize(
    "method",
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "deflate", "bzip2", "lzma"],
)
def test_each_accepted_method_passes(tmp_path: Path, method: int) -> None:
    # given an archive whose entries all use one method, one of them larger than a step
    files = {"a.txt": b"caption " * 100_000, "b.bin": RANDOM * 20, "c.txt": b"x"}
    body = make(files, method)
    # when it is checked (at a ratio the caption's repetition stays under)
    report = check_archive(save(tmp_path, body), max_ratio=1000)
    # then every byte was inflated
    assert report.inflated_bytes == report.uncompressed_bytes == sum(map(len, files.values()))


@pytest.mark.parametrize("extra", [-1, 0, 1, 21, 300])
def test_output_pending_inside_zlib_after_a_full_step_is_drained(
    tmp_path: Path, extra: int
) -> None:
    # given zeros just past one step: zlib has read all the input but still holds a
    # match's bytes when a step's output fills (so it must be asked again)
    size = inflation.STEP_OUTPUT + extra
    body = make({"zeros.bin": bytes(size)})
    # then all of it comes out and the stream ends
    assert check_archive(save(tmp_path, body), max_ratio=100_000).inflated_bytes == size


def test_zip64_archive_passes(tmp_path: Path) -> None:
    # given entries written with zip64 local headers (sizes 0xFFFFFFFF, real ones in the extra)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [("a.txt", b"hello " * 1000), ("b.bin", RANDOM)]:
            with archive.open(name, "w", force_zip64=True) as entry:
                entry.write(data)
    body = buffer.getvalue()
    local_at, _ = headers(body)[0]
    assert struct.unpack_from("<2L", body, local_at + 18) == (0xFFFFFFFF, 0xFFFFFFFF)
    # when it is checked
    report = check_archive(save(tmp_path, body), max_ratio=100)
    # then it passes
    assert report.entries == 2
    assert report.inflated_bytes == 6000 + len(RANDOM)


def test_zip64_sizes_in_the_local_extra_must_agree(tmp_path: Path) -> None:
    # given a zip64 entry whose local extra field declares one byte more
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, archive.open("a.txt", "w", force_zip64=True) as w:
        w.write(b"hello")
    body = bytearray(buffer.getvalue())
    at = body.index(b"\x01\x00\x10\x00")  # zip64 extra: id 1, 16 bytes (sizes)
    struct.pack_into("<Q", body, at + 4, 6)
    # then the local header and the directory disagree
    error = rejected(save(tmp_path, bytes(body)), "CORRUPT_ARCHIVE")
    assert "local header" in error.message


def test_data_descriptors_pass(tmp_path: Path) -> None:
    # given an archive written to an unseekable stream (flag bit 3, sizes after the data)
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", b"caption " * 500)
        archive.writestr("b.txt", b"another")
    body = bytes(sink.data)
    assert zipfile.ZipFile(io.BytesIO(body)).infolist()[0].flag_bits & 0x08
    # when it is checked, then it passes
    assert check_archive(save(tmp_path, body), max_ratio=100).inflated_bytes == 4007


def test_empty_archive_and_comment_pass(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = b"nothing here"
    report = check_archive(save(tmp_path, buffer.getvalue()), max_ratio=100)
    assert (report.entries, report.inflated_bytes) == (0, 0)


def test_an_empty_entry_with_no_compressed_bytes_passes_whatever_its_method(
    tmp_path: Path,
) -> None:
    # given an empty deflate entry written with no data at all (some writers do)
    body = raw_zip([Raw(b"empty.txt", b"", 0, 0, method=8), stored(b"a.txt", b"a")])
    # then it passes
    assert check_archive(save(tmp_path, body), max_ratio=100).entries == 2


# Lying sizes --------------------------------------------------------------------------------


@functools.cache
def lying_bomb() -> bytes:
    """50 MiB of deflated zeros whose headers (local and central) claim 100 bytes and
    the CRC of the first 100."""
    body = zeros_zip(BOMB_ZEROS)
    body = patch(body, "size", 100)
    return patch(body, "crc", zlib.crc32(bytes(100)))


def test_lying_size_bomb_is_refused_after_inflating_little(tmp_path: Path) -> None:
    # given the lying bomb, about 50 KB on disk
    body = lying_bomb()
    path = save(tmp_path, body)
    assert len(body) < 100_000
    # and the directory checks alone (count, names, declared total 100 <= 100 x size) pass it
    with path.open("rb") as handle:
        directory.check_directory(handle, max_ratio=100, max_entries=MAX_ENTRIES)
    # when it is checked
    error = rejected(path, "ZIP_BOMB")
    # then inflating it stopped within one step past the 100 declared bytes
    assert "declared 100 bytes" in error.message
    assert 100 < error.inflated <= 100 + inflation.STEP_OUTPUT


def test_inflating_stops_at_the_lying_entry(tmp_path: Path) -> None:
    # given an honest entry, a lying one (1 MiB of zeros claiming 10 bytes), then a large one
    lie = deflated(b"b.bin", bytes(MiB))
    lie.size, lie.crc = 10, zlib.crc32(bytes(10))
    entries = [stored(b"a.txt", b"a" * 1000), lie, deflated(b"c.bin", bytes(3 * MiB))]
    # when it is checked with a ratio that lets the declared total through
    error = rejected(save(tmp_path, raw_zip(entries)), "ZIP_BOMB", max_ratio=1000)
    # then the first entry and the start of the second were inflated, the third never
    assert 1010 < error.inflated <= 1010 + inflation.STEP_OUTPUT


def test_declared_total_over_the_ratio_is_refused_before_inflating(tmp_path: Path) -> None:
    # given 3 honest MiB of zeros in an archive of a few KB
    body = make({f"{n}.bin": bytes(MiB) for n in range(3)})
    # when checked at ratio 100, then refused without inflating anything
    error = rejected(save(tmp_path, body), "ZIP_BOMB")
    assert error.inflated == 0
    assert f"{3 * MiB:,} bytes" in error.message and "100 times" in error.message
    # and at a ratio that allows it, all of it is inflated
    assert check_archive(save(tmp_path, body), max_ratio=1000).inflated_bytes == 3 * MiB


def test_entry_inflating_to_less_than_declared_is_refused(tmp_path: Path) -> None:
    body = patch(make({"a.txt": b"hello" * 100}), "size", 600)
    error = rejected(save(tmp_path, body), "CORRUPT_ARCHIVE")
    assert "500 bytes, not 600" in error.message


def test_crc_mismatch_is_refused(tmp_path: Path) -> None:
    body = make({"a.txt": b"hello" * 100, "b.txt": b"fine"})
    body = patch(body, "crc", zlib.crc32(b"something else"))
    error = rejected(save(tmp_path, body), "CORRUPT_ARCHIVE")
    assert "CRC-32" in error.message and "'a.txt'" in error.message


@pytest.mark.parametrize("size", [99, 101, 0])
def test_stored_entry_with_a_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    body = patch(make({"a.txt": b"a" * 100}, zipfile.ZIP_STORED), "size", size)
    error = rejected(save(tmp_path, body), "CORRUPT_ARCHIVE", max_ratio=1000)
    assert error.inflated == 0


def test_local_header_disagreeing_with_the_directory_is_refused(tmp_path: Path) -> None:
    # given the bomb's size lie told only in the central directory
    body = patch(zeros_zip(MiB), "size", 100, local=False)
    error = rejected(save(tmp_path, body), "CORRUPT_ARCHIVE")
    assert "local header" in error.message and error.inflated == 0


def test_local_name_differing_from_the_directory_is_refused(tmp_path: Path) -> None:
    # given a central name "safe.txt" over a local header named "../x.txt"
    body = raw_zip([stored(b"../x.txt", b"data")], [(0, b"safe.txt")])
    error = rejected(save(tmp_path, body), "CORRUPT_ARCHIVE")
    assert "another name" in error.message


def test_local_header_before_the_start_of_the_file_is_refused(tmp_path: Path) -> None:
    # given an end record placing the directory 5 bytes further than it is: zipfile
    # then shifts every local header offset 5 bytes back, the first one to -5
    body = bytearray(make({"a.txt": b"hello"}))
    end = body.rindex(b"PK\x05\x06")
    struct.pack_into("<L", body, end + 16, struct.unpack_from("<L", body, end + 16)[0] + 5)
    error = rejected(save(tmp_path, bytes(body)), "CORRUPT_ARCHIVE")
    assert "before the start" in error.message


# Streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        pytest.param(deflated(b"a", RANDOM, tail=b"junk"), "bytes after", id="trailing-bytes"),
        pytest.param(deflated(b"a", RANDOM, cut=1), "ends before", id="truncated"),
        pytest.param(Raw(b"a", b"\xff" * 64, 100, 0, method=8), "broken", id="garbage"),
    ],
)
def test_broken_deflate_streams_are_refused(tmp_path: Path, entry: Raw, words: str) -> None:
    error = rejected(save(tmp_path, raw_zip([entry])), "CORRUPT_ARCHIVE")
    assert words in error.message


def test_bzip2_data_after_the_stream_is_refused(tmp_path: Path) -> None:
    content = b"caption " * 1000
    data = bz2.compress(content) + bz2.compress(b"hidden")
    entry = Raw(b"a.txt", data, len(content), zlib.crc32(content), method=12)
    assert "bytes after" in rejected(save(tmp_path, raw_zip([entry])), "CORRUPT_ARCHIVE").message


def lzma_entry(flags: int, *, cut: int = 0, dictionary: int | None = None) -> Raw:
    """An LZMA entry as zipfile writes it, its stream cut by ``cut`` bytes (which drops
    the end-of-stream marker and leaves every byte decodable) and its flags replaced."""
    content = b"a cat on a mat " * 1000 + RANDOM
    data = bytearray(payload(make({"a.txt": content}, zipfile.ZIP_LZMA)))
    if dictionary is not None:
        struct.pack_into("<L", data, 5, dictionary)
    return Raw(
        b"a.txt", bytes(data[: len(data) - cut]), len(content), zlib.crc32(content), 14, flags
    )


def test_lzma_without_end_marker_passes_only_when_the_flag_says_so(tmp_path: Path) -> None:
    # given zipfile's LZMA (end marker, flag bit 1) and the same stream without its marker
    assert check_archive(save(tmp_path, raw_zip([lzma_entry(0x02)])), max_ratio=100).entries == 1
    # when the marker is gone and bit 1 is clear, the exact size and CRC suffice
    assert check_archive(save(tmp_path, raw_zip([lzma_entry(0, cut=5)])), max_ratio=100)
    # but a stream cut short while bit 1 promises a marker is damaged
    error = rejected(save(tmp_path, raw_zip([lzma_entry(0x02, cut=5)])), "CORRUPT_ARCHIVE")
    assert "ends before" in error.message


def test_lzma_dictionary_over_64_mib_is_unsupported(tmp_path: Path) -> None:
    body = raw_zip([lzma_entry(0x02, dictionary=1 << 30)])
    assert "dictionary" in rejected(save(tmp_path, body), "UNSUPPORTED_ARCHIVE").message


def test_memory_stays_bounded_while_inflating(tmp_path: Path) -> None:
    # given an honest 50 MiB of zeros
    path = save(tmp_path, zeros_zip(BOMB_ZEROS))
    # when it is checked under tracemalloc
    tracemalloc.start()
    try:
        report = check_archive(path, max_ratio=10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then all of it was inflated and never more than a few steps' worth held at once
    assert report.inflated_bytes == BOMB_ZEROS
    assert peak < 2 * MiB, peak


# Overlapping entries ------------------------------------------------------------------------


def test_two_directory_entries_sharing_their_data_are_refused(tmp_path: Path) -> None:
    # given two central headers pointing at the same local entry
    body = raw_zip([deflated(b"a.bin", bytes(1000))], [(0, b"a.bin"), (0, b"a.bin")])
    # when checked with a ratio the declared total stays under
    error = rejected(save(tmp_path, body), "ZIP_BOMB", max_ratio=1000)
    # then the overlap is found before anything is inflated
    assert "overlap" in error.message and error.inflated == 0


def test_entry_starting_inside_another_is_refused(tmp_path: Path) -> None:
    # given a stored entry whose data holds a whole second local entry, also listed
    inner = raw_zip([stored(b"b.txt", b"inner")])
    inner = inner[: inner.index(b"PK\x01\x02")]
    outer = stored(b"a.bin", b"xx" + inner)
    body = bytearray(raw_zip([outer, stored(b"b.txt", b"inner")]))
    _, central_b = headers(bytes(body))[1]
    struct.pack_into("<L", body, central_b + 42, 30 + 5 + 2)  # b's local header, inside a
    error = rejected(save(tmp_path, bytes(body)), "ZIP_BOMB")
    assert "overlap" in error.message


def test_entry_running_into_the_central_directory_is_refused(tmp_path: Path) -> None:
    body = make({"a.txt": b"hello" * 100})
    info = zipfile.ZipFile(io.BytesIO(body)).infolist()[0]
    body = patch(body, "compressed", info.compress_size + 10)
    error = rejected(save(tmp_path, body), "ZIP_BOMB")
    assert "central directory" in error.message


# Nested archives ----------------------------------------------------------------------------


def inner_zip() -> bytes:
    return make({"inner.txt": b"hello"})


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        pytest.param("zip", inner_zip(), id="zip"),
        pytest.param("gzip", gzip.compress(b"hello" * 100), id="gzip"),
        pytest.param("bzip2", bz2.compress(b"hello" * 100), id="bzip2"),
        pytest.param("bzip2", bz2.compress(b""), id="empty-bzip2"),
        pytest.param("xz", lzma.compress(b"hello"), id="xz"),
        pytest.param("zstd", b"\x28\xb5\x2f\xfd" + RANDOM, id="zstd"),
        pytest.param("7z", b"7z\xbc\xaf\x27\x1c" + RANDOM, id="7z"),
        pytest.param("rar", b"Rar!\x1a\x07\x01\x00" + RANDOM, id="rar"),
        pytest.param("lz4", b"\x04\x22\x4d\x18" + RANDOM, id="lz4"),
    ],
)
@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_nested_archives_are_refused(
    tmp_path: Path, kind: str, content: bytes, method: int
) -> None:
    # given a dataset with a caption and an archive inside
    body = make({"captions/a.txt": b"a cat", "more.data": content}, method)
    # then it is refused, naming the entry
    error = rejected(save(tmp_path, body), "NESTED_ARCHIVE", max_ratio=1000)
    assert f"'more.data' is itself a {kind} archive" in error.message


@pytest.mark.parametrize(
    "content",
    [b"PK is a caption", b"BZh9 is not bzip2 here", b"\x1f\x8b", b"PK\x03", b"7z archive", b"Rar!"],
)
def test_lookalikes_of_archives_pass(tmp_path: Path, content: bytes) -> None:
    body = make({"a.txt": content})
    assert check_archive(save(tmp_path, body), max_ratio=100).inflated_bytes == len(content)


# Encryption and methods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "central"),
    [(True, True), (False, True), (True, False)],
    ids=["both", "central", "local"],
)
def test_encrypted_entries_are_unsupported(tmp_path: Path, local: bool, central: bool) -> None:
    body = patch(make({"a.txt": b"secret" * 10}), "flags", 0x01, local=local, central=central)
    error = rejected(save(tmp_path, body), "UNSUPPORTED_ARCHIVE")
    assert "encrypted" in error.message and error.inflated == 0


@pytest.mark.parametrize("method", [9, 93, 99, 1], ids=["deflate64", "zstd", "aes", "shrink"])
def test_other_methods_are_unsupported(tmp_path: Path, method: int) -> None:
    body = patch(make({"a.txt": b"hello" * 10}), "method", method)
    error = rejected(save(tmp_path, body), "UNSUPPORTED_ARCHIVE")
    assert f"method {method}" in error.message


def test_method_differing_in_the_local_header_is_refused(tmp_path: Path) -> None:
    body = patch(make({"a.txt": b"hello" * 10}), "method", 0, central=False)
    rejected(save(tmp_path, body), "CORRUPT_ARCHIVE")


# Kept from the directory check ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"this is not a zip archive",
        b"PK\x03\x04" + b"\x00" * 100,
        struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 5, 5, 1000, 0, 0),
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        make({"a.txt": b"hello"})[:-10],
    ],
    ids=["empty", "text", "local-header-only", "end-record-pointing-nowhere", "png", "truncated"],
)
def test_non_zip_is_refused_as_415(tmp_path: Path, body: bytes) -> None:
    error = rejected(save(tmp_path, body), "NOT_A_ZIP")
    assert error.status == 415


def test_too_many_entries(tmp_path: Path) -> None:
    files = {f"f{n}": b"" for n in range(11)}
    assert check_archive(save(tmp_path, make(files)), max_ratio=100, max_entries=11).entries == 11
    error = rejected(save(tmp_path, make(files)), "TOO_MANY_ENTRIES", max_entries=10)
    assert "10 entries" in error.message


def test_entry_count_is_walked_not_trusted(tmp_path: Path) -> None:
    # given 11 central headers whose end record claims 1
    entries = [stored(f"f{n}".encode(), b"") for n in range(11)]
    body = raw_zip(entries, declared_entries=1)
    rejected(save(tmp_path, body), "TOO_MANY_ENTRIES", max_entries=10)


def null_byte_name() -> bytes:
    """An entry stored as ``ok.txt\\0/../../x`` (zipfile shows only ``ok.txt``)."""
    return make({"ok.txtX/../../x": b"payload"}).replace(b"ok.txtX", b"ok.txt\x00")


UNSAFE = {
    "dotdot": "../x",
    "absolute": "/etc/passwd",
    "drive-letter": "C:\\x",
    "dotdot-inside": "a/../../b",
    "backslash-dotdot": "..\\evil",
    "unc": "\\server\\share",
    "drive": "c:x",
}


@pytest.mark.parametrize(
    "body",
    [
        *(pytest.param(make({name: b"payload"}), id=label) for label, name in UNSAFE.items()),
        pytest.param(null_byte_name(), id="null-byte"),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, body: bytes) -> None:
    rejected(save(tmp_path, body), "UNSAFE_ARCHIVE")


@pytest.mark.parametrize(
    "name", ["images/..cat.txt", "a..b/c", "dir/", "spaces in name.txt", "ünïcode/ok.txt"]
)
def test_harmless_names_pass(tmp_path: Path, name: str) -> None:
    content = b"" if name.endswith("/") else b"payload"
    assert check_archive(save(tmp_path, make({name: content})), max_ratio=100).entries == 1


def test_every_code_has_its_status() -> None:
    assert refusal.STATUSES == {
        "NOT_A_ZIP": 415,
        "TOO_MANY_ENTRIES": 422,
        "UNSAFE_ARCHIVE": 422,
        "ZIP_BOMB": 422,
        "UNSUPPORTED_ARCHIVE": 422,
        "CORRUPT_ARCHIVE": 422,
        "NESTED_ARCHIVE": 422,
    }
    error = ArchiveRejected("no", code="ZIP_BOMB")
    assert (error.message, error.code, error.status, error.inflated) == ("no", "ZIP_BOMB", 422, 0)


@pytest.mark.parametrize(
    "method",
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "deflate", "bzip2", "lzma"],
)
def test_damaged_archives_are_only_ever_refused(tmp_path: Path, method: int) -> None:
    # given an archive of every shape (zip64 local header, directory, binary data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("a/cat.txt", b"a cat on a mat " * 50)
        archive.writestr("b.bin", RANDOM[:300])
        with archive.open("c.txt", "w", force_zip64=True) as entry:
            entry.write(b"zip64 " * 30)
        archive.writestr("d/", b"")
    original = buffer.getvalue()
    rng = random.Random(method)
    path = tmp_path / "damaged.zip"
    for _ in range(300):
        # when a few of its bytes are overwritten, deleted or inserted
        body = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(body))
            roll = rng.random()
            if roll < 0.6:
                body[at] = rng.randrange(256)
            elif roll < 0.8:
                body[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x01\0\0\0"])
            elif roll < 0.9:
                del body[at : at + rng.randint(1, 20)]
            else:
                body[at:at] = rng.randbytes(rng.randint(1, 20))
        path.write_bytes(body)
        # then the check answers a report or a refusal, never another exception
        try:
            report = check_archive(path, max_ratio=100)
        except ArchiveRejected as error:
            assert error.code in refusal.STATUSES
        else:
            assert report.inflated_bytes == report.uncompressed_bytes
