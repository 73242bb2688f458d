from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_faults')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PublicGeneration',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('value', fields.BigIntField(default=0)),
            ],
            options={'table': 'public_generation', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A counter that goes up with every write that can change what anonymous viewers'},
            bases=['Model'],
        ),
    ]
