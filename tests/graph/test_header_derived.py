"""Nothing derived from a withheld header key reaches anyone who may not see the key, and
keys are withheld as people read them.

- ``ModelFile.architecture`` is computed from the metadata its viewer may see: with
  ``ss_network_args``, ``ss_base_model_version``, ``modelspec.*`` and ``ss_sd_model_name``
  listed as training data, an anonymous viewer learns nothing about the algorithm or
  the base model from it; the owner does, until the window ends, then nobody does, and
  no value derived from those keys was ever stored in the database.
- A key that reads as a withheld one (another case, surrounding spaces, a fullwidth
  spelling, a zero-width character) is withheld like it, in ``headerMetadata`` and in
  the bytes of a download; a key with an invisible character is withheld whatever it
  spells."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.tasks import sweep
from storage.config.settings import Settings
from tests.conftest import Api, MutableClock, Person, at, make_safetensors
from tests.graph.test_header_firewall import (
    RETENTION,
    TENSORS,
    dataset_view,
    download,
    file_view,
    files_holding_secrets,
    metadata_in,
    metadata_of,
    version_with_file,
)
from tests.graph.test_header_firewall import database_bytes as database_of

LISTED = (
    "ss_sd_model_name,ss_network_args,ss_base_model_version,modelspec.title,modelspec.architecture"
)
pytestmark = pytest.mark.env(
    LORASHELF_PRIVATE_RETENTION=f"{RETENTION}s",
    LORASHELF_REMINDERS="30s",
    LORASHELF_PRIVATE_HEADER_KEYS=LISTED,
)

# Values only the listed keys hold, and what the owner's view derives from them.
PRIVATE = {
    "ss_sd_model_name": "zq_pony_checkpoint_8812.safetensors",
    "ss_network_args": json.dumps({"algo": "locon", "conv_dim": "zq_conv_4417"}),
    "ss_base_model_version": "sdxl_base_v1-0_zq3390",
    "modelspec.title": "zq_title_secret_5521",
    "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
}
PUBLIC = {
    "ss_network_module": "lycoris.kohya",
    "ss_network_dim": "16",
    "ss_network_alpha": "8.0",
    "ss_output_name": "zebracat",
}
BODY = make_safetensors({**PUBLIC, **PRIVATE}, TENSORS)

ARCHITECTURE = """
query($id: ID!) {
  node(id: $id) {
    ... on ModelFile {
      headerMetadata { key value }
      architecture {
        networkModule networkDim networkAlpha baseModelVersion modelspecArchitecture algo
        suggestedBaseModel suggestedType
      }
    }
  }
}
"""

WHAT_THE_PUBLIC_KEYS_SAY = {
    "networkModule": "lycoris.kohya",
    "networkDim": 16,
    "networkAlpha": 8.0,
    "baseModelVersion": None,
    "modelspecArchitecture": None,
    "algo": None,
    "suggestedBaseModel": None,
    "suggestedType": "LORA",  # a LyCORIS module whose algorithm nobody may know
}
WHAT_EVERY_KEY_SAYS = {
    **WHAT_THE_PUBLIC_KEYS_SAY,
    "baseModelVersion": "sdxl_base_v1-0_zq3390",
    "modelspecArchitecture": "stable-diffusion-xl-v1-base/lora",
    "algo": "locon",
    "suggestedBaseModel": "PONY",  # SDXL, and the base checkpoint's name says Pony
    "suggestedType": "LOCON",
}


async def architecture(api: Api, file_id: str, who: Person | None) -> dict[str, Any]:
    node: dict[str, Any] = (await api.gql(ARCHITECTURE, {"id": file_id}, who and who.token))["node"]
    return node


def derived_values() -> list[bytes]:
    """Every listed value, and what the architecture derives from them alone (the
    suggestions are enum names, which the schema itself holds: the owner's view shows
    them, above)."""
    values = [v.encode() for v in PRIVATE.values()]
    return [*values, b"zq_conv_4417", b"locon", b"zq_pony_checkpoint"]


async def test_the_architecture_says_only_what_the_viewer_may_read(
    api: Api, clock: MutableClock, settings: Settings, ctx: dict[str, Any]
) -> None:
    # given alice's published file, its dataset private, its header holding every key
    # the instance lists
    alice, bob = await api.sign_up("alice"), await api.sign_up("bob")
    _, dataset_id, file_id = await version_with_file(api, alice, body=BODY)

    # then anybody but alice learns from the architecture only what the public keys say
    for who in (None, bob):
        view = await architecture(api, file_id, who)
        assert view["architecture"] == WHAT_THE_PUBLIC_KEYS_SAY
        assert metadata_of(view) == PUBLIC
        assert metadata_in(await download(api, file_id, who)) == PUBLIC
    # and alice learns what every key says, while the window is open
    mine = await architecture(api, file_id, alice)
    assert mine["architecture"] == WHAT_EVERY_KEY_SAYS
    assert metadata_of(mine) == {**PUBLIC, **PRIVATE}

    # and the database never held a listed value, nor anything derived from one
    for held in database_of(settings):
        assert [v for v in derived_values() if v in held] == []

    # when the window ends and the sweep erases the keys
    expires_at = at((await dataset_view(api, dataset_id, alice))["expiresAt"])
    clock.set(expires_at)
    assert (await architecture(api, file_id, alice))["architecture"] == WHAT_THE_PUBLIC_KEYS_SAY
    clock.advance(1)
    assert (await sweep(ctx)).get("headers_erased") == 1
    # then alice too learns only what the public keys say, and no byte of what the
    # listed keys said is left anywhere
    assert (await architecture(api, file_id, alice))["architecture"] == WHAT_THE_PUBLIC_KEYS_SAY
    for value in derived_values():
        holding = [
            p for p in settings.data_dir.rglob("*") if p.is_file() and value in p.read_bytes()
        ]
        assert holding == [], value
    for held in database_of(settings):
        assert [v for v in derived_values() if v in held] == []
    assert files_holding_secrets(settings) == {}


# Keys as people read them ------------------------------------------------------------

TAGS = json.dumps({"10_zq_variant_dir": {"zq_variant_tag_7710": 4}})
VARIANTS = {
    "SS_TAG_FREQUENCY": "zq_upper_7701 " + TAGS,
    "ss_dataset_dirs ": "zq_trailing_7702",
    "\tss_datasets": "zq_tab_7703",
    "ss_bucket_info\u200b": "zq_zero_width_7704",
    "ｓｓ＿ｒｅｇ＿ｄａｔａｓｅｔ＿ｄｉｒｓ": "zq_fullwidth_7705",
    "Modelspec.Title": "zq_listed_case_7706",
    "\u202eycneuqerf_gat_ss": "zq_bidi_7707",  # an invisible character: withheld whatever
    "my\u2060note": "zq_word_joiner_7708",  # it spells
}
VISIBLE = {
    "ss_network_dim": "8",
    "ss_tag frequency": "a different key",  # an inner space is visible
    "sstagfrequency": "so is a missing underscore",
}


async def test_keys_that_read_as_withheld_ones_are_withheld(api: Api, settings: Settings) -> None:
    # given alice's published file (its dataset private) whose header spells the
    # training-data keys in every way a person would still read as them
    alice = await api.sign_up("alice")
    body = make_safetensors({**VISIBLE, **VARIANTS}, TENSORS)
    _, _, file_id = await version_with_file(api, alice, body=body)

    # then anybody else sees, and downloads, only the keys that read differently
    anonymous = await file_view(api, file_id, None)
    assert metadata_of(anonymous) == VISIBLE
    public = await download(api, file_id, None)
    assert metadata_in(public) == VISIBLE
    for value in VARIANTS.values():
        assert value.encode() not in public
    # and alice is told which keys were withheld, as her file spells them, and sees them
    mine = await file_view(api, file_id, alice)
    assert mine["withheldKeys"] == sorted(VARIANTS)
    assert metadata_of(mine) == {**VISIBLE, **VARIANTS}
    assert await download(api, file_id, alice) == body
