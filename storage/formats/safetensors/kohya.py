"""What kohya's sd-scripts (and LyCORIS, modelspec) record in a file's metadata about
how it was trained, read leniently: odd values become ``None``, nothing raises. The
suggestions are in the catalogue's own terms (the stored enums), to pre-fill a version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.db.enums import BaseModel, LoraType


@dataclass(frozen=True)
class Architecture:
    """What the metadata says about how the file was trained; ``None`` when it says
    nothing usable. Built by :func:`architecture_of`, which never raises."""

    network_module: str | None = None
    """``ss_network_module``, e.g. ``networks.lora`` or ``lycoris.kohya``."""
    network_dim: int | None = None
    """``ss_network_dim``: the rank, a positive integer."""
    network_alpha: float | None = None
    """``ss_network_alpha``, a finite number."""
    base_model_version: str | None = None
    """``ss_base_model_version``, e.g. ``sd_v1``, ``sdxl_base_v1-0``, ``flux1``."""
    modelspec_architecture: str | None = None
    """``modelspec.architecture``, e.g. ``stable-diffusion-xl-v1-base/lora``."""
    modelspec_title: str | None = None
    """``modelspec.title``: the title of this model (not of its base)."""
    sd_model_name: str | None = None
    """``ss_sd_model_name``: the file name or id of the base checkpoint."""
    algo: str | None = None
    """``algo`` of ``ss_network_args`` (LyCORIS: ``locon``, ``lora``, ``loha``...),
    lowercased."""
    dora_wd: bool | None = None
    """``dora_wd`` of ``ss_network_args``: whether DoRA weight decomposition was on."""


# Longer values are not what these fields hold: treat them as garbage.
_MAX_FIELD = 256
_INT = re.compile(r"[+]?\d{1,9}(?:\.0*)?")
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_FIELD or value.lower() in ("none", "null"):
        return None
    return value


def _positive_int(value: object) -> int | None:
    text = _text(value)
    if text is None or not _INT.fullmatch(text):
        return None
    number = int(text.split(".")[0])
    return number if number > 0 else None


def _finite_float(value: object) -> float | None:
    text = _text(value)
    if text is None or not _FLOAT.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _network_args(value: object) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        args = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return args if isinstance(args, dict) else {}


def architecture_of(metadata: Mapping[str, str]) -> Architecture:
    """Read the training settings from a file's metadata; odd values become ``None``."""
    args = _network_args(metadata.get("ss_network_args"))
    algo = _text(args.get("algo"))
    return Architecture(
        network_module=_text(metadata.get("ss_network_module")),
        network_dim=_positive_int(metadata.get("ss_network_dim")),
        network_alpha=_finite_float(metadata.get("ss_network_alpha")),
        base_model_version=_text(metadata.get("ss_base_model_version")),
        modelspec_architecture=_text(metadata.get("modelspec.architecture")),
        modelspec_title=_text(metadata.get("modelspec.title")),
        sd_model_name=_text(metadata.get("ss_sd_model_name")),
        algo=algo.lower() if algo else None,
        dora_wd=_flag(args.get("dora_wd")),
    )


def _base_from_modelspec(architecture: str) -> BaseModel | None:
    """The family a ``modelspec.architecture`` names; ``OTHER`` for a known family outside
    the catalog, ``None`` for one not recognized (or a FLUX.1 of unknown kind)."""
    # "stable-diffusion-xl-v1-base/lora" -> "stable-diffusion-xl-v1-base"
    arch = architecture.lower().split("/", 1)[0].strip()
    if arch.startswith("stable-diffusion-v1"):
        return BaseModel.SD_1_5
    if arch.startswith("stable-diffusion-v2"):
        return BaseModel.SD_2_1
    if arch.startswith("stable-diffusion-xl"):
        return BaseModel.SDXL_1_0
    if arch.startswith(("stable-diffusion-3-5", "stable-diffusion-3.5", "stable-diffusion-v3-5")):
        return BaseModel.SD_3_5
    if arch == "flux-1-dev":
        return BaseModel.FLUX_1_D
    if arch == "flux-1-schnell":
        return BaseModel.FLUX_1_S
    if arch.startswith(("stable-diffusion-3", "chroma", "lumina", "flux-2")):
        return BaseModel.OTHER  # SD 3.0, Chroma, Lumina, FLUX.2: not in the catalog
    return None


def _base_from_version(version: str) -> BaseModel | None:
    """The family an ``ss_base_model_version`` names, ``None`` when not recognized."""
    version = version.lower()
    if version.startswith("sd_v1"):
        return BaseModel.SD_1_5
    if version.startswith("sd_v2"):
        return BaseModel.SD_2_1
    if version.startswith("sdxl"):
        return BaseModel.SDXL_1_0
    if version.startswith("sd3"):
        return BaseModel.SD_3_5  # SD 3.0 LoRAs are rare; modelspec, when present, tells them apart
    if version == "flux1":
        return BaseModel.FLUX_1_D  # nearly all FLUX.1 LoRAs; modelspec, when present, says schnell
    return None


def _sdxl_variant(arch: Architecture) -> BaseModel:
    """Pony or Illustrious when the metadata names one of them, else plain SDXL.

    The base checkpoint's name decides when it is recorded; the title (the name of the
    LoRA itself, a weaker hint) only when it is not. A name mentioning both is plain SDXL.
    """
    source = arch.sd_model_name if arch.sd_model_name is not None else arch.modelspec_title
    lowered = (source or "").lower()
    pony, illustrious = "pony" in lowered, "illustrious" in lowered
    if pony and not illustrious:
        return BaseModel.PONY
    if illustrious and not pony:
        return BaseModel.ILLUSTRIOUS
    return BaseModel.SDXL_1_0


def suggest_base_model(arch: Architecture) -> BaseModel | None:
    """The base model the file was most likely trained on, or ``None`` if unknown.

    ``modelspec.architecture`` decides when it names a family it knows (a family outside
    the catalog, such as SD 3.0 or Chroma, gives ``OTHER``), else
    ``ss_base_model_version``; either being present but not recognized gives ``OTHER``.
    Only within SDXL are Pony and Illustrious told apart, by name (see ``_sdxl_variant``).
    """
    family = None
    if arch.modelspec_architecture is not None:
        family = _base_from_modelspec(arch.modelspec_architecture)
    if family is None and arch.base_model_version is not None:
        family = _base_from_version(arch.base_model_version)
    if family == BaseModel.SDXL_1_0:
        return _sdxl_variant(arch)
    if family is None and (arch.modelspec_architecture or arch.base_model_version):
        return BaseModel.OTHER
    return family


def suggest_type(arch: Architecture) -> LoraType:
    """``DORA`` when DoRA weight decomposition was on, ``LOCON`` for a LyCORIS network
    with algo ``locon``, else ``LORA``."""
    if arch.dora_wd is True:
        return LoraType.DORA
    module = (arch.network_module or "").lower()
    if module.startswith("lycoris") and arch.algo == "locon":
        return LoraType.LOCON
    return LoraType.LORA
