# Runs stopped by a person's rejection are counted apart from failures (a decision, not a fault).
# Rollups computed before keep them under `failed` until their day is refreshed again (beat does
# yesterday and today; older days: `manage.py refresh_agent_rollups --since DAY`).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0012_memory_embedding_model'),
    ]

    operations = [
        migrations.AddField(
            model_name='agentrollup',
            name='rejected',
            field=models.PositiveIntegerField(default=0, help_text='Runs that stopped because a person rejected a risky action.'),
        ),
        migrations.AlterField(
            model_name='agentrollup',
            name='failed',
            field=models.PositiveIntegerField(help_text='Failed runs, those a person rejected aside.'),
        ),
    ]
