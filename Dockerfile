# syntax=docker/dockerfile:1
# kube2git as a container image.
#
# Stage "build" turns the project and every dependency into wheels and installs them into a
# virtualenv at /opt/kube2git; the runtime stage copies that virtualenv next to git,
# openssh-client (push shells out to git) and tini (PID 1: forwards SIGTERM so the exporter
# drains, reaps the git/ssh children). Runs as uid 10001; the repository lives on /data.
#
# tests/deploy/test_dockerfile.py runs this file's build-stage RUN steps in a fresh virtualenv
# (paths mapped into a temporary folder): keep that step a chain of plain pip/python commands.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# The commit `kube2git --version` names: docker build --build-arg KUBE2GIT_COMMIT=$(git rev-parse --short=12 HEAD)
ARG KUBE2GIT_COMMIT=unknown
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY exporter ./exporter
COPY filters ./filters
RUN python -m venv /opt/kube2git \
    && pip wheel --wheel-dir /wheels . \
    && /opt/kube2git/bin/pip install --no-index --find-links /wheels kube2git \
    && /opt/kube2git/bin/kube2git --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kube2git" \
      org.opencontainers.image.description="Continuously capture the state of a Kubernetes cluster into Git" \
      org.opencontainers.image.licenses="Apache-2.0"
# apt versions are not pinned: the base image's Debian release fixes them, and its security
# updates should reach the image on rebuild (see .hadolint.yaml).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 kube2git \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/kube2git kube2git \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /opt/kube2git /opt/kube2git
ENV PATH=/opt/kube2git/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/kube2git
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Liveness of `kube2git run` (the default listen address is 0.0.0.0:8080); slim has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "kube2git"]
# Arguments replace the whole CMD: `run --config F` (the chart) or `snapshot --repo ...`.
CMD ["run", "--repo", "/data/kube2git.git"]
