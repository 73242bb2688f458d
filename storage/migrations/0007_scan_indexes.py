from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_foreign_key_indexes')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='DatasetEvent',
            index=Index(fields=['dataset_id', 'kind', 'id'], name='event_dataset_kind'),
        ),
        ops.AddIndex(
            model_name='ModelVersion',
            index=Index(fields=['base_model', 'model_id'], name='base_model_versions'),
        ),
    ]
