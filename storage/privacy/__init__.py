"""The privacy rule (access) and the rule applied to every lookup (lookups)."""
