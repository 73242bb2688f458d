"""The database: models and enums, the connection (SQLite or PostgreSQL), keyset pages, the public
generation."""
