"""The safetensors format: the header rules (header), streaming validation and hashes
(stream), and what kohya's metadata says about training (kohya)."""
