"""Write sample files for the README walk-through: a small LoRA-shaped safetensors file
with kohya-style metadata (training-data keys included) and a zip of captions.

Standard library only: ``python3 scripts/samples.py [directory]`` writes
``cats.safetensors`` and ``cats.zip`` there (default: the current directory).
"""

from __future__ import annotations

import argparse
import json
import struct
import zipfile
from pathlib import Path

TENSORS = {  # name -> (rows, columns): float16 LoRA down/up pairs, as kohya names them
    "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": (4, 64),
    "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": (64, 4),
    "lora_unet_mid_block_attentions_0_proj_in.alpha": (),
}

METADATA = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "4",
    "ss_network_alpha": "2.0",
    "ss_base_model_version": "sdxl_base_v1-0",
    "ss_output_name": "cats",
    # What kohya records about the training images: lorashelf withholds these.
    "ss_tag_frequency": json.dumps({"10_cats": {"cat": 12, "whiskers": 7, "garden": 3}}),
    "ss_dataset_dirs": json.dumps({"10_cats": {"n_repeats": 10, "img_count": 12}}),
}


def safetensors_bytes() -> bytes:
    header: dict[str, object] = {"__metadata__": METADATA}
    data = bytearray()
    for name, shape in TENSORS.items():
        count = 1
        for dim in shape:
            count *= dim
        start = len(data)
        data += struct.pack(f"<{count}e", *[(i % 7) / 8 for i in range(count)])
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [start, len(data)]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


def zip_bytes(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(1, 4):
            archive.writestr(f"10_cats/cat{i}.txt", "cat, whiskers, garden")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Write cats.safetensors (a small LoRA with kohya-style metadata, "
        "training-data keys included) and cats.zip (captions) for the README walk-through."
    )
    parser.add_argument(
        "directory", nargs="?", default=".", help="where to write them (default: here)"
    )
    out = Path(parser.parse_args().directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cats.safetensors").write_bytes(safetensors_bytes())
    zip_bytes(out / "cats.zip")
    print(f"wrote {out / 'cats.safetensors'} and {out / 'cats.zip'}")


if __name__ == "__main__":
    main()
