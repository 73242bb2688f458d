"""The form of the API's global IDs, declared here so that what storage writes for a
user to keep (a deletion receipt, a data export) names objects as the API does:
a type prefix, ``_``, and the row's random public id. Decoding is the API's
(``graph/schema/ids.py``)."""

from __future__ import annotations

PREFIX = {
    "User": "u",
    "Model": "m",
    "ModelVersion": "v",
    "TrainingDataset": "d",
    "ModelFile": "f",
    "Notification": "n",
    "DataExport": "x",
    "Report": "r",  # not Nodes: reached through their lists and payloads
    "AuditEntry": "a",
}


def encode(type_name: str, public_id: str | None) -> str:
    """The global ID of a row (every row gets a public id when it is created)."""
    if public_id is None:
        raise ValueError(f"a {type_name} without a public id")
    return f"{PREFIX[type_name]}_{public_id}"
