# syntax=docker/dockerfile:1
# --- build: a virtualenv with every locked dependency ---------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU build of torch keeps the image small; torch is pinned but not hash-locked (see Makefile).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
 && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt

# --- runtime: no compilers, non-root ---------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VAR_DIR=/app/var \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=app:app . /app
# Static files are collected at build time; the settings need (unused) service URLs to load.
RUN DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    SECRET_KEY=build-only-secret-key-not-used-at-runtime-0123456789abcdef \
    python manage.py collectstatic --noinput --verbosity 0 \
 && mkdir -p /app/var/media && chown -R app:app /app/var
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "supportdesk.asgi:application"]
