"""Zip archives (training datasets): refused unless sound, checked without extracting
(check), the directory first (directory), then every entry inflated (inflation)."""
