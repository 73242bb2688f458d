"""Mutations, one module per noun, all declared with payload_mutation (payload)."""
