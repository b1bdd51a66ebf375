# The index the rollups read finished runs by, built concurrently: agents_agentrun is written by
# every run. Non-atomic, and safe to run again after a failure part way through (an INVALID index
# a failed build left behind is dropped first; IF NOT EXISTS / IF EXISTS otherwise).

from django.db import migrations, models

from conductor.core.migration_ops import drop_invalid


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('agents', '0006_agent_rollups'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(
                    drop_invalid('run_finished_idx'), reverse_code=migrations.RunPython.noop
                ),
                migrations.RunSQL(
                    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "run_finished_idx"'
                    ' ON "agents_agentrun" ("finished_at") WHERE "finished_at" IS NOT NULL',
                    reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "run_finished_idx"',
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name='agentrun',
                    index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['finished_at'], name='run_finished_idx'),
                ),
            ],
        ),
    ]
