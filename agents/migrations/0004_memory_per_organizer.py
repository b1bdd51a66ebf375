# Memory becomes the organizer's own. Nothing wrote memory before this migration, so rows without
# an organizer (none expected) are dropped rather than guessed.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def forget_unowned(apps, schema_editor):
    apps.get_model("agents", "MemoryItem").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0003_run_resumes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(forget_unowned, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="memoryitem", name="memory_agent_key_idx"),
        migrations.AddField(
            model_name="memoryitem",
            name="organizer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memories",
                to=settings.AUTH_USER_MODEL,
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="memoryitem",
            name="key",
            field=models.CharField(help_text="What was learned; unique per organizer and agent.", max_length=200),
        ),
        migrations.AddConstraint(
            model_name="memoryitem",
            constraint=models.UniqueConstraint(
                fields=("organizer", "agent", "key"), name="memory_organizer_agent_key"
            ),
        ),
    ]
