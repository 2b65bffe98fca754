"""The sentence-transformers model, loaded once per process from a local folder."""
from __future__ import annotations

import hashlib
import logging
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.cache import cache

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
_lock = threading.Lock()
_model: SentenceTransformer | None = None
_load_error: str = ""
QUERY_CACHE_TTL_S = 24 * 3600


def get_model() -> SentenceTransformer:
    """Load the model on first use; later calls return the same instance."""
    global _model, _load_error
    if _model is None:
        with _lock:
            if _model is None:
                try:
                    _model = _load()
                except Exception as error:
                    _load_error = f"{type(error).__name__}: {error}"
                    raise
    return _model


def _load() -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    if settings.EMBEDDING_THREADS:
        import torch

        torch.set_num_threads(settings.EMBEDDING_THREADS)
    model = SentenceTransformer(settings.EMBEDDING_MODEL, device="cpu", local_files_only=True)
    model.max_seq_length = 256
    dims = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
    if dims != settings.EMBEDDING_DIMENSIONS:
        raise ValueError(f"EMBEDDING_MODEL gives {dims} dimensions; the schema expects {settings.EMBEDDING_DIMENSIONS}")
    log.info("embedding model loaded", extra={"path": settings.EMBEDDING_MODEL})
    return model


def warm_up_in_background() -> None:
    """Web processes load the model off the request path so the first query is fast."""
    threading.Thread(target=_safe_load, name="embedding-warmup", daemon=True).start()


def _safe_load() -> None:
    try:
        get_model()
    except Exception:
        log.exception("embedding model failed to load")


def model_status() -> tuple[bool, str]:
    if _model is not None:
        return True, f"loaded ({settings.EMBEDDING_DIMENSIONS} dims)"
    if _load_error:
        return False, _load_error
    return False, "loading"


def encode(texts: list[str], batch_size: int | None = None) -> np.ndarray:
    """Normalised embeddings, one row per text."""
    model = get_model()
    return model.encode(
        texts,
        batch_size=batch_size or settings.EMBEDDING_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def encode_query(text: str) -> np.ndarray:
    """Query embedding, cached in Redis (a cache outage only costs a re-encode)."""
    key = "qemb:" + hashlib.sha256(f"{settings.EMBEDDING_MODEL}\0{text}".encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return np.frombuffer(cached, dtype=np.float32)
    vector = encode([text])[0].astype(np.float32)
    cache.set(key, vector.tobytes(), timeout=QUERY_CACHE_TTL_S)
    return vector


@lru_cache(maxsize=1)
def _tokenizer():  # type: ignore[no-untyped-def]
    # A private copy of the fast (Rust) tokenizer without truncation: calling it directly
    # skips the transformers wrapper, which cost as much as the tokenizing itself, and
    # leaves the model's own tokenizer settings alone.
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(get_model().tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def count_tokens(text: str) -> int:
    """Word pieces as the model sees them (without special tokens)."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)
