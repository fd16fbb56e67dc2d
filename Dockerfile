# The camtopo services (producers, processors, query service) for docker-compose.yml.
# Kafka and Redis come from their own images there; infra/ scripts are for machines without Docker.

# --- build: the wheel, as `make smoke-wheel` builds and tests it ---------------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# What the wheel is built from (no .venv, .stack or out/): pyproject.toml, the packages and
# infra/, which camtopo/operations/infra (a symlink) ships as package data. README.m[d]: the
# glob lets the build go on before a README exists.
COPY pyproject.toml README.m[d] ./
COPY camtopo ./camtopo
COPY producers ./producers
COPY processors ./processors
COPY topology_store ./topology_store
COPY infra ./infra

RUN pip wheel --no-deps -w /wheels .

# --- the image: that wheel installed, nothing of the sources ------------------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/camtopo-*.whl \
    && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 camtopo \
    && mkdir -p /data && chown camtopo /data

USER camtopo
# Inside a container the services must listen beyond loopback for the compose network.
ENV CAMTOPO_HTTP_HOST=0.0.0.0
ENTRYPOINT ["camtopo"]
CMD ["--help"]
