"""Query embeddings: the traced single-text path gives encode()'s vectors, cached in Redis."""
from __future__ import annotations

import numpy as np
import pytest

from knowledge import embeddings

TEXTS = [
    "refund",
    "How long does a refund take to reach my card?",
    "Ma télévision ne s'allume plus après la mise à jour — que faire ?",
    "word " * 400,  # past the model's 256 word pieces: truncated the same way
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_traced_encoder_gives_the_same_vector_as_encode(text):
    assert embeddings._traced_transformer() is not None, "the bundled model traces"
    expected = embeddings.encode([text])[0]
    got = embeddings.encode_one(text)
    assert got.shape == (384,) and got.dtype == np.float32
    assert float(got @ expected) > 0.99999


def test_a_model_that_cannot_be_traced_falls_back_to_encode(monkeypatch):
    def refuse(model):  # noqa: ANN001, ANN202
        raise RuntimeError("not traceable")

    embeddings._traced_transformer.cache_clear()
    monkeypatch.setattr(embeddings, "_trace", refuse)
    try:
        got = embeddings.encode_one(TEXTS[1])
        assert embeddings._traced_transformer() is None
        assert float(got @ embeddings.encode([TEXTS[1]])[0]) > 0.99999
    finally:
        embeddings._traced_transformer.cache_clear()  # later tests trace the real model again


def test_a_query_is_embedded_once_then_read_from_the_cache(monkeypatch):
    calls: list[str] = []
    real = embeddings.encode_one
    monkeypatch.setattr(embeddings, "encode_one", lambda text: calls.append(text) or real(text))
    first = embeddings.encode_query("Do gift cards expire?")
    second = embeddings.encode_query("Do gift cards expire?")
    assert calls == ["Do gift cards expire?"]
    assert np.array_equal(first, second)
