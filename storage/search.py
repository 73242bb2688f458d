"""Catalogue search: tags, trigger words, and the text a search matches.

Each model keeps one search document (``LoraModel.search_text``): its name,
description, tags, the trained words of its *published* versions and its owner's
name, lower-cased. Only what anybody may see goes in, so a match can never reveal a
draft. :func:`refresh` rewrites it whenever one of those changes.

Matching is case-insensitive substring matching on every term of the query (all
must match), served by an index, never a scan:

- SQLite: an FTS5 table with the ``trigram`` tokenizer over ``search_text`` (kept in
  step by triggers; migration 0002);
- PostgreSQL: a ``pg_trgm`` GIN index on ``search_text``, used by ``LIKE`` (migration
  0002 creates the extension and the index).

Trigram indexes need terms of at least 3 characters; shorter terms are refused
(``INVALID_QUERY``) rather than answered by a scan.
"""

from __future__ import annotations

import re
import unicodedata

from tortoise import connections
from tortoise.expressions import Q, RawSQL

from storage.db import reads
from storage.db.enums import VersionStatus
from storage.db.models import LoraModel, ModelTag, ModelVersion, User
from storage.errors import ServiceError

MAX_TAGS = 10
TAG_MAX = 32
MAX_WORDS = 20
WORD_MAX = 100
MAX_TERMS = 8
TERM_MIN = 3
TERM_MAX = 64
_TAG = re.compile(r"^[a-z0-9][a-z0-9 +._-]*$")


def _text(raw: str) -> str:
    """NFKC, no control characters, whitespace collapsed."""
    clean = "".join(
        c for c in unicodedata.normalize("NFKC", raw) if unicodedata.category(c)[0] != "C"
    )
    return " ".join(clean.split())


def clean_tags(raw: list[str]) -> list[str]:
    """Tags as stored: lower-case, trimmed, unique, in the order given; at most
    ``MAX_TAGS`` of at most ``TAG_MAX`` characters (letters, digits, space, + . _ -)."""
    tags: list[str] = []
    for item in raw:
        tag = _text(item).lower().lstrip("#")
        if not tag:
            continue
        if len(tag) > TAG_MAX or not _TAG.match(tag):
            raise ServiceError(
                f"Tag {tag[:40]!r} is not allowed: at most {TAG_MAX} letters, digits, spaces "
                "or + . _ - characters, starting with a letter or digit.",
                field="tags",
                code="INVALID_TAG",
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ServiceError(
            f"A model may have at most {MAX_TAGS} tags.", field="tags", code="TOO_MANY_TAGS"
        )
    return tags


def clean_words(raw: list[str]) -> list[str]:
    """Trained (trigger) words: trimmed, unique, at most ``MAX_WORDS`` of at most
    ``WORD_MAX`` characters; case is kept (prompts are case-sensitive for some models)."""
    words: list[str] = []
    for item in raw:
        word = _text(item)
        if not word:
            continue
        if len(word) > WORD_MAX:
            raise ServiceError(
                f"A trained word may be at most {WORD_MAX} characters.",
                field="trainedWords",
                code="WORD_TOO_LONG",
            )
        if word not in words:
            words.append(word)
    if len(words) > MAX_WORDS:
        raise ServiceError(
            f"A version may have at most {MAX_WORDS} trained words.",
            field="trainedWords",
            code="TOO_MANY_WORDS",
        )
    return words


async def set_tags(model_id: int, tags: list[str]) -> None:
    """Replace a model's tags (inside the caller's transaction)."""
    await ModelTag.filter(model_id=model_id).delete()
    for position, tag in enumerate(tags):
        await ModelTag.create(model_id=model_id, tag=tag, position=position)


async def tags_by_model_ids(ids: list[int]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for row in await _TAGS_OF(list(ids)):
        grouped.setdefault(row.model_id, []).append(row.tag)
    return grouped


_TAGS_OF = reads.Read(
    ModelTag, lambda ids: ModelTag.filter(model_id__in=ids).order_by("model_id", "position")
)


async def refresh(model_id: int) -> None:
    """Rewrite a model's search document from what anybody may see of it."""
    model = await LoraModel.get_or_none(id=model_id)
    if model is None:
        return
    owner = await User.get(id=model.owner_id)
    tags = (await tags_by_model_ids([model_id])).get(model_id, [])
    words: list[str] = []
    published = ModelVersion.filter(  # not one taken down: hidden is not public
        model_id=model_id, status=VersionStatus.PUBLISHED, deleted_at=None, taken_down_at=None
    )
    for version in await published.only("id", "trained_words"):
        words.extend(version.trained_words)
    parts = [model.name, model.description, *tags, *words, owner.username]
    text = "\n".join(_text(p) for p in parts if p).lower()
    if text != model.search_text:
        await LoraModel.filter(id=model_id).update(search_text=text)


def _refused(message: str) -> ServiceError:
    return ServiceError(message, field="query", code="INVALID_QUERY")


def terms(query: str) -> list[str]:
    """The distinct terms of a search query (lower-case words), or INVALID_QUERY: every
    term must match, so none is ever dropped."""
    found = list(dict.fromkeys(t for t in _text(query).lower().split(" ") if t))
    if not found and query.strip():
        raise _refused("The search has no searchable characters.")
    if len(found) > MAX_TERMS:
        raise _refused(f"A search may have at most {MAX_TERMS} different terms.")
    for term in found:
        if len(term) < TERM_MIN or len(term) > TERM_MAX:
            raise _refused(f"Search terms must be {TERM_MIN} to {TERM_MAX} characters long.")
    return found


def _fts_literal(words: list[str]) -> str:
    """An FTS5 query of quoted phrases, as an SQL string literal.

    Each term becomes an FTS5 string (double quotes doubled), joined with AND; the
    whole is an SQL literal (single quotes doubled). Terms hold no control characters
    (:func:`_text` removed them), so nothing else can escape.
    """
    match = " AND ".join('"' + w.replace('"', '""') + '"' for w in words)
    return "'" + match.replace("'", "''") + "'"


def matching(query: str) -> Q:
    """A filter on LoraModel: models whose search document contains every term."""
    words = terms(query)
    if not words:
        return Q()
    dialect = connections.get("default").capabilities.dialect
    if dialect == "sqlite":
        subquery = f"SELECT rowid FROM model_search WHERE model_search MATCH {_fts_literal(words)}"
        return Q(id__in=RawSQL(f"({subquery})"))
    # search_text and the terms are lower-case already: plain LIKE on the column itself,
    # which the pg_trgm GIN index serves (Tortoise's icontains wraps the column in
    # UPPER(CAST(...)), which no index serves).
    likes = " AND ".join(f"search_text LIKE {_like_literal(w)}" for w in words)
    return Q(id__in=RawSQL(f"(SELECT id FROM lora_models WHERE {likes})"))


def _like_literal(word: str) -> str:
    """``'%word%'`` as an SQL string literal: LIKE's wildcards and its escape character
    escaped (backslash, the default), single quotes doubled. Terms hold no control
    characters (:func:`_text` removed them), so nothing else can escape."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "'%" + escaped.replace("'", "''") + "%'"
