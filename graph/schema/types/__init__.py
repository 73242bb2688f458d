"""GraphQL object types, one module per noun."""
