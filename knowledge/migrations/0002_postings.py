import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('knowledge', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Posting',
            fields=[
                ('pk', models.CompositePrimaryKey('chunk', 'lexeme', blank=True, editable=False, primary_key=True, serialize=False)),
                ('lexeme', models.TextField(db_collation='C')),
                ('tf', models.FloatField(help_text='Occurrences; a title/heading occurrence counts TITLE_TF_WEIGHT')),
                ('length', models.PositiveIntegerField(help_text="The chunk's token count")),
                ('chunk', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='knowledge.chunk')),
                ('document', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='knowledge.document')),
            ],
            options={
                'indexes': [models.Index(fields=['lexeme'], include=('chunk', 'document', 'tf', 'length'), name='posting_lexeme_cover')],
            },
        ),
        # Existing chunks get their postings (a title/heading occurrence counts 1, as in retrieval).
        migrations.RunSQL(
            """
            INSERT INTO knowledge_posting (chunk_id, lexeme, document_id, tf, length)
            SELECT c.id, u.lexeme, c.document_id, greatest(coalesce(cardinality(u.positions), 1), 1),
                   greatest(c.token_count, 1)
            FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS u
            WHERE c.search_vector IS NOT NULL
            """,
            migrations.RunSQL.noop,
        ),
    ]
