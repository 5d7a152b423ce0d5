# syntax=docker/dockerfile:1

# ---- builder: wheels for the project and every dependency -------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime -----------------------------------------------------------------
# Production unless told otherwise: the image refuses to start without a private LIVECART_SECRET_KEY of 32+
# bytes, keeps open sign-up, the dev SMS provider and the dev payment simulator off, and does not migrate on
# start unless LIVECART_MIGRATE_ON_START=true (README, "Docker").
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    LIVECART_ENV=prod \
    LIVECART_DATA_DIR=/data \
    LIVECART_DATABASE_URL=sqlite+aiosqlite:////data/livecart.db

RUN groupadd --system --gid 10001 livecart \
    && useradd --system --uid 10001 --gid livecart --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin livecart \
    && mkdir -p /app /data \
    && chown livecart:livecart /data

# The wheels are bind-mounted from the builder, so they never land in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && pip install --no-cache-dir --no-index --find-links=/wheels /wheels/livecart-*.whl

WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["livecart", "serve", "--host", "0.0.0.0", "--port", "8000"]
