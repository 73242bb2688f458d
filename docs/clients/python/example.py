"""Calling lorashelf through the generated client (generate it first: see pyproject.toml).

    python example.py http://127.0.0.1:8000/graphql

The client is an httpx client: ``url`` is the API's /graphql, and ``headers`` go with
every request, so a signed-in client carries ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from lorashelf_client import Lorashelf
from lorashelf_client.enums import BaseModelName
from lorashelf_client.input_types import (
    CreateModelInput,
    CreateModelVersionInput,
    SignUpInput,
)


async def main(url: str) -> None:
    anonymous = Lorashelf(url=url)
    policy = await anonymous.retention_policy()
    print(policy.retention_policy.notice)

    username = f"example-{uuid.uuid4().hex[:8]}"
    signed = await anonymous.sign_up(
        SignUpInput(username=username, password="correct horse battery")
    )
    if signed.sign_up.user_errors:
        raise SystemExit(signed.sign_up.user_errors[0].message)

    # Signed in: the token from signUp/logIn, sent as a bearer token on every request.
    # An Idempotency-Key makes a mutation safe to retry: the same key and the same
    # request within 24 hours get the first answer, and nothing is done twice.
    me = Lorashelf(url=url, headers={"Authorization": f"Bearer {signed.sign_up.token}"})
    key = str(uuid.uuid4())
    made = await me.create_model(
        CreateModelInput(name="Cats", description="A cat LoRA"),
        headers={"Idempotency-Key": key},
    )
    if made.create_model.user_errors:
        raise SystemExit(made.create_model.user_errors[0].message)
    model = made.create_model.model
    assert model is not None
    version = await me.create_model_version(
        CreateModelVersionInput(model_id=model.id, name="v1", base_model=BaseModelName.SDXL_1_0)
    )
    created = version.create_model_version.version
    assert created is not None
    print(f"{username}: model {model.name!r}, version {created.name} ({created.base_model.value})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/graphql"))
