"""The retention policy type: what happens to private datasets, from the configured
values (the GraphQL ``RetentionPolicy``; the policy itself is
:class:`storage.retention.policy.RetentionPolicy`)."""

from __future__ import annotations

import strawberry


@strawberry.type(
    name="RetentionPolicy",
    description="What happens to private datasets, from the configured values.",
)
class RetentionPolicyType:
    private_retention_seconds: int = strawberry.field(
        description="How long after publishing a private dataset is kept, in seconds."
    )
    reminder_offsets_seconds: list[int] = strawberry.field(
        description="When the owner is reminded, in seconds before deletion, largest first."
    )
    notice: str = strawberry.field(
        description="The sentence the upload form shows next to the sharing option."
    )
    draft_retention_seconds: int = strawberry.field(
        description=(
            "How long a private dataset of a version that is never published is kept after "
            "its upload, in seconds (publishing starts the normal window instead)."
        )
    )
    withheld_header_keys: list[str] = strawberry.field(
        description=(
            "The safetensors __metadata__ keys treated as training data: withheld from "
            "everybody but the owner unless the version's dataset is public, and erased "
            "when its window ends (for the upload form to warn about)."
        )
    )
