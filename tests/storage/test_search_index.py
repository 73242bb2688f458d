"""Catalogue search is served by its index on either backend (storage/search.py):
SQLite's FTS5 trigram table, PostgreSQL's pg_trgm GIN index; never a scan of the
models' text."""

from __future__ import annotations

from tortoise import connections
from tortoise.transactions import in_transaction

from storage import search
from storage.config.settings import Settings
from storage.db import connection as db
from storage.db.models import LoraModel
from tests.conftest import Api


async def plan(settings: Settings, query: str) -> str:
    sql = LoraModel.filter(search.matching(query)).only("id").sql(params_inline=True)
    if not db.is_postgres(settings.database_url):
        _, rows = await connections.get("default").execute_query(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row["detail"]) for row in rows)
    async with in_transaction() as connection:
        # a few rows make a scan cheapest; ask whether the index *can* serve the search
        await connection.execute_query("SET LOCAL enable_seqscan = off")
        _, rows = await connection.execute_query(f"EXPLAIN {sql}")
    return "\n".join(str(row["QUERY PLAN"]) for row in rows)


async def test_a_search_of_several_terms_is_served_by_the_trigram_index(
    api: Api, settings: Settings
) -> None:
    # given a few models
    alice = await api.sign_up("alice")
    for name in ("Cats", "Dogs", "Cat_100%"):
        await api.create_model(alice, name)
    # when the plan of a search with two terms (one with LIKE's wildcards) is asked for
    found = await plan(settings, "cat 100%")
    # then the trigram index answers it
    if db.is_postgres(settings.database_url):
        assert "model_search_trgm" in found, found
    else:
        assert "model_search VIRTUAL TABLE" in found, found
    # and the search finds exactly the model with both terms
    names = await LoraModel.filter(search.matching("cat 100%")).values_list("name", flat=True)
    assert names == ["Cat_100%"]
