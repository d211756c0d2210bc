# One image for both roles of the engine: `infraudit api` (the default) and `infraudit worker`,
# plus the one-shot `infraudit db upgrade`. docker-compose.yml runs all three from it.
#
# Two stages: the build stage installs the package and its dependencies into a virtualenv at
# /opt/venv; the final stage copies only that venv onto a fresh slim base, so pip, wheels and
# the source tree stay out of the running image. Both stages use the same base image, so the
# venv's interpreter path (/usr/local/bin/python3.11) exists in the final stage too.

# Pinned to a patch release and Debian release: a rebuild gets the same Python, not whatever
# `3.11-slim` points at that day. Raise it on purpose (docs/operations.md "Docker Compose").
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Every dependency ships a manylinux wheel (psycopg[binary], cryptography, temporalio), so no
# compiler is needed. A plain (not editable) install puts the package itself into the venv.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && infraudit --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid, so volume ownership and security policies can name it.
RUN groupadd --system --gid 10001 infraudit \
    && useradd --system --uid 10001 --gid infraudit --home-dir /app --create-home \
        --shell /usr/sbin/nologin infraudit
COPY --from=build /opt/venv /opt/venv
# INFRAUDIT_API_HOST: in a container the API must listen beyond loopback to be reachable at all.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INFRAUDIT_API_HOST=0.0.0.0
# The working folder is the user's own: the embedded defaults (./.infraudit) could write there,
# although the compose stack points every process at PostgreSQL and Temporal instead.
WORKDIR /app
USER infraudit:infraudit
EXPOSE 8000
# The API's liveness probe, GET /healthz on its own port (INFRAUDIT_API_PORT, 8000 by default);
# urllib raises on a refused connection or a non-2xx answer, so the exit status is 1 then.
# A worker answers on its own port (INFRAUDIT_WORKER_HTTP_PORT): docker-compose.yml gives the
# worker service its own check of that.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('INFRAUDIT_API_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["infraudit"]
CMD ["api"]
