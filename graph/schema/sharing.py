"""Which answers depend on who asks: declared once, for every field a query can reach.

A signed-in viewer's answer differs from the anonymous one only (1) where a field
depends on who asks (``viewer``, notifications, signed links, owner-only fields), or
(2) where the viewer owns something only they see (a draft, a private dataset, withheld
header keys...: :func:`storage.privacy.access.owns_unshared_sql`). A document that
selects no field of the first kind, asked by a viewer with nothing of the second kind,
has the anonymous answer, which the response cache may already hold
(graph/http/sharing.py).

:data:`FIELDS` says it for every field of every type a query reaches, as
``"Type.field": SHARED`` or ``PER_VIEWER``:

- ``SHARED``: given the same parent object, the answer is the anonymous one for every
  viewer who owns nothing only they see (what the loaders show such a viewer is
  exactly what they show everybody);
- ``PER_VIEWER``: the answer may differ for a viewer whatever they own: it names the
  viewer, is for the owner only (null for others), hands out links bound to the
  sign-in, or may reach the viewer's own account or inbox (``node``).

A field missing here (a new one) makes every document selecting it take the full path,
and ``tests/graph/test_sharing.py`` fails, naming the line to add.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)

from graph.schema.documents import Documents


class Audience(Enum):
    SHARED = "shared"
    PER_VIEWER = "per viewer"


SHARED = Audience.SHARED
PER_VIEWER = Audience.PER_VIEWER

FIELDS: dict[str, Audience] = {
    # Query
    "Query.viewer": PER_VIEWER,  # you
    "Query.node": PER_VIEWER,  # reaches your own account and notifications by id
    "Query.model": SHARED,
    "Query.models": SHARED,  # your drafts and NSFW models: owned, unshared
    "Query.modelVersionByHash": SHARED,  # your original hashes: withheld keys, unshared
    "Query.retentionPolicy": SHARED,
    "Query.receiptPublicKeys": SHARED,  # the same published keys for everybody
    # Node
    "Node.id": SHARED,
    # User
    "User.id": SHARED,
    "User.username": SHARED,
    "User.models": SHARED,
    "User.trainingDatasets": SHARED,  # yours: tombstones and private ones, unshared
    "User.notifications": PER_VIEWER,  # null for anybody but yourself
    "User.unreadNotificationCount": PER_VIEWER,
    "User.dataExports": PER_VIEWER,  # null for anybody but yourself
    # Model
    "Model.id": SHARED,
    "Model.name": SHARED,
    "Model.description": SHARED,
    "Model.createdAt": SHARED,
    "Model.type": SHARED,
    "Model.nsfw": SHARED,
    "Model.downloadCount": SHARED,
    "Model.tags": SHARED,
    "Model.owner": SHARED,
    "Model.versions": SHARED,  # your drafts: unshared
    # ModelVersion
    "ModelVersion.id": SHARED,
    "ModelVersion.name": SHARED,
    "ModelVersion.status": SHARED,
    "ModelVersion.publishedAt": SHARED,
    "ModelVersion.createdAt": SHARED,
    "ModelVersion.baseModel": SHARED,
    "ModelVersion.trainedWords": SHARED,
    "ModelVersion.downloadCount": SHARED,
    "ModelVersion.model": SHARED,
    "ModelVersion.trainingDataset": SHARED,  # your private ones: unshared
    "ModelVersion.files": SHARED,  # your pending and deleted ones: unshared
    # ModelFile
    "ModelFile.id": SHARED,
    "ModelFile.filename": SHARED,
    "ModelFile.status": SHARED,
    "ModelFile.primary": SHARED,
    "ModelFile.autoV3": SHARED,
    "ModelFile.createdAt": SHARED,
    "ModelFile.uploadedAt": SHARED,
    "ModelFile.architecture": SHARED,  # from your withheld keys: unshared
    "ModelFile.sizeBytes": SHARED,  # your original's: withheld keys, unshared
    "ModelFile.sha256": SHARED,  # your original's: withheld keys, unshared
    "ModelFile.autoV2": SHARED,  # your original's: withheld keys, unshared
    "ModelFile.publicSizeBytes": SHARED,
    "ModelFile.publicSha256": SHARED,
    "ModelFile.headerMetadata": SHARED,  # your withheld keys: unshared
    "ModelFile.withheldKeys": PER_VIEWER,  # owner only
    "ModelFile.headerExpiresAt": PER_VIEWER,  # owner only
    "ModelFile.headerErasedAt": PER_VIEWER,  # owner only
    "ModelFile.headerErasureReceipt": PER_VIEWER,  # owner only
    "ModelFile.originalSha256": PER_VIEWER,  # owner only
    "ModelFile.downloadUrl": PER_VIEWER,  # a link bound to the sign-in
    "ModelFile.version": SHARED,
    # MetadataEntry, ModelArchitecture
    "MetadataEntry.key": SHARED,
    "MetadataEntry.value": SHARED,
    "ModelArchitecture.networkModule": SHARED,
    "ModelArchitecture.networkDim": SHARED,
    "ModelArchitecture.networkAlpha": SHARED,
    "ModelArchitecture.baseModelVersion": SHARED,
    "ModelArchitecture.modelspecArchitecture": SHARED,
    "ModelArchitecture.algo": SHARED,
    "ModelArchitecture.suggestedBaseModel": SHARED,
    "ModelArchitecture.suggestedType": SHARED,
    # TrainingDataset
    "TrainingDataset.id": SHARED,
    "TrainingDataset.filename": SHARED,
    "TrainingDataset.sizeBytes": SHARED,
    "TrainingDataset.sha256": SHARED,
    "TrainingDataset.visibility": SHARED,
    "TrainingDataset.status": SHARED,
    "TrainingDataset.expiresAt": SHARED,
    "TrainingDataset.deletedAt": SHARED,
    "TrainingDataset.deletionReason": SHARED,
    "TrainingDataset.createdAt": SHARED,
    "TrainingDataset.uploadedAt": SHARED,
    "TrainingDataset.version": SHARED,
    "TrainingDataset.downloadUrl": PER_VIEWER,  # a link bound to the sign-in
    "TrainingDataset.events": PER_VIEWER,  # owner only
    "TrainingDataset.keyDestroyedAt": PER_VIEWER,  # owner only
    "TrainingDataset.deletionReceipt": PER_VIEWER,  # owner only
    # DatasetEvent (reached through TrainingDataset.events only)
    "DatasetEvent.kind": SHARED,
    "DatasetEvent.at": SHARED,
    "DatasetEvent.detail": SHARED,
    # Notification (reached through per-viewer fields only)
    "Notification.id": SHARED,
    "Notification.kind": SHARED,
    "Notification.message": SHARED,
    "Notification.createdAt": SHARED,
    "Notification.readAt": SHARED,
    "Notification.dataset": SHARED,
    # DeletionReceipt (reached through per-viewer fields only)
    "DeletionReceipt.payload": SHARED,
    "DeletionReceipt.signature": SHARED,
    "DeletionReceipt.keyId": SHARED,
    # DataExport (reached through User.dataExports only)
    "DataExport.id": SHARED,
    "DataExport.status": SHARED,
    "DataExport.readyAt": SHARED,
    "DataExport.expiresAt": SHARED,
    "DataExport.sizeBytes": SHARED,
    "DataExport.downloadUrl": PER_VIEWER,  # a link bound to the sign-in
    # ReceiptKey (published)
    "ReceiptKey.keyId": SHARED,
    "ReceiptKey.publicKey": SHARED,
    "ReceiptKey.createdAt": SHARED,
    "ReceiptKey.retiredAt": SHARED,
    # RetentionPolicy
    "RetentionPolicy.privateRetentionSeconds": SHARED,
    "RetentionPolicy.reminderOffsetsSeconds": SHARED,
    "RetentionPolicy.notice": SHARED,
    "RetentionPolicy.draftRetentionSeconds": SHARED,
    "RetentionPolicy.withheldHeaderKeys": SHARED,
    # Connections
    "ModelConnection.edges": SHARED,
    "ModelConnection.pageInfo": SHARED,
    "ModelEdge.cursor": SHARED,
    "ModelEdge.node": SHARED,
    "TrainingDatasetConnection.edges": SHARED,
    "TrainingDatasetConnection.pageInfo": SHARED,
    "TrainingDatasetEdge.cursor": SHARED,
    "TrainingDatasetEdge.node": SHARED,
    "NotificationConnection.edges": SHARED,
    "NotificationConnection.pageInfo": SHARED,
    "NotificationEdge.cursor": SHARED,
    "NotificationEdge.node": SHARED,
    "DataExportConnection.edges": SHARED,
    "DataExportConnection.pageInfo": SHARED,
    "DataExportEdge.cursor": SHARED,
    "DataExportEdge.node": SHARED,
    "PageInfo.hasNextPage": SHARED,
    "PageInfo.endCursor": SHARED,
    # Running a site. Taken-down content is its owner's alone (an unshared part:
    # storage.privacy.access.UNSHARED), and operators have no exception in the rule, so
    # `takenDown` on what a viewer can see is the anonymous answer. Everything else here
    # is an operator's view, an owner's account, or reached only through those.
    "Model.takenDown": SHARED,
    "ModelVersion.takenDown": SHARED,
    "TakeDown.reason": SHARED,
    "TakeDown.at": SHARED,
    "Query.reports": PER_VIEWER,  # operators only
    "Query.auditLog": PER_VIEWER,  # operators only
    "User.email": PER_VIEWER,  # the owner only
    "User.emailVerified": PER_VIEWER,
    "User.emailPreferences": PER_VIEWER,
    "User.isOperator": PER_VIEWER,
    "User.reports": PER_VIEWER,
    "User.auditLog": PER_VIEWER,
    "AuditEntry.action": PER_VIEWER,
    "AuditEntry.actor": PER_VIEWER,
    "AuditEntry.at": PER_VIEWER,
    "AuditEntry.destroyPrivateData": PER_VIEWER,
    "AuditEntry.details": PER_VIEWER,
    "AuditEntry.id": PER_VIEWER,
    "AuditEntry.reason": PER_VIEWER,
    "AuditEntry.requestId": PER_VIEWER,
    "AuditEntry.subject": PER_VIEWER,
    "AuditEntryConnection.edges": PER_VIEWER,
    "AuditEntryConnection.pageInfo": PER_VIEWER,
    "AuditEntryEdge.cursor": PER_VIEWER,
    "AuditEntryEdge.node": PER_VIEWER,
    "EmailPreferences.deletions": PER_VIEWER,
    "EmailPreferences.reminders": PER_VIEWER,
    "ModerationSubject.id": PER_VIEWER,
    "ModerationSubject.kind": PER_VIEWER,
    "ModerationSubject.name": PER_VIEWER,
    "ModerationSubject.node": PER_VIEWER,
    "ModerationSubject.ownerUsername": PER_VIEWER,
    "ModerationSubject.suspended": PER_VIEWER,
    "ModerationSubject.takenDown": PER_VIEWER,
    "Report.about": PER_VIEWER,
    "Report.createdAt": PER_VIEWER,
    "Report.details": PER_VIEWER,
    "Report.id": PER_VIEWER,
    "Report.reason": PER_VIEWER,
    "Report.reporterUsername": PER_VIEWER,
    "Report.resolvedAt": PER_VIEWER,
    "Report.status": PER_VIEWER,
    "Report.subject": PER_VIEWER,
    "ReportConnection.edges": PER_VIEWER,
    "ReportConnection.pageInfo": PER_VIEWER,
    "ReportEdge.cursor": PER_VIEWER,
    "ReportEdge.node": PER_VIEWER,
}

# Fields whose values are signed links with their own lifetime: never stored, never
# reused, even for anonymous viewers.
LINK_FIELDS = frozenset({"downloadUrl", "uploadUrl"})


@dataclass(frozen=True)
class Shape:
    """What the response cache needs to know about a document, read once."""

    kind: OperationType | None  # None: no single operation to run (or no parse)
    links: bool  # asks for a signed link
    shared: bool  # a query that selects only SHARED fields


UNKNOWN = Shape(None, False, False)


class Classifier:
    """The :class:`Shape` of a document and operation name: decided once, remembered
    with the document's entry in the schema's :class:`~graph.schema.documents.Documents`
    (parsed there once, whoever asks, and within its memory budget)."""

    def __init__(self, schema: GraphQLSchema, *, documents: Documents):
        self.schema = schema
        self.documents = documents

    def shape(self, document: str, operation_name: str | None) -> Shape:
        entry = self.documents.entry(document)
        found = entry.shapes.get(operation_name)
        if found is None:
            found = self._read(entry.document, operation_name)
            entry.remember(entry.shapes, operation_name, found)
        assert isinstance(found, Shape)
        return found

    def _read(self, parsed: DocumentNode | None, operation_name: str | None) -> Shape:
        if parsed is None:
            return UNKNOWN
        operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = [
            o
            for o in operations
            if operation_name is None or (o.name is not None and o.name.value == operation_name)
        ]
        if len(chosen) != 1:
            return UNKNOWN
        kind = chosen[0].operation
        links, shared = _fields(self.schema, parsed)
        return Shape(kind, links, shared and kind == OperationType.QUERY)


def _fields(schema: GraphQLSchema, document: DocumentNode) -> tuple[bool, bool]:
    """Whether any field of ``document`` (every operation and fragment in it) asks for
    a signed link, and whether every one is declared ``SHARED`` (read against
    ``schema``). A field it cannot tell (unknown, or on an unknown type) is not shared:
    the full path answers it."""
    type_info = TypeInfo(schema)
    links, shared = False, True

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: object) -> object:
            nonlocal links, shared
            parent = type_info.get_parent_type()
            name = node.name.value
            links = links or name in LINK_FIELDS
            if parent is None or type_info.get_field_def() is None:
                shared = False  # not a field of the schema: the full path says so
            elif name.startswith("__") or parent.name.startswith("__"):
                pass  # __typename and introspection: the same for everybody
            elif FIELDS.get(f"{parent.name}.{name}") is not SHARED:
                shared = False
            return None

    visit(document, TypeInfoVisitor(type_info, Fields()))
    return links, shared
