"""Repairs what a database of an earlier main has differently from a new one (found by
looking, never assumed).

Migration 0002 was edited after mains had applied it. Mains cff14d2 and df2c914 made a
``counted_downloads`` table where 0002 now makes ``download_links``: such a database
gets ``download_links`` exactly as 0002 makes it, and ``counted_downloads`` is dropped
(it only remembered, for an hour, which download links had their full download
counted). The other edit of 0001 and 0002 (indexes that named a field, not its column)
is repaired by 0006 on every database.

Cheap on any database: two catalogue lookups; at most one empty table created.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

from ._operations import table_exists


async def repair(apps, schema_editor):
    client = schema_editor.client
    if not await table_exists(client, "counted_downloads"):
        return
    if not await table_exists(client, "download_links"):
        await schema_editor.create_model(apps.get_model("models.DownloadLink"))
    await client.execute_query('DROP TABLE "counted_downloads"')


class Migration(migrations.Migration):
    dependencies = [('models', '0007_scan_indexes')]

    initial = False

    operations = [
        ops.RunPython(repair),
    ]
