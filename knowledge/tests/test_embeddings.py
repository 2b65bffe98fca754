"""Query embeddings: the ONNX Runtime single-text path gives encode()'s vectors, cached in Redis."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from knowledge import embeddings

TEXTS = [
    "refund",
    "How long does a refund take to reach my card?",
    "Ma télévision ne s'allume plus après la mise à jour — que faire ?",
    "refund " * 250 + "my television screen stays black " * 30,  # past 256 word pieces: truncated the same way
    "  \tWhere is my ORDER #1234?\n",  # stripped and lower-cased as the model's own tokenizer does
]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[bool, object]:
    """The query encoder exported both ways (8-bit or not), once for this module."""
    from django.test import override_settings

    sessions = {}
    for int8 in (False, True):
        with override_settings(VAR_DIR=tmp_path_factory.mktemp("onnx"), EMBEDDING_QUERY_INT8=int8):
            sessions[int8] = embeddings._session(embeddings._exported(embeddings.get_model()))
    return sessions


@pytest.mark.parametrize("int8, at_least", [(False, 0.99999), (True, 0.985)])
@pytest.mark.parametrize("text", TEXTS)
def test_the_onnx_encoder_gives_encodes_vector_the_8_bit_one_nearly(text, int8, at_least, encoders, monkeypatch):
    monkeypatch.setattr(embeddings, "_query_session", lambda: encoders[int8])
    expected = embeddings.encode([text])[0]
    got = embeddings.encode_one(text)
    assert got.shape == (384,) and got.dtype == np.float32
    assert float(got @ expected) > at_least


def _operators(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_questions_use_the_8_bit_encoder_by_default(settings, tmp_path):
    assert embeddings._query_session() is not None, "the bundled model exports and runs in ONNX Runtime"
    settings.VAR_DIR = tmp_path
    int8 = embeddings._exported(embeddings.get_model())
    settings.EMBEDDING_QUERY_INT8 = False
    full = embeddings._exported(embeddings.get_model())
    assert int8.name.endswith("-int8.onnx") and int8 != full
    assert "MatMulInteger" in _operators(int8) and "MatMulInteger" not in _operators(full)


def test_a_model_with_another_head_is_pooled_by_its_own_modules(monkeypatch, encoders):
    monkeypatch.setattr(embeddings, "_query_session", lambda: encoders[False])
    monkeypatch.setattr(embeddings, "_mean_pooled", lambda model: False)
    for text in TEXTS[:2]:
        assert float(embeddings.encode_one(text) @ embeddings.encode([text])[0]) > 0.99999


def test_the_export_is_written_once_and_reused(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    exports: list[object] = []
    real = embeddings._export
    monkeypatch.setattr(embeddings, "_export", lambda model, path: exports.append(path) or real(model, path))
    first = embeddings._exported(embeddings.get_model())
    second = embeddings._exported(embeddings.get_model())
    assert first == second and first.stat().st_size > 1_000_000
    assert len(exports) == 1
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [first.name]  # no partial file left behind


def test_a_damaged_export_is_exported_again(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    path = embeddings._exported(embeddings.get_model())
    path.write_bytes(b"half a file")

    embeddings._cached_session.cache_clear()
    try:
        session = embeddings._cached_session(embeddings.get_model())
    finally:
        embeddings._cached_session.cache_clear()  # later tests build the session from the usual VAR_DIR

    assert session is not None and path.stat().st_size > 1_000_000 and session.get_inputs()[0].name == "input_ids"


def test_first_callers_at_once_export_once_and_share_the_session(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    exports: list[object] = []
    real = embeddings._export
    monkeypatch.setattr(embeddings, "_export", lambda model, path: exports.append(path) or real(model, path))
    embeddings._cached_session.cache_clear()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            sessions = list(pool.map(lambda _: embeddings._query_session(), range(4)))
    finally:
        embeddings._cached_session.cache_clear()
    assert len(exports) == 1
    assert sessions[0] is not None and all(s is sessions[0] for s in sessions)


def test_a_model_that_cannot_be_exported_falls_back_to_encode(monkeypatch):
    def refuse(model, path):  # noqa: ANN001, ANN202
        raise RuntimeError("not exportable")

    embeddings._cached_session.cache_clear()
    monkeypatch.setattr(embeddings, "_export", refuse)
    monkeypatch.setattr(embeddings, "_model_fingerprint", lambda: "not-exported-yet")
    try:
        got = embeddings.encode_one(TEXTS[1])
        assert embeddings._query_session() is None
        assert float(got @ embeddings.encode([TEXTS[1]])[0]) > 0.99999
    finally:
        embeddings._cached_session.cache_clear()  # later tests build the real session again


def test_a_query_is_embedded_once_then_read_from_the_cache(monkeypatch):
    calls: list[str] = []
    real = embeddings.encode_one
    monkeypatch.setattr(embeddings, "encode_one", lambda text: calls.append(text) or real(text))
    first = embeddings.encode_query("Do gift cards expire?")
    second = embeddings.encode_query("Do gift cards expire?")
    assert calls == ["Do gift cards expire?"]
    assert np.array_equal(first, second)


def test_switching_the_8_bit_encoder_off_does_not_read_its_cached_vectors(monkeypatch, settings):
    calls: list[bool] = []
    real = embeddings.encode_one
    monkeypatch.setattr(embeddings, "encode_one", lambda text: calls.append(settings.EMBEDDING_QUERY_INT8)
                        or real(text))
    embeddings.encode_query("Can I pay with a gift card?")
    settings.EMBEDDING_QUERY_INT8 = not settings.EMBEDDING_QUERY_INT8
    embeddings.encode_query("Can I pay with a gift card?")
    assert len(calls) == 2 and calls[0] != calls[1]


def test_quantising_the_export_keeps_the_quantizers_chatter_out_of_the_logs(settings, tmp_path, caplog):
    import logging

    settings.VAR_DIR = tmp_path
    with caplog.at_level(logging.DEBUG):
        embeddings._exported(embeddings.get_model())
    assert [r.getMessage() for r in caplog.records if "quantization" in r.pathname] == []
    assert logging.getLogger().filters == [], "the filter is gone once the export is written"


def test_query_vectors_are_cached_in_this_process_not_in_redis(monkeypatch):
    from django.core.cache import caches

    embeddings.encode_query("Where is my parcel?")
    assert not caches["default"].keys("qemb*"), "a Redis read would be a round trip on every question"
    caches["local"].clear()
    calls: list[str] = []
    real = embeddings.encode_one
    monkeypatch.setattr(embeddings, "encode_one", lambda text: calls.append(text) or real(text))
    embeddings.encode_query("Where is my parcel?")
    assert calls == ["Where is my parcel?"], "the process-local cache was what held the vector"
