"""Configuration: the variables (one table), their value formats, the settings built from them, the
docs/configuration.md tables."""
