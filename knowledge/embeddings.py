"""The sentence-transformers model, loaded once per process from a local folder."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.cache import caches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
_lock = threading.Lock()
_session_lock = threading.Lock()
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
        _query_session()
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
    """Query embedding, cached in this process (see the "local" cache in settings)."""
    encoder = f"{settings.EMBEDDING_MODEL}\0{settings.EMBEDDING_QUERY_INT8}"  # a switch must not read the other's
    key = "qemb:" + hashlib.sha256(f"{encoder}\0{text}".encode()).hexdigest()
    cached = caches["local"].get(key)
    if cached is not None:
        return np.frombuffer(cached, dtype=np.float32)
    vector = encode_one(text)
    caches["local"].set(key, vector.tobytes(), timeout=QUERY_CACHE_TTL_S)
    return vector


def encode_one(text: str) -> np.ndarray:
    """One text's embedding, as encode() gives it, through ONNX Runtime when the model exports.

    A question is a batch of one: encode()'s own bookkeeping and torch's per-operator
    dispatch are most of its cost. ONNX Runtime runs the same weights (the same vector
    to 1e-6; a test checks) in about half torch's time on one thread, without the GIL,
    so the other steps of a reply run meanwhile; with EMBEDDING_QUERY_INT8 (the default)
    it runs 8-bit weights in half that again, within cosine 0.99 (see _quantize). Heads
    other than mean pooling run the model's own modules, so any sentence-transformers
    folder works.
    """
    session = _query_session()
    if session is None:
        return encode([text])[0].astype(np.float32)
    model = get_model()
    ids, mask = _query_features(model, text)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    if _mean_pooled(model):
        # The usual head in numpy: torch's per-operator dispatch cost 4x as much for one row.
        # One unpadded row: every token counts, so the mean over the mask is a plain mean.
        vector = hidden[0].mean(axis=0)
        return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
    return _pool_with_modules(model, ids, mask, hidden)


def _query_features(model: SentenceTransformer, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask (int64, one row) as the model's own module would make them."""
    encoded = _tokenizer(truncate_at=model.max_seq_length).encode(text.strip())  # the module strips its inputs too
    return (np.array([encoded.ids], dtype=np.int64), np.array([encoded.attention_mask], dtype=np.int64))


@lru_cache(maxsize=1)
def _mean_pooled(model: SentenceTransformer) -> bool:
    """Whether the head after the transformer is mean pooling then normalisation (MiniLM's)."""
    modules = list(model)[1:]
    names = [type(module).__name__ for module in modules]
    return names == ["Pooling", "Normalize"] and modules[0].get_config_dict().get("pooling_mode") == "mean"


def _pool_with_modules(model: SentenceTransformer, ids: np.ndarray, mask: np.ndarray,
                       hidden: np.ndarray) -> np.ndarray:
    import torch

    features = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "token_embeddings": torch.from_numpy(hidden)}
    with torch.inference_mode():
        for module in list(model)[1:]:
            features = module(features)
        vector = torch.nn.functional.normalize(features["sentence_embedding"], dim=1)[0]
    return vector.numpy().astype(np.float32)


def _query_session():  # type: ignore[no-untyped-def]
    """The model's transformer in ONNX Runtime, once per process; None (encode() is used) if it cannot be.

    Locked: the warm-up thread and the first queries after a start would otherwise all
    export at once, and the TorchScript exporter is not thread-safe.
    """
    model = get_model()  # a model that fails to load raises, as encode() would
    with _session_lock:
        return _cached_session(model)


@lru_cache(maxsize=1)
def _cached_session(model: SentenceTransformer):  # type: ignore[no-untyped-def]
    try:
        path = _exported(model)
        try:
            return _session(path)
        except Exception:  # a damaged export (disk full, a killed writer): export again, once
            log.warning("the ONNX query encoder at %s would not load; exporting it again", path, exc_info=True)
            path.unlink(missing_ok=True)
            return _session(_exported(model))
    except Exception:
        log.warning("query encoder could not run in ONNX Runtime; using encode()", exc_info=True)
        return None


def _session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings.EMBEDDING_THREADS  # 0: one per core, as torch
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not burn CPU
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _exported(model: SentenceTransformer) -> Path:
    """The transformer as an ONNX file under VAR_DIR, exported once per model version."""
    kind = "-int8" if settings.EMBEDDING_QUERY_INT8 else ""
    path = settings.VAR_DIR / "onnx" / f"query-encoder-{_model_fingerprint()}{kind}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = _temp_file(path.parent)  # unique per writer
        try:
            _export(model, partial)
            if settings.EMBEDDING_QUERY_INT8:
                _quantize(partial)
            os.replace(partial, path)  # atomic: a process starting meanwhile never reads half a file
        finally:
            partial.unlink(missing_ok=True)
    return path


def _temp_file(folder: Path) -> Path:
    handle, name = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    return Path(name)


def _quantize(path: Path) -> None:
    """Rewrite the export with 8-bit matrix weights, one scale per output channel.

    The query then costs half the CPU (3.0 against 6.3 ms here), and its vector stays
    within cosine 0.99 of the full-precision one; the documents keep theirs. Only the
    matrix products are quantised: quantising every operator drifted to cosine 0.96 (0.93
    at worst) on SciFact's questions.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = _temp_file(path.parent)
    root = logging.getLogger()
    root.addFilter(_not_from_the_quantizer)  # dozens of lines on the root logger, advice for image models
    try:
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        os.replace(quantized, path)
    finally:
        root.removeFilter(_not_from_the_quantizer)
        quantized.unlink(missing_ok=True)


def _not_from_the_quantizer(record: logging.LogRecord) -> bool:
    return f"onnxruntime{os.sep}quantization" not in record.pathname


def _model_fingerprint() -> str:
    """Changes with the model's files and the exporter, so an upgrade never reuses a stale export."""
    import torch

    folder = Path(settings.EMBEDDING_MODEL)
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()) if folder.is_dir() else []
    return hashlib.sha256(repr((settings.EMBEDDING_MODEL, files, torch.__version__)).encode()).hexdigest()[:16]


def _export(model: SentenceTransformer, path: Path) -> None:
    import warnings

    import torch

    class Transformer(torch.nn.Module):  # keyword arguments: the exporter passes positional ones
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]

    example = model[0].preprocess(["a short question to export the encoder with"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "last_hidden_state": {0: "batch", 1: "tokens"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and deprecation notices about the export itself
        torch.onnx.export(Transformer(model[0].auto_model), (example["input_ids"], example["attention_mask"]),
                          str(path), dynamo=False, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17)


@lru_cache(maxsize=2)
def _tokenizer(*, truncate_at: int | None = None):  # type: ignore[no-untyped-def]
    # A private copy of the model's fast (Rust) tokenizer, truncating at `truncate_at` word
    # pieces or not at all: calling it directly skips the transformers wrapper, which cost as
    # much as the tokenizing itself, and leaves the model's own tokenizer settings alone. No
    # lock: the model's own one raises "Already borrowed" when two threads use it at once.
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(get_model().tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    if truncate_at is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length=truncate_at)
    return backend


def count_tokens(text: str) -> int:
    """Word pieces as the model sees them (without special tokens)."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)
