"""E-mail mutations: your address (verified through a link), and what you receive."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.mutations.accounts import rate_limited
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    user_errors_field,
)
from graph.schema.types.users import UserType
from storage import email_addresses
from storage.privacy import lookups


@strawberry.input(description="Set or remove your e-mail address.")
class SetEmailInput:
    email: str | None = strawberry.field(
        description="The address (a link to confirm it is sent there; nothing else is until "
        "it is confirmed); null or empty removes yours."
    )


@strawberry.input(description="Confirm your e-mail address.")
class VerifyEmailInput:
    token: str = strawberry.field(description="The token of the link sent to the address.")


@strawberry.input(description="Choose which e-mail you receive; what you leave out stays.")
class SetEmailPreferencesInput:
    reminders: bool | None = strawberry.field(
        default=None, description="Reminders before a private dataset is deleted."
    )
    deletions: bool | None = strawberry.field(
        default=None, description="Notices after a private dataset was deleted."
    )


@strawberry.type(description="The result of setEmail.")
class SetEmailPayload:
    user: UserType | None = null_field("Your account (email, emailVerified).")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of verifyEmail.")
class VerifyEmailPayload:
    verified: bool = strawberry.field(default=False, description="Whether it is confirmed now.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of setEmailPreferences.")
class SetEmailPreferencesPayload:
    user: UserType | None = null_field("Your account (emailPreferences).")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Set your e-mail address (a link to confirm it is sent to it, valid 24 hours; "
    "rate-limited), or remove it.",
)
async def set_email(info: Info, input: Annotated[SetEmailInput, INPUT]) -> SetEmailPayload:
    ctx = info.context
    user_id = lookups.require_viewer(ctx.viewer_id)
    if (input.email or "").strip() and not await ctx.services.limiter.allow_email(user_id=user_id):
        raise rate_limited()
    user = await ctx.call(email_addresses.set_email, email=input.email)
    return SetEmailPayload(user=UserType.of(user))


@payload_mutation(
    "Confirm an e-mail address with the token of the link sent to it (no sign-in needed). "
    "An expired, used or replaced link answers TOKEN_EXPIRED, TOKEN_USED or "
    "TOKEN_SUPERSEDED.",
)
async def verify_email(info: Info, input: Annotated[VerifyEmailInput, INPUT]) -> VerifyEmailPayload:
    await email_addresses.verify_email(info.context.runtime, token=input.token)
    return VerifyEmailPayload(verified=True)


@payload_mutation("Choose which e-mail you receive (moderation notices are always sent).")
async def set_email_preferences(
    info: Info, input: Annotated[SetEmailPreferencesInput, INPUT]
) -> SetEmailPreferencesPayload:
    user = await info.context.call(
        email_addresses.set_preferences, reminders=input.reminders, deletions=input.deletions
    )
    return SetEmailPreferencesPayload(user=UserType.of(user))
