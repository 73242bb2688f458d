"""Streaming validation of uploaded safetensors files, their hashes and public header.

The format
==========

A safetensors file is three consecutive parts::

    [ 8 bytes: N, unsigned little-endian ][ N bytes: JSON header ][ data section ]

The header is UTF-8 JSON, possibly padded at the end with spaces. It is an object
whose keys are tensor names, except the optional ``__metadata__`` key, which maps
strings to strings (training tools such as kohya's sd-scripts keep their settings,
and the tag counts and folder names of the training data, there). Each tensor entry
is ``{"dtype": str, "shape": [int, ...], "data_offsets": [begin, end]}``, with the
offsets counted from the start of the data section.

Rules enforced
==============

Every failure raises :class:`SafetensorsError` with one of these stable codes:

``NOT_SAFETENSORS``
    The bytes are some other format: a pickle (``0x80`` then a protocol byte, as in a
    PyTorch ``.ckpt``), a zip (``PK``, as in a PyTorch ``.pt``), gzip or GGUF, or the
    first 8 bytes are not a plausible length at all (2**40 or more). Only reported when
    the prefix is otherwise unusable: a real header length may well start with 0x80.
``HEADER_TOO_LARGE``
    N is above :data:`MAX_HEADER_SIZE` (100 MiB), or ``8 + N`` is above the declared
    file size. Checked as soon as the first 8 bytes arrive.
``BAD_HEADER``
    N is below 2; the header is not UTF-8, does not start with ``{``, is not JSON (or
    holds NaN/Infinity, unpaired surrogates, absurd nesting), is not an object, repeats
    a key in any object, or a tensor entry is not an object with exactly the keys
    ``dtype`` (a string), ``shape`` (a list) and ``data_offsets`` (a list of two).
``UNKNOWN_DTYPE``
    The dtype is not in :data:`DTYPE_SIZES`. The sub-byte types ``F4``, ``F6_E2M3``
    and ``F6_E3M2`` are refused here: no LoRA uses them and their bit packing would be
    the only place where a tensor's size is not a whole number of elements' bytes.
``BAD_TENSOR``
    A shape dimension is not a non-negative integer (booleans are not integers), or
    ``product(shape) * dtype size`` differs from ``end - begin`` (an empty shape is a
    scalar: one element).
``BAD_OFFSETS``
    An offset is not a non-negative integer, ``begin > end``, or the spans, sorted by
    ``begin``, do not start at 0 and follow each other with no gap and no overlap.
    Zero-length tensors (``begin == end``) are fine wherever the tiling allows.
``BAD_METADATA``
    ``__metadata__`` is not an object of strings to strings.
``TRUNCATED``
    The stream ended before the declared size, or the tensors end past the data
    section implied by the declared size (``declared_size - 8 - N``).
``TRAILING_DATA``
    More bytes arrived than declared, or the tensors end before the data section
    implied by the declared size (bytes no tensor covers).

Checks happen as early as the bytes allow: the prefix rules on the 8th byte, the
``{`` on the 9th, everything about the header once its last byte arrives and before
any data byte is accepted; afterwards only the count of data bytes is left to check,
by :meth:`SafetensorsStream.finish`.

The reference implementation (the ``safetensors`` package) is slightly more lenient
in places: it accepts leading whitespace, a ``null`` metadata, extra keys in a tensor
entry and the sub-byte dtypes. Files written by real tools have none of these.

Public header
=============

The metadata keys named in ``withheld_keys`` (by default :data:`TRAINING_DATA_KEYS`,
what kohya records about the training images) are removed from the header served to
others. When none of them is present the public header *is* the original one, byte for
byte, so the public file equals the uploaded file. Otherwise the header is serialized
again: compact JSON, raw UTF-8, keys in their original order, padded with spaces so
that ``8 + N`` is a multiple of 8 (as the ``safetensors`` package writes it); a
``__metadata__`` left empty is dropped altogether. Since nothing of the original
header text is reused (padding included), no withheld value can survive in it. The
data section is never changed, so tensor offsets stay valid.

Hashes
======

``sha256`` is the hash of the whole uploaded file, ``public_sha256`` the hash of the
public file (public header, then the same data), ``auto_v3`` the hash of the data
section alone (the same for both), and AutoV2 is the first 10 hex digits of a file
hash. All are lowercase hex.

Memory
======

The only buffering is the header: up to ``8 + N`` bytes, held until it is complete,
then copied once into an immutable ``bytes``, decoded and parsed (so the peak is a
few times N: the Python objects of a parsed header take more room than its text;
callers expecting only LoRA files, whose headers are kilobytes to a few megabytes, may
pass a smaller ``max_header_size``). Data bytes are hashed and dropped at once,
whatever the chunk sizes: one chunk may hold the end of the header and the start of
the data, and is split where the header ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NoReturn, get_args

__all__ = [
    "DTYPE_SIZES",
    "ERROR_CODES",
    "MAX_HEADER_SIZE",
    "TRAINING_DATA_KEYS",
    "Architecture",
    "BaseModel",
    "ErrorCode",
    "ModelType",
    "SafetensorsError",
    "SafetensorsHeader",
    "SafetensorsInfo",
    "SafetensorsStream",
    "architecture_of",
    "metadata_of",
    "parse_header",
    "public_header_of",
    "suggest_base_model",
    "suggest_type",
]

MAX_HEADER_SIZE = 100 * 1024 * 1024
"""Largest accepted header length N (the JSON, without the 8-byte prefix)."""

MIN_HEADER_SIZE = 2
"""Smallest possible header: ``{}``."""

PREFIX_SIZE = 8

TRAINING_DATA_KEYS: tuple[str, ...] = (
    "ss_tag_frequency",
    "ss_dataset_dirs",
    "ss_reg_dataset_dirs",
    "ss_datasets",
    "ss_bucket_info",
)
"""Metadata keys withheld from the public header by default: what kohya's sd-scripts
records about the training images (tags and their counts, folder names, buckets)."""

DTYPE_SIZES: Mapping[str, int] = MappingProxyType(
    {
        "BOOL": 1,
        "U8": 1,
        "I8": 1,
        "F8_E5M2": 1,
        "F8_E4M3": 1,
        "F8_E8M0": 1,
        "I16": 2,
        "U16": 2,
        "F16": 2,
        "BF16": 2,
        "I32": 4,
        "U32": 4,
        "F32": 4,
        "I64": 8,
        "U64": 8,
        "F64": 8,
    }
)
"""Accepted dtypes and the size of one element in bytes."""

METADATA_KEY = "__metadata__"
TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})

ErrorCode = Literal[
    "NOT_SAFETENSORS",
    "HEADER_TOO_LARGE",
    "BAD_HEADER",
    "UNKNOWN_DTYPE",
    "BAD_TENSOR",
    "BAD_OFFSETS",
    "BAD_METADATA",
    "TRUNCATED",
    "TRAILING_DATA",
]
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)

# A prefix at or above this is not a length anyone meant: it is text or another format.
IMPLAUSIBLE_LENGTH = 1 << 40


class SafetensorsError(ValueError):
    """The bytes are not an acceptable safetensors file; ``code`` says why (see above)."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code: ErrorCode = code

    def __repr__(self) -> str:
        return f"SafetensorsError({self.message!r}, {self.code!r})"


def _fail(code: ErrorCode, message: str) -> NoReturn:
    raise SafetensorsError(message, code)


# --- Architecture -------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """What the metadata says about how the file was trained; ``None`` when it says
    nothing usable. Built by :func:`architecture_of`, which never raises."""

    network_module: str | None = None
    """``ss_network_module``, e.g. ``networks.lora`` or ``lycoris.kohya``."""
    network_dim: int | None = None
    """``ss_network_dim``: the rank, a positive integer."""
    network_alpha: float | None = None
    """``ss_network_alpha``, a finite number."""
    base_model_version: str | None = None
    """``ss_base_model_version``, e.g. ``sd_v1``, ``sdxl_base_v1-0``, ``flux1``."""
    modelspec_architecture: str | None = None
    """``modelspec.architecture``, e.g. ``stable-diffusion-xl-v1-base/lora``."""
    modelspec_title: str | None = None
    """``modelspec.title``: the title of this model (not of its base)."""
    sd_model_name: str | None = None
    """``ss_sd_model_name``: the file name or id of the base checkpoint."""
    algo: str | None = None
    """``algo`` of ``ss_network_args`` (LyCORIS: ``locon``, ``lora``, ``loha``...),
    lowercased."""
    dora_wd: bool | None = None
    """``dora_wd`` of ``ss_network_args``: whether DoRA weight decomposition was on."""


# Longer values are not what these fields hold: treat them as garbage.
_MAX_FIELD = 256
_INT = re.compile(r"[+]?\d{1,9}(?:\.0*)?")
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_FIELD or value.lower() in ("none", "null"):
        return None
    return value


def _positive_int(value: object) -> int | None:
    text = _text(value)
    if text is None or not _INT.fullmatch(text):
        return None
    number = int(text.split(".")[0])
    return number if number > 0 else None


def _finite_float(value: object) -> float | None:
    text = _text(value)
    if text is None or not _FLOAT.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _network_args(value: object) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        args = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return args if isinstance(args, dict) else {}


def architecture_of(metadata: Mapping[str, str]) -> Architecture:
    """Read the training settings from a file's metadata; odd values become ``None``."""
    args = _network_args(metadata.get("ss_network_args"))
    algo = _text(args.get("algo"))
    return Architecture(
        network_module=_text(metadata.get("ss_network_module")),
        network_dim=_positive_int(metadata.get("ss_network_dim")),
        network_alpha=_finite_float(metadata.get("ss_network_alpha")),
        base_model_version=_text(metadata.get("ss_base_model_version")),
        modelspec_architecture=_text(metadata.get("modelspec.architecture")),
        modelspec_title=_text(metadata.get("modelspec.title")),
        sd_model_name=_text(metadata.get("ss_sd_model_name")),
        algo=algo.lower() if algo else None,
        dora_wd=_flag(args.get("dora_wd")),
    )


BaseModel = Literal[
    "SD_1_5",
    "SD_2_1",
    "SDXL_1_0",
    "PONY",
    "ILLUSTRIOUS",
    "SD_3_5",
    "FLUX_1_D",
    "FLUX_1_S",
    "OTHER",
]
ModelType = Literal["LORA", "LOCON", "DORA"]


def _base_from_modelspec(architecture: str) -> BaseModel | None:
    """The family a ``modelspec.architecture`` names; ``OTHER`` for a known family outside
    the catalog, ``None`` for one not recognized (or a FLUX.1 of unknown kind)."""
    # "stable-diffusion-xl-v1-base/lora" -> "stable-diffusion-xl-v1-base"
    arch = architecture.lower().split("/", 1)[0].strip()
    if arch.startswith("stable-diffusion-v1"):
        return "SD_1_5"
    if arch.startswith("stable-diffusion-v2"):
        return "SD_2_1"
    if arch.startswith("stable-diffusion-xl"):
        return "SDXL_1_0"
    if arch.startswith(("stable-diffusion-3-5", "stable-diffusion-3.5", "stable-diffusion-v3-5")):
        return "SD_3_5"
    if arch == "flux-1-dev":
        return "FLUX_1_D"
    if arch == "flux-1-schnell":
        return "FLUX_1_S"
    if arch.startswith(("stable-diffusion-3", "chroma", "lumina", "flux-2")):
        return "OTHER"  # SD 3.0, Chroma, Lumina, FLUX.2: not in the catalog
    return None


def _base_from_version(version: str) -> BaseModel | None:
    """The family an ``ss_base_model_version`` names, ``None`` when not recognized."""
    version = version.lower()
    if version.startswith("sd_v1"):
        return "SD_1_5"
    if version.startswith("sd_v2"):
        return "SD_2_1"
    if version.startswith("sdxl"):
        return "SDXL_1_0"
    if version.startswith("sd3"):
        return "SD_3_5"  # SD 3.0 LoRAs are rare; modelspec, when present, tells them apart
    if version == "flux1":
        return "FLUX_1_D"  # nearly all FLUX.1 LoRAs; modelspec, when present, says schnell
    return None


def _sdxl_variant(arch: Architecture) -> BaseModel:
    """Pony or Illustrious when the metadata names one of them, else plain SDXL.

    The base checkpoint's name decides when it is recorded; the title (the name of the
    LoRA itself, a weaker hint) only when it is not. A name mentioning both is plain SDXL.
    """
    source = arch.sd_model_name if arch.sd_model_name is not None else arch.modelspec_title
    lowered = (source or "").lower()
    pony, illustrious = "pony" in lowered, "illustrious" in lowered
    if pony and not illustrious:
        return "PONY"
    if illustrious and not pony:
        return "ILLUSTRIOUS"
    return "SDXL_1_0"


def suggest_base_model(arch: Architecture) -> BaseModel | None:
    """The base model the file was most likely trained on, or ``None`` if unknown.

    ``modelspec.architecture`` decides when it names a family it knows (a family outside
    the catalog, such as SD 3.0 or Chroma, gives ``OTHER``), else
    ``ss_base_model_version``; either being present but not recognized gives ``OTHER``.
    Only within SDXL are Pony and Illustrious told apart, by name (see ``_sdxl_variant``).
    """
    family = None
    if arch.modelspec_architecture is not None:
        family = _base_from_modelspec(arch.modelspec_architecture)
    if family is None and arch.base_model_version is not None:
        family = _base_from_version(arch.base_model_version)
    if family == "SDXL_1_0":
        return _sdxl_variant(arch)
    if family is None and (arch.modelspec_architecture or arch.base_model_version):
        return "OTHER"
    return family


def suggest_type(arch: Architecture) -> ModelType:
    """``DORA`` when DoRA weight decomposition was on, ``LOCON`` for a LyCORIS network
    with algo ``locon``, else ``LORA``."""
    if arch.dora_wd is True:
        return "DORA"
    module = (arch.network_module or "").lower()
    if module.startswith("lycoris") and arch.algo == "locon":
        return "LOCON"
    return "LORA"


# --- Header parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header and what it says."""

    header_bytes: bytes
    """The 8-byte prefix and the header exactly as uploaded."""
    public_header_bytes: bytes
    """Prefix and header without the withheld metadata keys (see module docstring)."""
    data_size: int
    """Length of the data section, in bytes."""
    metadata: dict[str, str]
    """The full original ``__metadata__`` (empty when there is none)."""
    withheld: tuple[str, ...]
    """The withheld keys that were present, sorted."""
    tensor_count: int
    architecture: Architecture

    @property
    def data_offset(self) -> int:
        """Where the data section starts in the original file: ``8 + N``."""
        return len(self.header_bytes)


@dataclass(frozen=True)
class SafetensorsInfo(SafetensorsHeader):
    """A complete, validated upload: its header and its hashes (lowercase hex)."""

    sha256: str
    """Hash of the whole original file."""
    public_sha256: str
    """Hash of the public file: public header then the same data section."""
    auto_v3: str
    """Hash of the data section alone, the same for the original and the public file."""

    @property
    def auto_v2(self) -> str:
        return self.sha256[:10]

    @property
    def public_auto_v2(self) -> str:
        return self.public_sha256[:10]


def _foreign_format(prefix: bytes) -> str | None:
    """Name of the format the first bytes belong to, when they are a known other one."""
    if prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        return "a Python pickle (as in a PyTorch .ckpt or .pt file)"
    if prefix[:2] == b"PK" and prefix[2:4] in (b"\x03\x04", b"\x05\x06", b"\x07\x08"):
        return "a zip archive (as in a PyTorch .pt or .pth file)"
    if prefix[:2] == b"\x1f\x8b":
        return "gzip-compressed"
    if prefix[:4] == b"GGUF":
        return "a GGUF file"
    return None


def _header_length(prefix: bytes, *, max_header_size: int, available: int | None) -> int:
    """N from the 8-byte prefix; ``available`` is how many bytes may follow it."""
    length = int.from_bytes(prefix, "little")
    problem: tuple[ErrorCode, str] | None = None
    if length > max_header_size:
        problem = ("HEADER_TOO_LARGE", f"header length {length} is above {max_header_size}")
    elif available is not None and length > available:
        problem = (
            "HEADER_TOO_LARGE",
            f"header length {length} is above the {available} bytes after the length prefix",
        )
    elif length < MIN_HEADER_SIZE:
        problem = ("BAD_HEADER", f"header length {length} is too small for a JSON object")
    if problem is None:
        return length
    foreign = _foreign_format(prefix)
    if foreign is not None:
        _fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
    if length >= IMPLAUSIBLE_LENGTH:
        _fail("NOT_SAFETENSORS", "not a safetensors file: it does not start with a header length")
    _fail(*problem)


def _check_header_start(prefix: bytes, first: int) -> None:
    if first != ord("{"):
        foreign = _foreign_format(prefix)
        if foreign is not None:
            _fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
        _fail("BAD_HEADER", "the header does not start with '{'")


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _fail("BAD_HEADER", "the header holds an unpaired surrogate escape")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _fail("BAD_HEADER", f"duplicate key {key[:100]!r} in the header")
        _check_string(key)
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    _fail("BAD_HEADER", f"the header holds {name}, which is not JSON")


def _decode(header_bytes: bytes) -> dict[str, Any]:
    """The JSON object after the prefix (decoded without copying the bytes first)."""
    try:
        text = str(memoryview(header_bytes)[PREFIX_SIZE:], "utf-8")
    except UnicodeDecodeError:
        _fail("BAD_HEADER", "the header is not UTF-8")
    try:
        document = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        if isinstance(error, SafetensorsError):
            raise
        _fail("BAD_HEADER", "the header is not JSON")
    if not isinstance(document, dict):
        _fail("BAD_HEADER", "the header is not a JSON object")
    return document


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        _fail("BAD_METADATA", "__metadata__ is not an object")
    for key, item in value.items():
        if not isinstance(item, str):
            _fail("BAD_METADATA", f"__metadata__ value of {key[:100]!r} is not a string")
        _check_string(item)
    return value


def _span(name: str, entry: object) -> tuple[int, int]:
    """Validate one tensor entry and return its ``(begin, end)``."""
    label = repr(name[:100])
    if not isinstance(entry, dict) or entry.keys() != TENSOR_KEYS:
        _fail("BAD_HEADER", f"tensor {label} is not an object of dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        _fail("BAD_HEADER", f"tensor {label} has a dtype that is not a string")
    if not isinstance(shape, list):
        _fail("BAD_HEADER", f"tensor {label} has a shape that is not a list")
    if not isinstance(offsets, list) or len(offsets) != 2:
        _fail("BAD_HEADER", f"tensor {label} has data_offsets that are not a pair")
    size = DTYPE_SIZES.get(dtype)
    if size is None:
        _fail("UNKNOWN_DTYPE", f"tensor {label} has an unknown dtype {dtype[:20]!r}")
    if not all(_is_count(dim) for dim in shape):
        _fail("BAD_TENSOR", f"tensor {label} has a dimension that is not a non-negative integer")
    begin, end = offsets
    if not (_is_count(begin) and _is_count(end)):
        _fail("BAD_OFFSETS", f"tensor {label} has an offset that is not a non-negative integer")
    if begin > end:
        _fail("BAD_OFFSETS", f"tensor {label} ends before it begins")
    span = end - begin
    # Stop multiplying once past the span: the product of a long shape can be enormous.
    elements = 0 if 0 in shape else 1
    for dim in shape:
        if elements * size > span:
            break
        elements *= dim
    if elements * size != span:
        _fail("BAD_TENSOR", f"tensor {label}: its shape and dtype do not fill its {span} bytes")
    return begin, end


def _tiled_end(spans: list[tuple[int, int]]) -> int:
    """The end of the spans, checked to tile ``[0, end)`` exactly."""
    position = 0
    for begin, end in sorted(spans):
        if begin < position:
            _fail("BAD_OFFSETS", f"tensors overlap at byte {begin} of the data section")
        if begin > position:
            _fail("BAD_OFFSETS", f"no tensor covers bytes {position} to {begin} of the data")
        position = end
    return position


def _public_header(
    header_bytes: bytes, document: dict[str, Any], withheld: Collection[str]
) -> bytes:
    if not withheld:
        return header_bytes
    public: dict[str, Any] = {}
    for key, value in document.items():
        if key == METADATA_KEY:
            value = {k: v for k, v in value.items() if k not in withheld}
            if not value:
                continue
        public[key] = value
    text = json.dumps(public, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(PREFIX_SIZE, "little") + text


def _parse(
    header_bytes: bytes, *, data_size: int | None, withheld_keys: Collection[str]
) -> SafetensorsHeader:
    """Validate a complete prefix+header; ``data_size`` is the expected data length."""
    document = _decode(header_bytes)
    metadata: dict[str, str] = {}
    spans = []
    for key, value in document.items():
        if key == METADATA_KEY:
            metadata = _metadata(value)
        else:
            spans.append(_span(key, value))
    end = _tiled_end(spans)
    if data_size is not None and end > data_size:
        _fail("TRUNCATED", f"the tensors need {end} data bytes, the file has {data_size}")
    if data_size is not None and end < data_size:
        _fail("TRAILING_DATA", f"the tensors cover {end} data bytes, the file has {data_size}")
    withheld = tuple(sorted(key for key in metadata if key in withheld_keys))
    return SafetensorsHeader(
        header_bytes=header_bytes,
        public_header_bytes=_public_header(header_bytes, document, withheld),
        data_size=end,
        metadata=metadata,
        withheld=withheld,
        tensor_count=len(spans),
        architecture=architecture_of(metadata),
    )


def _keys(withheld_keys: Collection[str]) -> frozenset[str]:
    if isinstance(withheld_keys, str):
        raise TypeError("withheld_keys is a collection of keys, not one string")
    return frozenset(withheld_keys)


def parse_header(
    header_bytes: bytes,
    *,
    withheld_keys: Collection[str] = TRAINING_DATA_KEYS,
    max_header_size: int = MAX_HEADER_SIZE,
) -> SafetensorsHeader:
    """Validate a stored header (8-byte prefix then exactly N header bytes, no data).

    The data section is not needed: its size is where the tensors end. Raises
    :class:`SafetensorsError` like the stream would (``TRUNCATED`` when fewer than
    ``8 + N`` bytes are given, ``TRAILING_DATA`` when more).
    """
    keys = _keys(withheld_keys)
    if len(header_bytes) < PREFIX_SIZE:
        _fail("TRUNCATED", "the header ends inside its length prefix")
    prefix = header_bytes[:PREFIX_SIZE]
    length = _header_length(prefix, max_header_size=max_header_size, available=None)
    if len(header_bytes) < PREFIX_SIZE + length:
        _fail("TRUNCATED", f"the header is {length} bytes, only {len(header_bytes) - 8} given")
    if len(header_bytes) > PREFIX_SIZE + length:
        _fail("TRAILING_DATA", f"{len(header_bytes) - 8 - length} bytes follow the header")
    _check_header_start(prefix, header_bytes[PREFIX_SIZE])
    return _parse(bytes(header_bytes), data_size=None, withheld_keys=keys)


def metadata_of(header_bytes: bytes) -> dict[str, str]:
    """The full ``__metadata__`` of a stored header."""
    return parse_header(header_bytes, withheld_keys=()).metadata


def public_header_of(
    header_bytes: bytes, withheld_keys: Collection[str] = TRAINING_DATA_KEYS
) -> bytes:
    """The public prefix+header of a stored header: what precedes the data for others."""
    return parse_header(header_bytes, withheld_keys=withheld_keys).public_header_bytes


# --- Streaming ----------------------------------------------------------------------


class SafetensorsStream:
    """Validates and hashes an upload chunk by chunk, holding only its header.

    ``declared_size`` is the size of the whole file announced before its bytes (the
    Content-Length of the upload). Feed every chunk to :meth:`feed`, then call
    :meth:`finish`. The first error is raised as early as possible and raised again
    by any later call.
    """

    def __init__(
        self,
        *,
        declared_size: int,
        withheld_keys: Collection[str] = TRAINING_DATA_KEYS,
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        if isinstance(declared_size, bool) or declared_size < 0:
            raise ValueError("declared_size must be a non-negative integer")
        self.declared_size = declared_size
        self._withheld_keys = _keys(withheld_keys)
        self._max_header_size = max_header_size
        self._received = 0
        self._buffer = bytearray()  # prefix and header while they arrive, then nothing
        self._length = 0  # N, once the prefix is complete
        self._header: SafetensorsHeader | None = None
        self._data_received = 0
        self._sha256 = hashlib.sha256()
        self._public_sha256: hashlib._Hash | None = None  # None: the public file is the original
        self._data_sha256 = hashlib.sha256()
        self._error: SafetensorsError | None = None
        self._info: SafetensorsInfo | None = None

    @property
    def header_done(self) -> bool:
        """True once the whole header has arrived and passed validation."""
        return self._header is not None

    @property
    def header(self) -> SafetensorsHeader | None:
        """The validated header, as soon as it has arrived (before the data)."""
        return self._header

    @property
    def received(self) -> int:
        """Bytes accepted so far."""
        return self._received

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the file (any number, even none); raise
        :class:`SafetensorsError` as soon as they make the file invalid."""
        if self._error is not None:
            raise self._error
        if self._info is not None:
            raise RuntimeError("feed() after finish()")
        view = memoryview(chunk)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._feed(view)
        except SafetensorsError as error:
            self._error = error
            raise

    def finish(self) -> SafetensorsInfo:
        """Check that the whole declared file arrived and return what it is."""
        if self._error is not None:
            raise self._error
        if self._info is None:
            try:
                self._info = self._finish()
            except SafetensorsError as error:
                self._error = error
                raise
        return self._info

    def _feed(self, view: memoryview) -> None:
        allowed = min(len(view), self.declared_size - self._received)
        excess = len(view) - allowed
        view = view[:allowed]
        position = 0
        buffer = self._buffer
        if self._header is None and len(buffer) < PREFIX_SIZE:
            taken = view[: PREFIX_SIZE - len(buffer)]
            buffer += taken
            position += len(taken)
            if len(buffer) == PREFIX_SIZE:
                self._length = _header_length(
                    bytes(buffer),
                    max_header_size=self._max_header_size,
                    available=self.declared_size - PREFIX_SIZE,
                )
        if self._header is None and len(buffer) >= PREFIX_SIZE:
            taken = view[position : position + PREFIX_SIZE + self._length - len(buffer)]
            if taken and len(buffer) == PREFIX_SIZE:
                _check_header_start(bytes(buffer), taken[0])
            buffer += taken
            position += len(taken)
            if len(buffer) == PREFIX_SIZE + self._length:
                self._complete_header()
        self._received += position
        if self._header is not None and position < len(view):
            data = view[position:]
            self._sha256.update(data)
            self._data_sha256.update(data)
            if self._public_sha256 is not None:
                self._public_sha256.update(data)
            self._data_received += len(data)
            self._received += len(data)
        if excess:
            _fail("TRAILING_DATA", f"more than the declared {self.declared_size} bytes arrived")

    def _complete_header(self) -> None:
        header_bytes = bytes(self._buffer)
        self._buffer = bytearray()
        data_size = self.declared_size - len(header_bytes)
        header = _parse(header_bytes, data_size=data_size, withheld_keys=self._withheld_keys)
        self._sha256.update(header_bytes)
        if header.public_header_bytes != header_bytes:
            self._public_sha256 = hashlib.sha256(header.public_header_bytes)
        self._header = header

    def _finish(self) -> SafetensorsInfo:
        header = self._header
        if header is None:
            where = "length prefix" if len(self._buffer) < PREFIX_SIZE else "header"
            _fail("TRUNCATED", f"the file ends inside its {where}")
        if self._data_received < header.data_size:
            _fail(
                "TRUNCATED",
                f"the file ends after {self._received} of its {self.declared_size} bytes",
            )
        sha256 = self._sha256.hexdigest()
        public = self._public_sha256
        return SafetensorsInfo(
            header_bytes=header.header_bytes,
            public_header_bytes=header.public_header_bytes,
            data_size=header.data_size,
            metadata=header.metadata,
            withheld=header.withheld,
            tensor_count=header.tensor_count,
            architecture=header.architecture,
            sha256=sha256,
            public_sha256=sha256 if public is None else public.hexdigest(),
            auto_v3=self._data_sha256.hexdigest(),
        )
