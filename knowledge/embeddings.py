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
        _traced_transformer()
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
    vector = encode_one(text)
    cache.set(key, vector.tobytes(), timeout=QUERY_CACHE_TTL_S)
    return vector


def encode_one(text: str) -> np.ndarray:
    """One text's embedding, as encode() gives it, through the traced transformer when there is one.

    A question is a batch of one: encode()'s own bookkeeping and the eager model's Python
    dispatch are most of its cost. The TorchScript trace runs the same weights in C++
    (the same vector to 1e-6; a test checks), about 2 ms faster per query on one thread,
    and lets other threads hold the GIL meanwhile. The model's own pooling and
    normalisation modules run after it, so any sentence-transformers folder works.
    """
    traced = _traced_transformer()
    if traced is None:
        return encode([text])[0].astype(np.float32)
    import torch

    model = get_model()
    features = model.tokenize([text])
    with torch.inference_mode():
        output = traced(features["input_ids"], features["attention_mask"])
        features["token_embeddings"] = output["last_hidden_state"] if isinstance(output, dict) else output[0]
        for module in list(model)[1:]:
            features = module(features)
        vector = torch.nn.functional.normalize(features["sentence_embedding"], dim=1)[0]
    return vector.numpy().astype(np.float32)


@lru_cache(maxsize=1)
def _traced_transformer():  # type: ignore[no-untyped-def]
    """The model's transformer traced once per process; None (encode() is used) if it cannot be.

    Two first callers at once may both trace (a second of work, the same result): not worth a lock.
    """
    model = get_model()  # a model that fails to load raises, as encode() would
    try:
        return _trace(model)
    except Exception:
        log.warning("query encoder could not be traced; using encode()", exc_info=True)
        return None


def _trace(model: SentenceTransformer):  # type: ignore[no-untyped-def]
    import warnings

    import torch

    from transformers.utils import logging as transformers_logging

    example = model.tokenize(["a short question to trace the encoder with"])
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its config notices would reach the console at start-up
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches
            return torch.jit.trace(model[0].auto_model, (example["input_ids"], example["attention_mask"]),
                                   strict=False)
    finally:
        transformers_logging.set_verbosity(verbosity)


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
