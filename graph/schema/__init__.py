"""The GraphQL schema: query, mutation and subscription roots, types and mutations by noun, the
per-request context."""
