from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_public_ids')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ClockMark',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'clock_marks', 'app': 'models', 'pk_attr': 'name', 'table_description': 'The latest instant any process has seen (storage.clock): time as lorashelf sees'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ModelFile',
            name='claimed_by',
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='claimed_by',
            field=fields.CharField(null=True, max_length=128),
        ),
    ]
