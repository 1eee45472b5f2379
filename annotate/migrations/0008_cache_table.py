from django.conf import settings
from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations


def create_cache_table(apps, schema_editor):
    """The database cache's table (config/settings.py CACHES), created whichever cache is configured now,
    so that switching a deployment to the database cache later needs no extra command."""
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, settings.CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(settings.CACHE_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("annotate", "0007_gold_uncapped_and_audit")]

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
