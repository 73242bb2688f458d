"""GraphQL documents parsed and validated once, kept within a memory budget.

Every document a request sends (over HTTP or WebSocket) is parsed and validated through
one :class:`Documents` per schema: the schema's extensions (:class:`CachedParsing`,
:class:`CachedValidation`) and the anonymous cache in front of
``/graphql`` (``graph.http.cache``), which reads a document's operation, its normal form
and whether it validates from the same entry, so a document is parsed once whoever asks.

Entries are kept least recently used first out, and the budget is in bytes, not
entries: a parsed document costs about ``BYTES_PER_TOKEN`` per token (graphql-core keeps
every token, linked, with its node) plus its text, so 256 documents of 2,000 tokens would
be some 300 MiB, while ``LORASHELF_PARSED_DOCUMENTS_BYTES`` (default 16 MiB) is the most
all of them together may take, whatever anonymous clients send. A document larger than
an eighth of the budget is parsed for its request and not kept.

The normal form of a document (:attr:`Entry.normal`) is what identifies it as a key:
parsed and printed again without comments or insignificant whitespace, so two texts
that differ only by a comment are one document.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
    print_ast,
    strip_ignored_characters,
)
from graphql.language import Visitor, visit
from graphql.utilities import TypeInfo, TypeInfoVisitor
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension

from graph.schema import limits
from storage.config.settings import Limits

BYTES_PER_TOKEN = 700  # measured: ~600 for a flat selection, less with arguments
ENTRY_BYTES = 600  # the entry, its place in the cache, the operations' tuples
MAX_NAMES_REMEMBERED = 8  # operation names whose kind and shape an entry keeps
# Fields whose values are signed links with their own lifetime: not shared, not reused.
LINK_FIELDS = frozenset({"downloadUrl", "uploadUrl"})
# What a shared cache (a CDN) may keep: the catalogue, whose changes are public acts
# (publishing, catalogue edits, deletions), field by field. Everything else, a field
# added later included, is private to the asker: a training dataset (what a dataset's
# visibility governs is withdrawn from anonymous viewers the instant its owner makes it
# private, and a CDN would serve it on for its max-age), a weights file (its public
# header carries the training-data keys while the dataset is public, and its size and
# architecture follow them), the lookups by id or hash, the viewer's own things.
# graph.http.cache marks an answer ``private`` unless every field it selects is here.
SHAREABLE_FIELDS: dict[str, frozenset[str]] = {
    "Query": frozenset({"models", "model", "retentionPolicy"}),
    "ModelConnection": frozenset({"edges", "pageInfo"}),
    "ModelEdge": frozenset({"cursor", "node"}),
    "PageInfo": frozenset({"hasNextPage", "endCursor"}),
    "Model": frozenset(
        {
            "id",
            "name",
            "description",
            "createdAt",
            "type",
            "nsfw",
            "downloadCount",
            "tags",
            "owner",
            "versions",
        }
    ),
    "ModelVersion": frozenset(
        {
            "id",
            "name",
            "status",
            "publishedAt",
            "createdAt",
            "baseModel",
            "trainedWords",
            "downloadCount",
            "model",
        }
    ),
    "User": frozenset({"id", "username", "models"}),
    "RetentionPolicy": frozenset(
        {
            "privateRetentionSeconds",
            "reminderOffsetsSeconds",
            "notice",
            "draftRetentionSeconds",
            "withheldHeaderKeys",
        }
    ),
}


@dataclass
class Entry:
    """One document text: its parse (or the syntax error), and what was learnt of it."""

    document: DocumentNode | None
    error: GraphQLError | None
    cost: int
    errors: list[GraphQLError] | None = None  # validation's, once validated
    _normal: str | None = None
    _links: bool | None = None  # once looked at
    shareable: bool | None = None  # set by Documents.shareable
    operations: dict[str | None, OperationType | None] = field(default_factory=dict)
    shapes: dict[str | None, object] = field(default_factory=dict)  # graph.schema.sharing's

    def remember(self, memo: dict[str | None, Any], name: str | None, value: Any) -> None:
        """Keep what was learnt for operation ``name``, for a few names only (a client
        sending the same document under ever new operation names grows nothing)."""
        if len(memo) < MAX_NAMES_REMEMBERED:
            memo[name] = value

    @property
    def normal(self) -> str | None:
        """The document printed without comments or insignificant whitespace."""
        if self._normal is None and self.document is not None:
            self._normal = strip_ignored_characters(print_ast(self.document))
        return self._normal

    @property
    def links(self) -> bool:
        """Whether the document asks for a signed link anywhere."""
        if self._links is None:
            self._links = self.document is not None and _asks_for_links(self.document)
        return self._links

    def operation(self, name: str | None) -> OperationType | None:
        """The kind of the operation ``name`` selects (None: no such single operation)."""
        if name in self.operations:
            return self.operations[name]
        found = _operation(self.document, name)
        self.remember(self.operations, name, found)
        return found


def _tokens(document: DocumentNode) -> int:
    token = document.loc.start_token if document.loc is not None else None
    count = 0
    while token is not None:
        count += 1
        token = token.next
    return count


def _operation(document: DocumentNode | None, name: str | None) -> OperationType | None:
    if document is None:
        return None
    chosen = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (name is None or (d.name is not None and d.name.value == name))
    ]
    return chosen[0].operation if len(chosen) == 1 else None


def _asks_for_links(document: DocumentNode) -> bool:
    """Whether the document selects a link field (anywhere, fragments included: they
    are in the document too)."""
    links = False

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> Any:
            nonlocal links
            links = node.name.value in LINK_FIELDS
            return Visitor.BREAK if links else None

    visit(document, Fields())
    return links


def _only_shareable(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """Whether every field the document selects (fragments included) is one of
    :data:`SHAREABLE_FIELDS` on its type, or a meta-field (``__typename``)."""
    type_info = TypeInfo(schema)
    shareable = True

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> Any:
            nonlocal shareable
            name = node.name.value
            if name.startswith("__"):
                return None
            parent = type_info.get_parent_type()
            allowed = SHAREABLE_FIELDS.get(parent.name) if parent is not None else None
            if allowed is None or name not in allowed:
                shareable = False
                return Visitor.BREAK
            return None

    visit(document, TypeInfoVisitor(type_info, Fields()))
    return shareable


class Documents:
    """The parsed documents of one schema, least recently used out, within ``max_bytes``."""

    def __init__(
        self, *, max_bytes: int, limits: Limits, rules: tuple[type[ASTValidationRule], ...]
    ):
        self.max_bytes = max_bytes
        self.max_tokens = limits.max_tokens
        self.limits = limits
        self.rules = rules  # every validation rule (the specified ones, ours, introspection's)
        self.schema: GraphQLSchema | None = None  # set once the schema is built
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.size = 0

    def entry(self, text: str) -> Entry:
        """The entry for a document text, parsed now if it is not kept."""
        found = self._entries.get(text)
        if found is not None:
            self._entries.move_to_end(text)
            return found
        try:
            document: DocumentNode | None = parse(text, max_tokens=self.max_tokens)
            error = None
        except GraphQLError as exc:
            document, error = None, exc
        except RecursionError:
            document, error = None, GraphQLError("The document is nested too deeply.")
        tokens = _tokens(document) if document is not None else 0
        cost = sys.getsizeof(text) * 2 + tokens * BYTES_PER_TOKEN + ENTRY_BYTES
        made = Entry(document=document, error=error, cost=cost)
        if cost <= self.max_bytes // 8:
            self._entries[text] = made
            self.size += cost
            self._evict()
        return made

    def errors(self, text: str, document: DocumentNode | None = None) -> list[GraphQLError]:
        """Whether the document may run: its syntax error, or what the checks before
        validation and validation itself found (empty: it may run). ``document``: the
        parse the caller holds, when it holds one."""
        entry = self.entry(text)
        if document is not None and entry.document is not document:
            return self._check(document)  # a parse this cache did not make: not kept
        if entry.error is not None:
            return [entry.error]
        if entry.errors is None:
            assert entry.document is not None
            entry.errors = self._check(entry.document)
            grown = sum(600 for _ in entry.errors)
            entry.cost += grown
            if text in self._entries:
                self.size += grown
                self._evict()
        return entry.errors

    def normal(self, text: str) -> str | None:
        """The normal form of a document (None when it does not parse)."""
        entry = self.entry(text)
        before = entry._normal
        normal = entry.normal
        if before is None and normal is not None and text in self._entries:
            grown = sys.getsizeof(normal)
            entry.cost += grown
            self.size += grown
            self._evict()
        return normal

    def shareable(self, entry: Entry) -> bool:
        """Whether a shared cache may keep the answer to ``entry`` (every field it
        selects is in :data:`SHAREABLE_FIELDS`); False for a document that does not
        parse."""
        if entry.shareable is None:
            assert self.schema is not None, "Documents used before its schema was built"
            entry.shareable = entry.document is not None and _only_shareable(
                self.schema, entry.document
            )
        return entry.shareable

    def _check(self, document: DocumentNode) -> list[GraphQLError]:
        assert self.schema is not None, "Documents used before its schema was built"
        return limits.check(self.schema, document, self.rules, self.limits)

    def _evict(self) -> None:
        while self.size > self.max_bytes and self._entries:
            _, oldest = self._entries.popitem(last=False)
            self.size -= oldest.cost

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


class CachedParsing(SchemaExtension):
    """Parsing through the schema's :class:`Documents` (a syntax error is left for
    strawberry to raise where it reports it)."""

    def __init__(self, *, documents: Documents):
        super().__init__()
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            context.graphql_document = self.documents.entry(context.query).document
        yield


class CachedValidation(SchemaExtension):
    """Validation through the schema's :class:`Documents`: the linear checks first
    (directive overloading, field duplication: graph.schema.limits), then the rules,
    once per document."""

    def __init__(self, *, documents: Documents):
        super().__init__()
        self.documents = documents

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        context.pre_execution_errors = self.documents.errors(context.query or "", document)
        yield
