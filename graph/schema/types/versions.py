"""The model version type: a version, its weights files and its training dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from graph.schema import ids, relations
from graph.schema.context import Info
from graph.schema.enums import BaseModelName, VersionStatus
from graph.schema.relations import related, then
from graph.schema.scalars import as_utc
from graph.schema.types.datasets import TrainingDatasetType
from graph.schema.types.files import ModelFileType
from graph.schema.types.moderation import TakeDownType
from graph.schema.types.relay import Node, bounded, node_of, node_type
from storage.db import models as db
from storage.files import MAX_FILES_PER_VERSION
from storage.privacy import lookups

if TYPE_CHECKING:
    from graph.schema.types.models import ModelType

ModelRef = Annotated["ModelType", strawberry.lazy("graph.schema.types.models")]


@strawberry.type(name="ModelVersion", description="One trained version of a model.")
@node_type(lookups.VERSION)
class ModelVersionType(Node):
    row: strawberry.Private[db.ModelVersion]

    @classmethod
    def of(cls, row: db.ModelVersion) -> ModelVersionType:
        return cls(
            id=strawberry.ID(ids.encode("ModelVersion", row.public_id)),
            row=row,
            name=row.name,
            status=row.status,
            published_at=as_utc(row.published_at),
            created_at=row.created_at.astimezone(UTC),
            base_model=row.base_model,
            trained_words=list(row.trained_words),
            download_count=row.download_count,
        )

    name: str = strawberry.field(description="The version's name, e.g. v1.")

    status: VersionStatus = strawberry.field(description="Draft or published.")

    published_at: datetime | None = strawberry.field(
        description="When the version was published; null for a draft."
    )

    created_at: datetime = strawberry.field(description="When the version was created.")

    base_model: BaseModelName = strawberry.field(
        description="The base checkpoint it was trained for."
    )

    trained_words: list[str] = strawberry.field(
        description="Trigger words to put in a prompt (at most 20)."
    )

    download_count: int = strawberry.field(
        description=(
            "Full downloads of its files (a download link counts once, however many ranged "
            "requests it serves)."
        )
    )

    @strawberry.field(description="The model this version belongs to.")
    def model(self, info: Info) -> ModelRef:
        return then(related(info, relations.MODEL, self.row), _model)

    @strawberry.field(
        description=(
            "The dataset this version was trained on, if you may see it: null when there is "
            "none, and for anybody but the owner when it is private."
        )
    )
    def training_dataset(self, info: Info) -> TrainingDatasetType | None:
        return then(related(info, relations.DATASET, self.row), TrainingDatasetType.maybe)

    @strawberry.field(
        description=(
            "The weights files (safetensors), primary first; at most 10. Anybody sees the "
            "available files of a published version; the owner also sees pending uploads "
            "and deleted files."
        )
    )
    def files(
        self,
        info: Info,
        first: Annotated[
            int,
            strawberry.argument(
                description=f"How many files to return (at most {MAX_FILES_PER_VERSION})."
            ),
        ] = MAX_FILES_PER_VERSION,
    ) -> list[ModelFileType]:
        size = bounded(first, MAX_FILES_PER_VERSION)
        return then(
            related(info, relations.FILES, self.row),
            lambda rows: [ModelFileType.of(f) for f in rows[:size]],
        )

    @strawberry.field(
        description=(
            "Set while the site's operators have this version taken down: hidden from "
            "everybody but its owner. Shown to the owner and to operators only."
        )
    )
    def taken_down(self, info: Info) -> TakeDownType | None:
        return TakeDownType.shown(info, self.row)


def _model(model: db.LoraModel | None) -> ModelType:
    assert model is not None  # the model of a visible version is visible
    return cast("ModelType", node_of(lookups.MODEL, model))
