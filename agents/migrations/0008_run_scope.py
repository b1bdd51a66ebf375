# What a run belongs to when several organizers share it (agents.scopes). Both columns start
# empty, so adding them rewrites nothing; the check is added NOT VALID and then validated, which
# does not block the writes of running agents while it reads the table.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_run_finished_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='agentrun',
            name='scope_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='agentrun',
            name='scope_kind',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'ALTER TABLE "agents_agentrun" ADD CONSTRAINT "run_scope_kind_and_id" CHECK'
                    ' (("scope_id" IS NULL AND "scope_kind" = \'\')'
                    ' OR ("scope_kind" <> \'\' AND "scope_id" IS NOT NULL)) NOT VALID',
                    reverse_sql='ALTER TABLE "agents_agentrun" DROP CONSTRAINT "run_scope_kind_and_id"',
                ),
                migrations.RunSQL(
                    'ALTER TABLE "agents_agentrun" VALIDATE CONSTRAINT "run_scope_kind_and_id"',
                    reverse_sql=migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name='agentrun',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('scope_id__isnull', True), ('scope_kind', '')), models.Q(models.Q(('scope_kind', ''), _negated=True), ('scope_id__isnull', False)), _connector='OR'), name='run_scope_kind_and_id'),
                ),
            ],
        ),
    ]
