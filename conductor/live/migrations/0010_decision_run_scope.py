# Decision runs belong to their session's event (agents.scopes), so every organizer of the event
# sees them. Runs stored before carry the session in their input only.

from django.db import migrations

BACKFILL = """
UPDATE agents_agentrun AS run
SET scope_kind = 'event', scope_id = session.event_id
FROM conductor_livesession AS session
WHERE run.agent = 'engagement' AND run.scope_kind = ''
    AND jsonb_typeof(run.input -> 'session_id') = 'number'
    AND session.id = (run.input ->> 'session_id')::bigint
"""


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0008_run_scope'),
        ('conductor', '0009_conductor_loop'),
    ]

    operations = [
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
