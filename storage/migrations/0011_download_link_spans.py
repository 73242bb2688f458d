"""Download links remember the bytes they served (spans of the file, and its size), so
a link counts a download when the distinct ranges it served cover the whole file;
``from_start`` (it served byte 0), which let two one-byte requests count, goes.
Rows are kept (links live an hour; their new columns start empty)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0010_erasure')]

    initial = False

    operations = [
        ops.AddField(
            model_name='DownloadLink',
            name='size',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='DownloadLink',
            name='spans',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.RemoveField(model_name='DownloadLink', name='from_start'),
    ]
