"""The model type: a LoRA model in the catalogue, with its versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from graph.schema import ids, relations
from graph.schema.context import Info
from graph.schema.enums import LoraType
from graph.schema.relations import related, then
from graph.schema.types.moderation import TakeDownType
from graph.schema.types.relay import Node, bounded, node_of, node_type
from graph.schema.types.versions import ModelVersionType
from storage import catalog
from storage.db import models as db
from storage.privacy import lookups

if TYPE_CHECKING:
    from graph.schema.types.users import UserType

UserRef = Annotated["UserType", strawberry.lazy("graph.schema.types.users")]


@strawberry.type(name="Model", description="A LoRA model: a name, a description and versions.")
@node_type(lookups.MODEL)
class ModelType(Node):
    row: strawberry.Private[db.LoraModel]

    @classmethod
    def of(cls, row: db.LoraModel) -> ModelType:
        return cls(
            id=strawberry.ID(ids.encode("Model", row.public_id)),
            row=row,
            name=row.name,
            description=row.description,
            created_at=row.created_at.astimezone(UTC),
            type=row.type,
            nsfw=row.nsfw,
            download_count=row.download_count,
        )

    name: str = strawberry.field(description="The model's name.")

    description: str = strawberry.field(description="The model's description.")

    created_at: datetime = strawberry.field(description="When the model was created.")

    type: LoraType = strawberry.field(description="What kind of adapter it is.")

    nsfw: bool = strawberry.field(
        description="Not safe for work: left out of `models` unless `includeNsfw: true`."
    )

    download_count: int = strawberry.field(
        description="Full downloads of the files of all its versions."
    )

    @strawberry.field(
        description="Catalogue tags: lower-case, at most 10, each at most 32 characters."
    )
    def tags(self, info: Info) -> list[str]:
        return then(related(info, relations.TAGS, self.row), list)

    @strawberry.field(description="Who published the model.")
    def owner(self, info: Info) -> UserRef:
        return then(related(info, relations.OWNER, self.row), _user)

    @strawberry.field(
        description=(
            "The versions you may see, newest first (drafts only for the owner): the "
            f"newest {catalog.DEFAULT_VERSIONS} unless `first` asks for more; a model has at "
            f"most {catalog.MAX_VERSIONS}."
        )
    )
    def versions(
        self,
        info: Info,
        first: Annotated[
            int,
            strawberry.argument(
                description=f"How many versions to return (at most {catalog.MAX_VERSIONS})."
            ),
        ] = catalog.DEFAULT_VERSIONS,
    ) -> list[ModelVersionType]:
        size = bounded(first, catalog.MAX_VERSIONS)
        return then(
            related(info, relations.VERSIONS, self.row),
            lambda rows: [ModelVersionType.of(v) for v in rows[:size]],
        )

    @strawberry.field(
        description=(
            "Set while the site's operators have this model taken down: hidden from "
            "everybody but its owner. Shown to the owner and to operators only."
        )
    )
    def taken_down(self, info: Info) -> TakeDownType | None:
        return TakeDownType.shown(info, self.row)


def _user(user: db.User | None) -> UserType:
    assert user is not None  # the owner of a visible model is visible
    return cast("UserType", node_of(lookups.USER, user))
