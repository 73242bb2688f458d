"""Pure parsers of what users upload (no database, no I/O): safetensors headers, zip archives."""
