# The index shared runs are found by, built concurrently: agents_agentrun is written by every run.
# Non-atomic, and safe to run again after a failure part way through (see 0007).

from django.db import migrations, models

from conductor.core.migration_ops import drop_invalid


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('agents', '0008_run_scope'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(
                    drop_invalid('run_scope_idx'), reverse_code=migrations.RunPython.noop
                ),
                migrations.RunSQL(
                    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "run_scope_idx"'
                    ' ON "agents_agentrun" ("scope_kind", "scope_id")'
                    ' WHERE "scope_id" IS NOT NULL',
                    reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "run_scope_idx"',
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name='agentrun',
                    index=models.Index(condition=models.Q(('scope_id__isnull', False)), fields=['scope_kind', 'scope_id'], name='run_scope_idx'),
                ),
            ],
        ),
    ]
