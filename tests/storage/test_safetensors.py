"""Streaming safetensors validation: real files written by the ``safetensors`` package,
fed in every chunking, and a table of malformed files, each with its stable code."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load, save

from storage.formats.safetensors.header import (
    ERROR_CODES,
    MAX_HEADER_SIZE,
    MAX_METADATA_ENTRIES,
    SafetensorsError,
)
from storage.formats.safetensors.keys import KeyMatcher
from storage.formats.safetensors.kohya import (
    Architecture,
    architecture_of,
    suggest_base_model,
    suggest_type,
)
from storage.formats.safetensors.parts import decode, encode, request, split, split_request
from storage.formats.safetensors.stream import SafetensorsInfo, SafetensorsStream
from storage.retention.header_firewall import TRAINING_DATA_KEYS

pytestmark = pytest.mark.backend_independent(reason="a file-format parser over bytes")

CHUNK_SIZES = [1, 7, 64 * 1024, None]  # None: the whole file in one chunk

TAG_FREQUENCY = json.dumps(
    {
        "10_zebra_secret_subject": {"zebrasecrettag": 40, "1girl": 38, "solo": 35},
        "5_okapi_private_style": {"okapiprivatetag": 12, "outdoors": 9},
    }
)
KOHYA_METADATA = {
    "ss_session_id": "1234567",
    "ss_training_started_at": "1700000000.0",
    "ss_output_name": "my_lora",
    "ss_network_module": "networks.lora",
    "ss_network_dim": "16",
    "ss_network_alpha": "8.0",
    "ss_base_model_version": "sdxl_base_v1-0",
    "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
    "ss_resolution": "(1024, 1024)",
    "ss_num_train_images": "52",
    "ss_tag_frequency": TAG_FREQUENCY,
    "ss_dataset_dirs": json.dumps(
        {
            "10_zebra_secret_subject": {"n_repeats": 10, "img_count": 40},
            "5_okapi_private_style": {"n_repeats": 5, "img_count": 12},
        }
    ),
    "ss_reg_dataset_dirs": json.dumps({"1_walrus_regularisation": {"n_repeats": 1}}),
    "ss_bucket_info": json.dumps({"buckets": {"0": {"resolution": [1024, 1024], "count": 52}}}),
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
    "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
    "modelspec.title": "My LoRA — éàü",
}
WITHHELD_SECRETS = [
    b"zebra_secret_subject",
    b"zebrasecrettag",
    b"okapi_private_style",
    b"okapiprivatetag",
    b"walrus_regularisation",
    b"n_repeats",
    b"buckets",
]


def lora_tensors() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    return {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rng.standard_normal(
            (16, 320), dtype=np.float32
        ).astype(np.float16),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rng.standard_normal(
            (320, 16), dtype=np.float32
        ).astype(np.float16),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(8.0, dtype=np.float16),
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": rng.standard_normal(
            (16, 77), dtype=np.float32
        ),
        "empty": np.zeros((0, 4), dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "steps": np.array([1, 2, 3], dtype=np.int64),
    }


def chunks(data: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield data
        return
    for start in range(0, len(data), size):
        yield data[start : start + size]


def stream(
    data: bytes,
    size: int | None = None,
    *,
    declared: int | None = None,
    withheld_keys: tuple[str, ...] = TRAINING_DATA_KEYS,
) -> SafetensorsInfo:
    s = SafetensorsStream(
        declared_size=len(data) if declared is None else declared, withheld_keys=withheld_keys
    )
    for chunk in chunks(data, size):
        s.feed(chunk)
    return s.finish()


def header_json(public_header: bytes) -> dict[str, Any]:
    length = int.from_bytes(public_header[:8], "little")
    assert len(public_header) == 8 + length
    result: dict[str, Any] = json.loads(public_header[8:])
    return result


def read_back(path: Path, data: bytes) -> tuple[dict[str, Any], dict[str, str] | None]:
    path.write_bytes(data)
    with safe_open(str(path), framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}, f.metadata()  # noqa: SIM118


def assert_same_tensors(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name])


# --- Valid files --------------------------------------------------------------------


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_kohya_file_hashes_and_public_header(size: int | None, tmp_path: Path) -> None:
    tensors = lora_tensors()
    original = save(tensors, metadata=KOHYA_METADATA)
    info = stream(original, size)

    data = original[info.data_offset :]
    public = info.public_header_bytes + data
    assert info.header_bytes == original[: info.data_offset]
    assert info.data_offset == 8 + int.from_bytes(original[:8], "little")
    assert info.data_size == len(data)
    assert info.sha256 == hashlib.sha256(original).hexdigest()
    assert info.public_sha256 == hashlib.sha256(public).hexdigest()
    assert info.auto_v3 == hashlib.sha256(data).hexdigest()
    assert info.auto_v2 == info.sha256[:10]
    assert info.public_auto_v2 == info.public_sha256[:10]
    assert info.public_sha256 != info.sha256
    assert info.tensor_count == len(tensors)
    assert info.metadata == KOHYA_METADATA
    assert info.withheld == (
        "ss_bucket_info",
        "ss_dataset_dirs",
        "ss_num_train_images",
        "ss_reg_dataset_dirs",
        "ss_tag_frequency",
    )

    # The public file is a valid safetensors file with the same tensors.
    assert_same_tensors(load(public), tensors)
    loaded, metadata = read_back(tmp_path / "public.safetensors", public)
    assert_same_tensors(loaded, tensors)
    kept = {k: v for k, v in KOHYA_METADATA.items() if k not in TRAINING_DATA_KEYS}
    assert metadata == kept
    assert len(info.public_header_bytes) % 8 == 0
    for secret in WITHHELD_SECRETS:
        assert secret in info.header_bytes
        assert secret not in info.public_header_bytes

    # AutoV3 is the same for the public file, which validates with nothing withheld.
    again = stream(public, size)
    assert again.auto_v3 == info.auto_v3
    assert again.sha256 == info.public_sha256
    assert again.withheld == ()
    assert again.public_header_bytes == info.public_header_bytes


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_nothing_withheld_public_file_is_the_original(size: int | None) -> None:
    metadata = {k: v for k, v in KOHYA_METADATA.items() if k not in TRAINING_DATA_KEYS}
    original = save(lora_tensors(), metadata=metadata)
    info = stream(original, size)
    assert info.withheld == ()
    assert info.public_header_bytes == info.header_bytes
    assert info.public_sha256 == info.sha256 == hashlib.sha256(original).hexdigest()

    # Same when the caller withholds nothing, even though training data is present.
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    info = stream(original, size, withheld_keys=())
    assert info.public_header_bytes == info.header_bytes
    assert info.public_sha256 == info.sha256


def test_no_metadata_and_no_tensors() -> None:
    original = save(lora_tensors())
    info = stream(original, 7)
    assert info.metadata == {}
    assert info.public_header_bytes == info.header_bytes
    assert architecture_of(info.metadata) == Architecture()

    empty = save({})
    info = stream(empty, 1)
    assert info.tensor_count == 0
    assert info.data_size == 0
    assert info.auto_v3 == hashlib.sha256(b"").hexdigest()


def test_metadata_left_empty_is_dropped(tmp_path: Path) -> None:
    secret = {"ss_tag_frequency": TAG_FREQUENCY, "ss_datasets": "[]"}
    original = save(lora_tensors(), metadata=secret)
    info = stream(original, 64 * 1024)
    assert info.withheld == ("ss_datasets", "ss_tag_frequency")
    assert "__metadata__" not in header_json(info.public_header_bytes)
    loaded, metadata = read_back(
        tmp_path / "p.safetensors", info.public_header_bytes + original[info.data_offset :]
    )
    assert metadata is None
    assert_same_tensors(loaded, lora_tensors())


def test_custom_withheld_keys() -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    info = stream(original, withheld_keys=("modelspec.title", "absent"))
    assert info.withheld == ("modelspec.title",)
    public_metadata = header_json(info.public_header_bytes)["__metadata__"]
    assert public_metadata == {k: v for k, v in KOHYA_METADATA.items() if k != "modelspec.title"}


def test_header_validated_before_any_data_byte() -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    length = int.from_bytes(original[:8], "little")
    s = SafetensorsStream(declared_size=len(original), withheld_keys=TRAINING_DATA_KEYS)
    s.feed(original[: 8 + length - 1])
    assert s.header is None
    s.feed(original[8 + length - 1 : 8 + length + 1])  # last header byte and first data byte
    assert s.header is not None
    assert s.header.metadata == KOHYA_METADATA
    assert s.received == 8 + length + 1
    s.feed(original[8 + length + 1 :])
    assert s.finish().sha256 == hashlib.sha256(original).hexdigest()
    assert s.finish() is s.finish()  # idempotent
    with pytest.raises(RuntimeError):
        s.feed(b"")


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_result(cuts: list[int]) -> None:
    original = save(
        {"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "b": np.ones(5, np.int16)},
        metadata={"ss_tag_frequency": TAG_FREQUENCY, "ss_network_dim": "4"},
    )
    bounds = sorted({0, len(original), *(c % (len(original) + 1) for c in cuts)})
    s = SafetensorsStream(declared_size=len(original), withheld_keys=TRAINING_DATA_KEYS)
    for start, end in zip(bounds, bounds[1:], strict=False):
        s.feed(original[start:end])
    info = s.finish()
    data = original[info.data_offset :]
    assert info.sha256 == hashlib.sha256(original).hexdigest()
    assert info.public_sha256 == hashlib.sha256(info.public_header_bytes + data).hexdigest()
    assert info.auto_v3 == hashlib.sha256(data).hexdigest()


def test_data_bytes_are_not_kept() -> None:
    original = save({"big": np.zeros(4 * 1024 * 1024, dtype=np.float32)})  # 16 MiB of data
    view = memoryview(original)
    s = SafetensorsStream(declared_size=len(original), withheld_keys=TRAINING_DATA_KEYS)
    tracemalloc.start()
    try:
        for start in range(0, len(original), 64 * 1024):
            s.feed(view[start : start + 64 * 1024])
        info = s.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    assert info.sha256 == hashlib.sha256(original).hexdigest()


# --- Stored headers -----------------------------------------------------------------


def text_of(header_bytes: bytes | bytearray) -> bytes:
    return bytes(header_bytes[8:])


def test_a_header_splits_into_what_is_stored() -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    info = stream(original)
    matcher = KeyMatcher(TRAINING_DATA_KEYS)
    parts = split(text_of(info.header_bytes), data_size=None, matcher=matcher)
    assert parts == info.parts
    assert parts.public_header == info.public_header_bytes
    assert parts.metadata(owner=True) == KOHYA_METADATA
    public = {k: v for k, v in KOHYA_METADATA.items() if k not in TRAINING_DATA_KEYS}
    assert parts.metadata(owner=False) == public
    assert json.loads(parts.public_metadata) == public
    in_header = json.loads(text_of(info.header_bytes))["__metadata__"]
    assert list(json.loads(parts.public_metadata)) == [k for k in in_header if k in public]
    assert parts.owner_metadata is not None
    for secret in WITHHELD_SECRETS:
        assert secret not in parts.public_metadata.encode()
        assert secret in parts.owner_metadata
    # Nothing withheld: the public header is the original, no owner's copy is kept.
    plain = split(text_of(info.header_bytes), data_size=None, matcher=KeyMatcher(()))
    assert plain.public_header is None and plain.owner_metadata is None
    assert json.loads(plain.public_metadata) == KOHYA_METADATA
    # The public header is itself a valid header with nothing left to withhold.
    again = split(text_of(info.public_header_bytes), data_size=None, matcher=matcher)
    assert again.withheld == () and again.public_header is None
    assert again.data_size == parts.data_size and again.tensor_count == parts.tensor_count


def test_the_split_crosses_a_process_boundary_intact() -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    text = text_of(stream(original).header_bytes)
    parts = split(text, data_size=None, matcher=KeyMatcher(TRAINING_DATA_KEYS))
    assert decode(encode(parts)) == parts
    asked = request(data_size=None, keys=TRAINING_DATA_KEYS) + text
    assert decode(split_request(asked)) == parts
    with pytest.raises(SafetensorsError) as error:
        decode(split_request(request(data_size=0, keys=()) + b'{"a":1}'))
    assert error.value.code == "BAD_HEADER"


# --- Malformed files ----------------------------------------------------------------


def raw(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A file with this header (an object to serialize, or the exact text) and data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def f32(begin: int, end: int, shape: list[Any] | None = None) -> dict[str, Any]:
    return {
        "dtype": "F32",
        "shape": [(end - begin) // 4] if shape is None else shape,
        "data_offsets": [begin, end],
    }


def torch_like_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": "storage 0"}, protocol=2))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", b"\0" * 64)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


VALID = raw({"a": f32(0, 8), "b": f32(8, 12)}, b"\0" * 12)

# (id, file bytes, declared size or None for len(file), expected code, raised by feed or finish:
# what compares the file with its declared size waits for the whole body, see below)
# fmt: off
MALFORMED: list[tuple[str, bytes, int | None, str, str]] = [
    ("truncated in the length", VALID[:5], None, "TRUNCATED", "finish"),
    ("truncated in the length, declared longer", VALID[:5], len(VALID), "TRUNCATED", "finish"),
    ("truncated in the header", VALID[:20], len(VALID), "TRUNCATED", "finish"),
    ("truncated in the data", VALID[:-3], len(VALID), "TRUNCATED", "finish"),
    ("a whole file, declared longer", VALID, len(VALID) + 5, "TRUNCATED", "finish"),
    ("bytes after the tensors, declared longer", VALID + b"\0", len(VALID) + 5, "TRUNCATED", "finish"),
    ("tensors end past the declared size", VALID[:-3], None, "TRUNCATED", "finish"),
    ("empty upload", b"", None, "TRUNCATED", "finish"),
    ("header length above the limit", (MAX_HEADER_SIZE + 1).to_bytes(8, "little"), 2 * MAX_HEADER_SIZE, "HEADER_TOO_LARGE", "feed"),
    ("header length above the declared size", raw(b"{}", length=1000), None, "HEADER_TOO_LARGE", "finish"),
    ("header length just above the declared size", VALID[:-13], None, "HEADER_TOO_LARGE", "finish"),
    ("more bytes than declared, the header not fitting", VALID, len(VALID) - 13, "TRAILING_DATA", "feed"),
    ("header length 0", raw(b"", length=0) + b"{}", None, "BAD_HEADER", "feed"),
    ("header length 1", raw(b"{"), None, "BAD_HEADER", "feed"),
    ("non-JSON header", raw(b"{this is not json}"), None, "BAD_HEADER", "feed"),
    ("header not UTF-8", raw(b'{"\xff\xfe": 1}'), None, "BAD_HEADER", "feed"),
    ("JSON array header", raw([f32(0, 4)], b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("JSON string header", raw(b'"hello"'), None, "BAD_HEADER", "feed"),
    ("junk after the JSON", raw(b'{"a":' + json.dumps(f32(0, 4)).encode() + b"}\0\0", b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("NaN in the header", raw(b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("unpaired surrogate", raw(b'{"__metadata__":{"k":"\\ud800"}}'), None, "BAD_HEADER", "feed"),
    ("deep nesting", raw(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), None, "BAD_HEADER", "feed"),
    ("tensor named twice, the last out of place", raw(b'{"a":' + json.dumps(f32(0, 4)).encode() + b',"a":' + json.dumps(f32(4, 8)).encode() + b"}", b"\0" * 8), None, "BAD_OFFSETS", "feed"),
    ("tensor named twice, the first unreadable", raw(b'{"a":{"dtype":"X"},"a":' + json.dumps(f32(0, 4)).encode() + b"}", b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("metadata key twice, the first not a string", raw(b'{"__metadata__":{"k":1,"k":"2"}}'), None, "BAD_METADATA", "feed"),
    ("leading byte order mark", raw("\ufeff".encode() + b'{}'), None, "BAD_HEADER", "feed"),
    ("padded with a form feed", raw(b'{}\x0c'), None, "BAD_HEADER", "feed"),
    ("huge dimension beside a zero", raw(b'{"a":{"dtype":"F32","shape":[99999999999999999999999,0],"data_offsets":[0,0]}}'), None, "BAD_TENSOR", "feed"),
    ("overflow before a zero", raw({"a": f32(0, 0, [2**63, 4, 0])}), None, "BAD_TENSOR", "feed"),
    ("minus zero dimension", raw(b'{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}'), None, "BAD_TENSOR", "feed"),
    ("sub-byte dtype off a byte boundary", raw({"a": {"dtype": "F4", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), None, "BAD_TENSOR", "feed"),
    ("number out of range in an ignored field", raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1e400}}', b"\0"), None, "BAD_HEADER", "feed"),
    ("unpaired surrogate in an ignored field", raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":["\\udc00"]}}', b"\0"), None, "BAD_HEADER", "feed"),
    ("ignored field nested past the limit", raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + b"[" * 126 + b"]" * 126 + b"}}", b"\0"), None, "BAD_HEADER", "feed"),
    ("too many metadata entries", raw({"__metadata__": {str(i): "" for i in range(MAX_METADATA_ENTRIES + 1)}}), None, "BAD_METADATA", "feed"),
    ("duplicate __metadata__", raw(b'{"__metadata__":{},"__metadata__":{}}'), None, "BAD_HEADER", "feed"),
    ("duplicate key in a tensor entry", raw(b'{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("tensor entry not an object", raw({"a": [0, 4]}, b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("tensor entry without shape", raw({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("dtype not a string", raw({"a": {**f32(0, 4), "dtype": 4}}, b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("shape not a list", raw({"a": {**f32(0, 4), "shape": 1}}, b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("three offsets", raw({"a": {**f32(0, 4), "data_offsets": [0, 4, 4]}}, b"\0" * 4), None, "BAD_HEADER", "feed"),
    ("unknown dtype", raw({"a": {**f32(0, 4), "dtype": "F128"}}, b"\0" * 4), None, "UNKNOWN_DTYPE", "feed"),
    ("lowercase dtype", raw({"a": {**f32(0, 4), "dtype": "f32"}}, b"\0" * 4), None, "UNKNOWN_DTYPE", "feed"),
    ("wrong dtype size", raw({"a": {**f32(0, 8), "dtype": "F16"}}, b"\0" * 8), None, "BAD_TENSOR", "feed"),
    ("shape too small for the span", raw({"a": f32(0, 8, [1])}, b"\0" * 8), None, "BAD_TENSOR", "feed"),
    ("scalar with a span of two elements", raw({"a": f32(0, 8, [])}, b"\0" * 8), None, "BAD_TENSOR", "feed"),
    ("huge shape", raw({"a": f32(0, 4, [2**62] * 1000)}, b"\0" * 4), None, "BAD_TENSOR", "feed"),
    ("negative dimension", raw({"a": f32(0, 4, [-1])}, b"\0" * 4), None, "BAD_TENSOR", "feed"),
    ("float dimension", raw({"a": f32(0, 4, [1.0])}, b"\0" * 4), None, "BAD_TENSOR", "feed"),
    ("bool dimension", raw({"a": f32(0, 4, [True])}, b"\0" * 4), None, "BAD_TENSOR", "feed"),
    ("negative offset", raw({"a": f32(-4, 0, [1])}, b""), None, "BAD_OFFSETS", "feed"),
    ("bool offset", raw({"a": {**f32(0, 1), "dtype": "U8", "data_offsets": [False, True]}}, b"\0"), None, "BAD_OFFSETS", "feed"),
    ("string offset", raw({"a": {**f32(0, 4), "data_offsets": ["0", 4]}}, b"\0" * 4), None, "BAD_OFFSETS", "feed"),
    ("end before begin", raw({"a": f32(4, 0, [0])}, b"\0" * 4), None, "BAD_OFFSETS", "feed"),
    ("overlapping offsets", raw({"a": f32(0, 8), "b": f32(4, 12)}, b"\0" * 12), None, "BAD_OFFSETS", "feed"),
    ("same span twice", raw({"a": f32(0, 4), "b": f32(0, 4)}, b"\0" * 4), None, "BAD_OFFSETS", "feed"),
    ("gap between tensors", raw({"a": f32(0, 4), "b": f32(8, 12)}, b"\0" * 12), None, "BAD_OFFSETS", "feed"),
    ("offsets not starting at 0", raw({"a": f32(4, 8)}, b"\0" * 8), None, "BAD_OFFSETS", "feed"),
    ("trailing bytes after the last tensor", raw({"a": f32(0, 8)}, b"\0" * 12), None, "TRAILING_DATA", "finish"),
    ("bytes beyond the declared size", VALID + b"\0", len(VALID), "TRAILING_DATA", "feed"),
    ("data but no tensors", raw({}, b"\0"), None, "TRAILING_DATA", "finish"),
    ("non-string metadata value", raw({"__metadata__": {"ss_network_dim": 16}}), None, "BAD_METADATA", "feed"),
    ("nested metadata value", raw({"__metadata__": {"ss_tag_frequency": {"a": {"b": 1}}}}), None, "BAD_METADATA", "feed"),
    ("metadata not an object", raw({"__metadata__": "ss_network_dim=16"}), None, "BAD_METADATA", "feed"),
    ("metadata a list", raw({"__metadata__": [["k", "v"]]}), None, "BAD_METADATA", "feed"),
    ("pickle", pickle.dumps({"a": 1}), None, "NOT_SAFETENSORS", "feed"),
    ("pickle protocol 2", pickle.dumps({"state_dict": {"w": [0.5] * 100}}, protocol=2), None, "NOT_SAFETENSORS", "feed"),
    ("pickle protocol 5", pickle.dumps(list(range(1000)), protocol=5), None, "NOT_SAFETENSORS", "feed"),
    ("pickle protocol 0", pickle.dumps({"a": 1}, protocol=0), None, "NOT_SAFETENSORS", "feed"),
    ("torch-like zip", torch_like_zip(), None, "NOT_SAFETENSORS", "feed"),
    ("text file", b"This is not a model, just some text.\n" * 10, None, "NOT_SAFETENSORS", "feed"),
    ("GGUF", b"GGUF\x03\x00\x00\x00" + b"\0" * 64, None, "NOT_SAFETENSORS", "feed"),
]
# fmt: on


@pytest.mark.parametrize("size", [1, 7, None])
@pytest.mark.parametrize(
    ("data", "declared", "code", "stage"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_files_are_refused(
    data: bytes, declared: int | None, code: str, stage: str, size: int | None
) -> None:
    assert code in ERROR_CODES
    s = SafetensorsStream(
        declared_size=len(data) if declared is None else declared, withheld_keys=TRAINING_DATA_KEYS
    )
    raised_by = "finish"
    with pytest.raises(SafetensorsError) as error:
        for chunk in chunks(data, size):
            raised_by = "feed"
            s.feed(chunk)
            raised_by = "finish"
        s.finish()
    assert error.value.code == code, error.value.message
    assert raised_by == stage
    assert str(error.value) == error.value.message
    # The failure sticks.
    with pytest.raises(SafetensorsError) as again:
        s.finish()
    assert again.value is error.value
    with pytest.raises(SafetensorsError):
        s.feed(b"x")


def test_valid_reference_case() -> None:
    assert stream(VALID, 1).tensor_count == 2


def test_header_too_large_is_refused_on_the_eighth_byte() -> None:
    s = SafetensorsStream(declared_size=10 * MAX_HEADER_SIZE, withheld_keys=TRAINING_DATA_KEYS)
    prefix = (MAX_HEADER_SIZE + 1).to_bytes(8, "little")
    for byte in prefix[:7]:
        s.feed(bytes([byte]))
    with pytest.raises(SafetensorsError) as error:
        s.feed(prefix[7:])
    assert error.value.code == "HEADER_TOO_LARGE"


def test_bad_header_is_refused_on_its_last_byte() -> None:
    data = raw({"a": f32(0, 4), "b": f32(8, 12)}, b"\0" * 12)
    length = int.from_bytes(data[:8], "little")
    s = SafetensorsStream(declared_size=len(data), withheld_keys=TRAINING_DATA_KEYS)
    s.feed(data[: 8 + length - 1])
    with pytest.raises(SafetensorsError) as error:
        s.feed(data[8 + length - 1 : 8 + length])
    assert error.value.code == "BAD_OFFSETS"


def test_smaller_header_limit() -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    s = SafetensorsStream(
        declared_size=len(original), withheld_keys=TRAINING_DATA_KEYS, max_header_size=1024
    )
    with pytest.raises(SafetensorsError) as error:
        s.feed(original)
    assert error.value.code == "HEADER_TOO_LARGE"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SafetensorsStream(declared_size=-1, withheld_keys=TRAINING_DATA_KEYS)
    with pytest.raises(TypeError):
        SafetensorsStream(declared_size=10, withheld_keys="ss_tag_frequency")


# --- Architecture and suggestions ---------------------------------------------------


def test_kohya_architecture() -> None:
    info = stream(save(lora_tensors(), metadata=KOHYA_METADATA), 7)
    arch = architecture_of(info.metadata)
    assert arch == Architecture(
        network_module="networks.lora",
        network_dim=16,
        network_alpha=8.0,
        base_model_version="sdxl_base_v1-0",
        modelspec_architecture="stable-diffusion-xl-v1-base/lora",
        modelspec_title="My LoRA — éàü",
        sd_model_name="sd_xl_base_1.0.safetensors",
        algo=None,
        dora_wd=None,
    )
    assert suggest_base_model(arch) == "SDXL_1_0"
    assert suggest_type(arch) == "LORA"


def test_lycoris_locon() -> None:
    metadata = {
        "ss_network_module": "lycoris.kohya",
        "ss_network_dim": "32",
        "ss_network_alpha": "16",
        "ss_network_args": json.dumps({"conv_dim": "8", "conv_alpha": "4", "algo": "LoCon"}),
        "ss_base_model_version": "sd_v1",
        "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
    }
    arch = architecture_of(stream(save(lora_tensors(), metadata=metadata)).metadata)
    assert arch.network_module == "lycoris.kohya"
    assert arch.algo == "locon"
    assert arch.network_dim == 32
    assert arch.network_alpha == 16.0
    assert arch.dora_wd is None
    assert suggest_type(arch) == "LOCON"
    assert suggest_base_model(arch) == "SD_1_5"
    # A LyCORIS LoHa, or kohya's own LoRA with algo set, is not a LoCon.
    assert (
        suggest_type(architecture_of({**metadata, "ss_network_args": '{"algo": "loha"}'})) == "LORA"
    )
    assert (
        suggest_type(architecture_of({**metadata, "ss_network_module": "networks.lora"})) == "LORA"
    )


def test_dora() -> None:
    metadata = {
        "ss_network_module": "lycoris.kohya",
        "ss_network_args": json.dumps({"algo": "locon", "dora_wd": "True", "conv_dim": "4"}),
        "ss_base_model_version": "flux1",
        "modelspec.architecture": "flux-1-schnell/lora",
    }
    arch = architecture_of(stream(save(lora_tensors(), metadata=metadata), 64 * 1024).metadata)
    assert arch.dora_wd is True
    assert suggest_type(arch) == "DORA"
    assert suggest_base_model(arch) == "FLUX_1_S"
    off = architecture_of({**metadata, "ss_network_args": '{"algo": "locon", "dora_wd": false}'})
    assert off.dora_wd is False
    assert suggest_type(off) == "LOCON"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, None),
        ({"ss_network_module": "networks.lora"}, None),
        ({"ss_base_model_version": "sd_v1"}, "SD_1_5"),
        ({"ss_base_model_version": "sd_v2_v"}, "SD_2_1"),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v/lora"}, "SD_2_1"),
        ({"modelspec.architecture": "stable-diffusion-v1/lora"}, "SD_1_5"),
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "SDXL_1_0"),
        ({"ss_base_model_version": "sd3"}, "SD_3_5"),
        ({"modelspec.architecture": "stable-diffusion-3-5-large/lora"}, "SD_3_5"),
        # modelspec decides when it names a family, even one outside the catalog (SD 3.0).
        (
            {"modelspec.architecture": "stable-diffusion-3-m/lora", "ss_base_model_version": "sd3"},
            "OTHER",
        ),
        (
            {
                "modelspec.architecture": "some-new-model/lora",
                "ss_base_model_version": "sdxl_base_v1-0",
            },
            "SDXL_1_0",
        ),
        ({"modelspec.architecture": "flux-1/lora", "ss_base_model_version": "flux1"}, "FLUX_1_D"),
        ({"modelspec.architecture": "flux-1/lora"}, "OTHER"),
        ({"ss_base_model_version": "flux1"}, "FLUX_1_D"),
        ({"modelspec.architecture": "flux-1-dev/lora"}, "FLUX_1_D"),
        (
            {"modelspec.architecture": "flux-1-schnell/lora", "ss_base_model_version": "flux1"},
            "FLUX_1_S",
        ),
        ({"modelspec.architecture": "Flux-1-Schnell/LoRA"}, "FLUX_1_S"),
        ({"modelspec.architecture": "chroma/lora"}, "OTHER"),
        ({"modelspec.architecture": "lumina-2/lora"}, "OTHER"),
        ({"ss_base_model_version": "flux2"}, "OTHER"),
        ({"ss_base_model_version": "something_new"}, "OTHER"),
        # Pony and Illustrious only when the metadata names them, and only on SDXL.
        (
            {
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_sd_model_name": "ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
            },
            "PONY",
        ),
        (
            {
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_sd_model_name": "Illustrious-XL-v0.1.safetensors",
            },
            "ILLUSTRIOUS",
        ),
        (
            {
                "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
                "modelspec.title": "Cute style [Pony]",
            },
            "PONY",
        ),
        (
            {
                "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
                "modelspec.title": "illustrious anime style",
            },
            "ILLUSTRIOUS",
        ),
        (
            {
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
                "modelspec.title": "pony character",
            },
            "SDXL_1_0",
        ),
        (
            {
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_sd_model_name": "pony_illustrious_merge",
            },
            "SDXL_1_0",
        ),
        ({"ss_base_model_version": "sd_v1", "ss_sd_model_name": "ponyDiffusion.ckpt"}, "SD_1_5"),
        ({"ss_sd_model_name": "ponyDiffusionV6XL.safetensors"}, None),
    ],
)
def test_suggest_base_model(metadata: dict[str, str], expected: str | None) -> None:
    assert suggest_base_model(architecture_of(metadata)) == expected


@pytest.mark.parametrize(
    "metadata",
    [
        {"ss_network_dim": "abc", "ss_network_alpha": "nan", "ss_network_args": "not json"},
        {"ss_network_dim": "-3", "ss_network_alpha": "inf", "ss_network_args": "[1, 2]"},
        {"ss_network_dim": "None", "ss_network_alpha": "None", "ss_network_args": "null"},
        {"ss_network_dim": "1e400", "ss_network_alpha": "1e999", "ss_network_args": "[" * 100_000},
        {
            "ss_network_dim": "9" * 5000,
            "ss_network_alpha": "1" * 5000,
            "ss_network_args": '{"algo": 3, "dora_wd": "maybe"}',
        },
        {
            "ss_network_dim": "0",
            "ss_network_alpha": "",
            "ss_network_args": '{"algo": ["locon"], "dora_wd": [true]}',
        },
        {
            "ss_network_module": "x" * 1000,
            "ss_base_model_version": "   ",
            "modelspec.architecture": "",
        },
    ],
)
def test_odd_values_become_none(metadata: dict[str, str]) -> None:
    arch = architecture_of(metadata)
    assert arch.network_dim is None
    assert arch.network_alpha is None
    assert arch.algo is None
    assert arch.dora_wd is None
    assert arch.network_module is None
    assert arch.base_model_version is None
    assert arch.modelspec_architecture is None
    assert suggest_type(arch) == "LORA"
    assert suggest_base_model(arch) is None


def test_numeric_values() -> None:
    arch = architecture_of({"ss_network_dim": " 64 ", "ss_network_alpha": "0.5"})
    assert (arch.network_dim, arch.network_alpha) == (64, 0.5)
    arch = architecture_of({"ss_network_dim": "8.0", "ss_network_alpha": "1e1"})
    assert (arch.network_dim, arch.network_alpha) == (8, 10.0)
    assert architecture_of({"ss_network_dim": "8.5"}).network_dim is None


# --- Keys as people read them -----------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "ss_tag_frequency",
        "SS_TAG_FREQUENCY",
        "Ss_Tag_Frequency",
        "ss_tag_frequency ",
        "  ss_tag_frequency",
        "ss_tag_frequency\u00a0",  # no-break space, trimmed after NFKC
        "ss_tag_frequency\u3000",  # ideographic space
        "ｓｓ＿ｔａｇ＿ｆｒｅｑｕｅｎｃｙ",  # fullwidth
        "ＳＳ_ＴＡＧ_ＦＲＥＱＵＥＮＣＹ",
        "ss_tag_frequency\u200b",  # zero-width space
        "ss_tag\u200dfrequency",  # zero-width joiner: invisible, withheld whatever it spells
        "\ufeffss_tag_frequency",  # byte order mark
        "ss_tag_frequency\t",
        "ss_tag_frequency\n",
        "ss_tag_frequency\u00ad",  # soft hyphen
        "ss_tag_frequency\u2060",  # word joiner
        "ss_tag_frequency\ufe0f",  # variation selector
        "ss_tag_frequency\U000e0041",  # tag character
        "\u202ess_tag_frequency",  # right-to-left override
        "unrelated\u200bkey",
        "ss_\u3164tag",  # Hangul filler
        "MODELSPEC.TITLE",  # a listed key, in another case
        "ﬁle_name_listed",  # a ligature NFKC unfolds into a listed key
    ],
)
def test_keys_are_matched_as_people_read_them(key: str) -> None:
    matcher = KeyMatcher([*TRAINING_DATA_KEYS, "modelspec.title", "file_name_listed"])
    assert matcher.withholds(key), repr(key)


@pytest.mark.parametrize(
    "key",
    [
        "ss_network_dim",
        "ss_tag frequency",
        "sstagfrequency",
        "ss_tag_frequencies",
        "ss-tag-frequency",
        "modelspec.architecture",
        "日本語のキー",
        "clé",
        "emoji_😀",
    ],
)
def test_other_keys_are_not_withheld(key: str) -> None:
    matcher = KeyMatcher([*TRAINING_DATA_KEYS, "modelspec.title"])
    assert not matcher.withholds(key), repr(key)


def test_a_matcher_takes_a_collection_of_keys() -> None:
    with pytest.raises(TypeError):
        KeyMatcher("ss_tag_frequency")


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_a_caller_may_keep_and_parse_the_header_itself(size: int | None) -> None:
    original = save(lora_tensors(), metadata=KOHYA_METADATA)
    expected = stream(original)
    s = SafetensorsStream(
        declared_size=len(original), withheld_keys=TRAINING_DATA_KEYS, buffer_header=False
    )
    kept = bytearray()
    for chunk in chunks(original, size):
        view = memoryview(chunk)
        if s.header is None and s.header_size is None:
            head = view[: max(0, 8 - s.received)]
            kept += head
            s.feed(head)
            view = view[len(head) :]
        if s.header is None and s.header_size is not None:
            kept += view[: max(0, 8 + s.header_size - s.received)]
        s.feed(view)
        if s.awaiting_header:
            # the stream kept nothing of the header: the caller has it all
            assert bytes(kept) == original[: expected.data_offset]
            with pytest.raises(RuntimeError):
                s.feed(b"")
            parts = split(bytes(kept[8:]), data_size=None, matcher=s.matcher)
            s.accept(parts)
            s.forget_header()
    info = s.finish()
    assert (info.sha256, info.public_sha256, info.auto_v3) == (
        expected.sha256,
        expected.public_sha256,
        expected.auto_v3,
    )
    assert info.withheld == expected.withheld and info.data_offset == expected.data_offset
    assert info.header_bytes == b""


def test_a_header_an_earlier_release_stored_splits_without_todays_tensor_rules() -> None:
    # given a header an earlier lorashelf accepted and today's rules refuse
    text = (
        b'{"__metadata__":{"ss_tag_frequency":"zq_secret","ss_network_dim":"4"},'
        b'"w":{"dtype":"F32","shape":[99999999999999999999999,0],"data_offsets":[0,0]}}'
    )
    matcher = KeyMatcher(TRAINING_DATA_KEYS)
    with pytest.raises(SafetensorsError) as error:
        split(text, data_size=0, matcher=matcher)
    assert error.value.code == "BAD_TENSOR"
    # then it still splits for storage (its JSON and metadata read as today), so a key
    # listed since can be withheld from it
    parts = split(text, data_size=None, matcher=matcher, check_tensors=False)
    assert parts.withheld == ("ss_tag_frequency",) and parts.tensor_count == 1
    assert parts.public_header is not None and b"zq_secret" not in parts.public_header
    assert b"99999999999999999999999" in parts.public_header  # its tensors as they were
    assert (
        decode(
            split_request(
                request(data_size=None, keys=TRAINING_DATA_KEYS, check_tensors=False) + text
            )
        )
        == parts
    )
