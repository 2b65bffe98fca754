"""Migrations create the vector extension and the search indexes."""
from django.db import connection


def index_definitions(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


def test_the_vector_extension_is_installed(db) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None


def test_chunks_have_an_hnsw_cosine_index_and_postings_a_covering_lexeme_index(db) -> None:
    assert "USING hnsw (embedding vector_cosine_ops)" in index_definitions("knowledge_chunk")["chunk_embedding_hnsw"]
    postings = index_definitions("knowledge_posting")
    assert "(lexeme) INCLUDE (chunk_id, document_id, tf, length)" in postings["posting_lexeme_cover"]
    assert any("PRIMARY KEY" in d or "(chunk_id, lexeme)" in d for d in postings.values())


def test_the_embedding_column_has_384_dimensions(db) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'knowledge_chunk'::regclass AND attname = 'embedding'"
        )
        assert cursor.fetchone()[0] == "vector(384)"


def test_document_content_hash_and_message_client_id_are_unique(db) -> None:
    assert any("content_hash" in d and "UNIQUE" in d for d in index_definitions("knowledge_document").values())
    assert "message_client_id_unique_per_session" in index_definitions("conversations_message")


def test_no_model_change_is_missing_a_migration(db) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
