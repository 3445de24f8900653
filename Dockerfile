# syntax=docker/dockerfile:1
# The celery-operator image: `docker build -t celery-operator:0.1.0 .`
# BASE is any Debian-based image with Python 3.11 as `python3` (python3-venv included):
# users get the public slim image; `make image` passes a local mmdebstrap bookworm base.
# Two stages: a builder that installs the package into a virtualenv and compiles its
# bytecode, and a slim runtime that only gets that virtualenv and runs as uid 65532.
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Optional: a CA bundle for pip behind a TLS-intercepting proxy (`make image` passes the
# host's); declared without a default so builds that do not pass it are unchanged.
ARG PIP_CERT
WORKDIR /src
# Only what the package build needs (.dockerignore keeps everything else out).
COPY pyproject.toml README.md ./
COPY operator ./operator
# Bytecode ahead of time: the root filesystem is read-only at run time, and unchecked-hash
# .pyc files stay valid whatever the file times become in the copy to the next stage.
RUN pip install . \
 && pip uninstall --yes pip setuptools wheel \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

FROM ${BASE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/celery-operator/celery-operator
LABEL org.opencontainers.image.title="celery-operator" \
      org.opencontainers.image.description="ScheduledTask and PeriodicTask resources, dispatched to Celery" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The runtime user: numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
# No pip in the final image: the slim base ships one, a Debian base a wheel of it
# (python3-venv, needed only by the builder).
RUN pkgs=$(dpkg-query -W -f='${Package}\n' python3-venv python3.11-venv python3-pip-whl \
             python3-setuptools-whl 2>/dev/null || true) \
 && if [ -n "$pkgs" ]; then dpkg --purge $pkgs >/dev/null; fi \
 && (python3 -m pip uninstall --yes pip setuptools wheel >/dev/null 2>&1 || true) \
 && rm -rf /root/.cache
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
USER 65532:65532
# 8000: Prometheus metrics (--metrics-port), 8080: kopf's liveness endpoint (--liveness).
EXPOSE 8000 8080
ENTRYPOINT ["celery-operator", "run"]
