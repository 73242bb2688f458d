"""Data for the bench, through the real API (behaviour) or in bulk through SQL.

- :func:`front_page`: users, published models with one version, a weights file and a
  training dataset each, all through GraphQL and the upload URLs of a running
  ``lorashelf serve`` (what the catalogue shows is exactly what the app made).
- The bulk tables (sweep scaling, the 100k-model catalogue) are written by
  ``bench/bulk.py`` with ``executemany`` into a database migrated by the app itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
from common import PASSWORD, Api

from tests.conftest import make_safetensors, make_zip

SIGN_UP = (
    "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } "
    "userErrors { field code message } } }"
)
CREATE_MODEL = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { id } userErrors { field code message } } }"
)
CREATE_VERSION = (
    "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
    "{ version { id } userErrors { field code message } } }"
)
START_FILE = (
    "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
    "{ file { id } uploadUrl userErrors { field code message } } }"
)
START_DATASET = (
    "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
    "{ dataset { id } uploadUrl userErrors { field code message } } }"
)
PUBLISH = (
    "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
    "{ version { id status } userErrors { field code message } } }"
)

# kohya-style metadata with the training-data keys lorashelf withholds: a file's public
# sha256/sizeBytes then depend on whether its version's dataset is public.
KOHYA = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "4",
    "ss_network_alpha": "2.0",
    "ss_base_model_version": "sdxl_base_v1-0",
    "ss_tag_frequency": json.dumps({"10_cats": {"cat": 12, "whiskers": 7}}),
    "ss_dataset_dirs": json.dumps({"10_cats": {"n_repeats": 10, "img_count": 12}}),
}
BASE_MODELS = ["SDXL_1_0", "SD_1_5", "PONY", "FLUX_1_D", "ILLUSTRIOUS"]


@dataclass
class FrontPageData:
    users: list[str] = field(default_factory=list)  # tokens
    models: list[str] = field(default_factory=list)  # global ids, in creation order
    public_datasets: int = 0
    private_datasets: int = 0


def put(http: httpx.Client, url: str, body: bytes) -> None:
    response = http.put(url, content=body)
    if response.status_code != 200:
        raise RuntimeError(f"upload PUT {response.status_code}: {response.text[:300]}")


def front_page(url: str, *, models: int = 60, users: int = 6) -> FrontPageData:
    """``models`` published models spread over ``users`` owners; each has one version
    (with trained words), a weights file with kohya metadata and a zip dataset. Every
    third dataset is PRIVATE (anonymous readers get ``trainingDataset: null`` and the
    public header of the weights file); the rest are PUBLIC."""
    data = FrontPageData()
    with httpx.Client(timeout=60.0) as http:
        apis: list[Api] = []
        for u in range(users):
            api = Api(http, url)
            payload = api.mutate(
                "signUp", SIGN_UP, {"i": {"username": f"creator{u}", "password": PASSWORD}}
            )
            api.token = payload["token"]
            data.users.append(payload["token"])
            apis.append(api)
        weights = make_safetensors(metadata=KOHYA)
        for i in range(models):
            api = apis[i % users]
            model = api.mutate(
                "createModel",
                CREATE_MODEL,
                {
                    "i": {
                        "name": f"Model {i:03d} cats and gardens",
                        "description": f"A LoRA that draws cats in gardens, number {i}.",
                        "tags": ["cats", "animals", f"set{i % 7}"],
                    }
                },
            )["model"]["id"]
            version = api.mutate(
                "createModelVersion",
                CREATE_VERSION,
                {
                    "i": {
                        "modelId": model,
                        "name": "v1",
                        "baseModel": BASE_MODELS[i % len(BASE_MODELS)],
                        "trainedWords": ["catstyle", f"cat{i}"],
                    }
                },
            )["version"]["id"]
            started = api.mutate(
                "startModelFileUpload",
                START_FILE,
                {
                    "i": {
                        "versionId": version,
                        "filename": f"model{i:03d}.safetensors",
                        "sizeBytes": len(weights),
                    }
                },
            )
            put(http, started["uploadUrl"], weights)
            private = i % 3 == 2
            archive = make_zip({f"images/cat{i}.txt": b"cat, whiskers, garden " * (10 + i)})
            dataset = {
                "versionId": version,
                "filename": f"cats{i:03d}.zip",
                "sizeBytes": len(archive),
                "visibility": "PRIVATE" if private else "PUBLIC",
            }
            if not private:
                dataset["ownsRights"] = True
            started = api.mutate("startDatasetUpload", START_DATASET, {"i": dataset})
            put(http, started["uploadUrl"], archive)
            api.mutate("publishModelVersion", PUBLISH, {"i": {"versionId": version}})
            data.models.append(model)
            if private:
                data.private_datasets += 1
            else:
                data.public_datasets += 1
    return data
