"""Metadata keys as people and tools read them, for matching the withheld keys.

A header's ``__metadata__`` keys are free text. A training tool (or a person) may write
``SS_TAG_FREQUENCY``, ``"ss_tag_frequency "``, a fullwidth ``ｓｓ＿ｔａｇ＿ｆｒｅｑｕｅｎｃｙ``
or ``ss_tag_frequency`` followed by a zero-width space: each reads as the training-data
key it imitates, so each must be withheld like it. :class:`KeyMatcher` therefore compares
keys after Unicode NFKC normalization, full case folding (then NFKC again, as Unicode's
``NFKC_Casefold`` does) and trimming of surrounding whitespace, and treats a key holding
any *invisible* character as withheld whatever it spells: control and format characters
(zero-width spaces and joiners, bidirectional controls, soft hyphens, tag characters),
line and paragraph separators, and the rest of Unicode's default-ignorable code points
(variation selectors, Hangul fillers...). Such a key cannot be told apart from a withheld
one by eye, and no tool writes one on purpose.

Not covered: letters from other scripts that merely look alike (a Cyrillic ``е`` in
``ss_tag_frеquency``). No tool reads such a key as the training-data key, and the file's
owner may list it in ``LORASHELF_PRIVATE_HEADER_KEYS`` like any other key.

Pure: no I/O, no database (it runs in the header parser's child process too).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt) that are not
# already control or format characters: rendered as nothing, or as blank.
_DEFAULT_IGNORABLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong/jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x2065, 0x2065),
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_invisible(char: str) -> bool:
    """Whether one character renders as nothing (or cannot be seen for what it is)."""
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _DEFAULT_IGNORABLE)


def has_invisible(key: str) -> bool:
    """Whether a key holds an invisible character anywhere (a tab, a newline and a
    zero-width space alike). Plain ASCII keys are checked without a lookup per character."""
    if key.isascii():
        return not key.isprintable()
    return any(is_invisible(char) for char in key)


def normalize_key(key: str) -> str:
    """A key as it reads: NFKC, case-folded, NFKC again, surrounding whitespace trimmed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return folded.strip()


class KeyMatcher:
    """Says which metadata keys are withheld: those that read as one of ``keys``, and
    every key holding an invisible character."""

    def __init__(self, keys: Iterable[str]):
        if isinstance(keys, str):
            raise TypeError("keys is a collection of keys, not one string")
        self.keys: tuple[str, ...] = tuple(keys)
        self._normalized = frozenset(normalize_key(key) for key in self.keys)

    def withholds(self, key: str) -> bool:
        return has_invisible(key) or normalize_key(key) in self._normalized

    def __repr__(self) -> str:
        return f"KeyMatcher({list(self.keys)!r})"
