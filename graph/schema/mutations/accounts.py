"""Account mutations: sign up, log in, log out, change the password, delete the account."""

from __future__ import annotations

import asyncio
from typing import Annotated

import strawberry

from graph.schema.context import Info
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    user_errors_field,
)
from graph.schema.types.receipts import AccountDeletionReceiptType, DeletionReceiptType
from graph.schema.types.users import UserType
from storage import account_deletion, accounts
from storage.errors import ServiceError, Unauthenticated
from storage.privacy import lookups


def rate_limited() -> ServiceError:
    return ServiceError("Too many attempts; wait a little and try again.", code="RATE_LIMITED")


@strawberry.input(description="Create an account.")
class SignUpInput:
    username: str = strawberry.field(
        description="3 to 32 characters: letters, digits, '-' or '_' (case-insensitive)."
    )
    password: str = strawberry.field(description="At least 10 characters.")


@strawberry.input(description="Sign in to an account.")
class LogInInput:
    username: str = strawberry.field(description="The account's username.")
    password: str = strawberry.field(description="The account's password.")


@strawberry.input(description="Change your password; every sign-in of the account ends.")
class ChangePasswordInput:
    current_password: str = strawberry.field(description="Your password now.")
    new_password: str = strawberry.field(description="The new one: 10 to 1,024 characters.")


@strawberry.input(description="Delete your account and everything in it, for good.")
class DeleteAccountInput:
    password: str = strawberry.field(description="Your password, checked again.")


BEARER = "A bearer token: send it as `Authorization: Bearer <token>`."


@strawberry.type(description="The result of signUp.")
class SignUpPayload:
    token: str | None = null_field(BEARER)
    user: UserType | None = null_field("The new account.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of logIn.")
class LogInPayload:
    token: str | None = null_field(BEARER)
    user: UserType | None = null_field("The account signed in to.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of changePassword.")
class ChangePasswordPayload:
    token: str | None = null_field(
        "A new bearer token: every earlier one (this request's included) no longer works."
    )
    user: UserType | None = null_field("The account.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of logOut.")
class LogOutPayload:
    ok: bool = strawberry.field(default=False, description="Whether a token was revoked.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of deleteAccount.")
class DeleteAccountPayload:
    receipt: AccountDeletionReceiptType | None = null_field(
        "The signed receipt of the deletion, with each dataset's: the account is gone, so "
        "keep it (it is not shown again)."
    )
    user_errors: list[UserError] = user_errors_field()


@payload_mutation("Create an account and sign in to it.")
async def sign_up(info: Info, input: Annotated[SignUpInput, INPUT]) -> SignUpPayload:
    ctx = info.context
    if not await ctx.services.limiter.allow_signup(address=ctx.client_address):
        raise rate_limited()
    user, token = await accounts.sign_up(
        username=input.username,
        password=input.password,
        now=ctx.now(),
        token_lifetime=ctx.services.settings.token_lifetime,
        held=lambda name: account_deletion.is_held(
            ctx.services.settings.secret_key, name, now=ctx.now()
        ),
    )
    return SignUpPayload(token=token, user=UserType.of(user))


@payload_mutation("Sign in; returns a new bearer token.")
async def log_in(info: Info, input: Annotated[LogInInput, INPUT]) -> LogInPayload:
    ctx = info.context
    allowed = await ctx.services.limiter.allow_login(
        username=input.username, address=ctx.client_address
    )
    if not allowed:
        raise rate_limited()
    user, token = await accounts.log_in(
        username=input.username,
        password=input.password,
        now=ctx.now(),
        token_lifetime=ctx.services.settings.token_lifetime,
    )
    return LogInPayload(token=token, user=UserType.of(user))


@payload_mutation("Revoke the bearer token this request was sent with.")
async def log_out(info: Info) -> LogOutPayload:
    token = info.context.token
    if token is None:
        raise Unauthenticated("Sign in first.")
    await accounts.log_out(token_id=token.id, now=info.context.now())
    return LogOutPayload(ok=True)


@payload_mutation(
    "Change your password. Every sign-in of the account ends (and the download links "
    "made for them stop working); the answer carries a new token.",
)
async def change_password(
    info: Info, input: Annotated[ChangePasswordInput, INPUT]
) -> ChangePasswordPayload:
    ctx = info.context
    user_id = lookups.require_viewer(ctx.viewer_id)
    assert ctx.viewer is not None
    allowed = await ctx.services.limiter.allow_login(
        username=ctx.viewer.username, address=ctx.client_address
    )
    if not allowed:
        raise rate_limited()
    user, token = await accounts.change_password(
        user_id=user_id,
        current=input.current_password,
        new=input.new_password,
        now=ctx.now(),
        token_lifetime=ctx.services.settings.token_lifetime,
    )
    return ChangePasswordPayload(token=token, user=UserType.of(user))


@payload_mutation(
    "Delete your account: the password is checked again; every dataset's key is destroyed "
    "at once (each gets a receipt), then every model, version, file, dataset, "
    "notification, export and sign-in goes. The username stays taken for a while "
    "(LORASHELF_USERNAME_QUARANTINE). Not undone; a wrong password changes nothing."
)
async def delete_account(
    info: Info, input: Annotated[DeleteAccountInput, INPUT]
) -> DeleteAccountPayload:
    ctx = info.context
    lookups.require_viewer(ctx.viewer_id)
    assert ctx.viewer is not None
    allowed = await ctx.services.limiter.allow_login(
        username=ctx.viewer.username, address=ctx.client_address
    )
    if not allowed:
        raise rate_limited()
    # Shielded: a client that goes away does not cut the deletion in half (a crash is
    # finished by the sweep).
    work = asyncio.ensure_future(ctx.call(account_deletion.delete_account, password=input.password))
    account, datasets = await asyncio.shield(work)
    return DeleteAccountPayload(
        receipt=AccountDeletionReceiptType(
            payload=account.payload,
            signature=account.signature,
            key_id=account.key_id,
            dataset_receipts=[DeletionReceiptType.of(r) for r in datasets],
        )
    )
