# The presence indexes of conductor_signal (large and written all the time), built and dropped
# concurrently. Non-atomic, and safe to run again after a failure part way through:
# - CREATE INDEX CONCURRENTLY IF NOT EXISTS / DROP INDEX CONCURRENTLY IF EXISTS, so databases
#   that applied the former 0005 (which built these indexes itself) run this as a no-op;
# - a CONCURRENTLY build that failed leaves an INVALID index behind, which IF NOT EXISTS would
#   keep: such an index is dropped (concurrently) first.
# The model state gets the ordinary AddIndex/RemoveIndex, so Meta.indexes still matches.

from django.db import migrations, models

from conductor.core.migration_ops import drop_invalid

PRESENCE = models.Q(('type__in', ['join', 'leave']))


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('conductor', '0005_presence_checkpoint'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                # Forwards only: before the indexes are created.
                migrations.RunPython(
                    drop_invalid('signal_presence_idx', 'signal_presence_received_idx'),
                    reverse_code=migrations.RunPython.noop,
                ),
                migrations.RunSQL(
                    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "signal_presence_idx" ON "conductor_signal"'
                    ' ("session_id", "attendee", "at") INCLUDE ("id", "type", "received_at")'
                    " WHERE \"type\" IN ('join', 'leave')",
                    reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "signal_presence_idx"',
                ),
                migrations.RunSQL(
                    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "signal_presence_received_idx"'
                    ' ON "conductor_signal" ("session_id", "received_at")'
                    " WHERE \"type\" IN ('join', 'leave')",
                    reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "signal_presence_received_idx"',
                ),
                migrations.RunSQL(
                    'DROP INDEX CONCURRENTLY IF EXISTS "signal_attendee_idx"',
                    reverse_sql='CREATE INDEX CONCURRENTLY IF NOT EXISTS "signal_attendee_idx"'
                    ' ON "conductor_signal" ("session_id", "attendee", "at")',
                ),
                # Backwards only (operations run in reverse order): before signal_attendee_idx
                # is created again.
                migrations.RunPython(
                    migrations.RunPython.noop,
                    reverse_code=drop_invalid('signal_attendee_idx'),
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name='signal',
                    index=models.Index(condition=PRESENCE, fields=['session', 'attendee', 'at'], include=('id', 'type', 'received_at'), name='signal_presence_idx'),
                ),
                migrations.AddIndex(
                    model_name='signal',
                    index=models.Index(condition=PRESENCE, fields=['session', 'received_at'], name='signal_presence_received_idx'),
                ),
                migrations.RemoveIndex(
                    model_name='signal',
                    name='signal_attendee_idx',
                ),
            ],
        ),
    ]
