# The index the rollups read a day's interventions by, built concurrently. Non-atomic, and safe to
# run again after a failure part way through (see conductor.core.migration_ops).

from django.db import migrations, models

from conductor.core.migration_ops import drop_invalid


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('conductor', '0007_intervention_rollups'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(
                    drop_invalid('intervention_created_idx'), reverse_code=migrations.RunPython.noop
                ),
                migrations.RunSQL(
                    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "intervention_created_idx"'
                    ' ON "conductor_intervention" ("created_at")',
                    reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "intervention_created_idx"',
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name='intervention',
                    index=models.Index(fields=['created_at'], name='intervention_created_idx'),
                ),
            ],
        ),
    ]
