# Each memory records the model and dimensions of its embedding. Rows from before were embedded
# by feature hashing of their words (agents.memory until then): they are marked so, recall skips
# them, and `manage.py reembed` computes them again with the current model.
#
# Vectors are stored in half precision (halfvec), and indexed by one HNSW graph per bucket of
# organizers (agents.models.MEMORY_BUCKETS) instead of one for the whole table. The bucket follows
# from the organizer; the statistics say so, or the planner would take `bucket = b AND
# organizer_id = o` for 16 times rarer than `organizer_id = o` and misjudge which plan is cheaper.

import django.db.models.expressions
import pgvector.django.halfvec
import pgvector.django.indexes
from django.db import migrations, models

BUCKETS = 16


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0011_llm_budget_alert"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="memoryitem", name="memory_embedding_hnsw"),
        migrations.AlterField(
            model_name="memoryitem",
            name="embedding",
            field=pgvector.django.halfvec.HalfVectorField(dimensions=256),
        ),
        migrations.AddField(
            model_name="memoryitem",
            name="embedding_model",
            field=models.CharField(
                default="feature-hash/blake2b",
                help_text="The model that computed the embedding.",
                max_length=200,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="memoryitem",
            name="embedding_dimensions",
            field=models.PositiveSmallIntegerField(default=256),
        ),
        migrations.AddField(
            model_name="memoryitem",
            name="bucket",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.expressions.CombinedExpression(
                    models.F("organizer_id"), "%%", models.Value(BUCKETS)
                ),
                help_text="Which HNSW index holds the row: the organizer's id modulo "
                "MEMORY_BUCKETS.",
                output_field=models.PositiveSmallIntegerField(),
            ),
        ),
        *(
            migrations.AddIndex(
                model_name="memoryitem",
                index=pgvector.django.indexes.HnswIndex(
                    condition=models.Q(bucket=bucket),
                    ef_construction=64,
                    fields=["embedding"],
                    m=16,
                    name=f"memory_embedding_hnsw_{bucket}",
                    opclasses=["halfvec_cosine_ops"],
                ),
            )
            for bucket in range(BUCKETS)
        ),
        migrations.RunSQL(
            "CREATE STATISTICS memory_bucket_of_organizer (dependencies)"
            " ON organizer_id, bucket FROM agents_memoryitem",
            "DROP STATISTICS memory_bucket_of_organizer",
        ),
    ]
