# The edgelambda gateway image (edgelambda/gateway:local).
#
# How to build it:
#   bash scripts/build-stack-images.sh
# That works offline and online alike: it stages the project and its dependencies as wheels
# on the host (pip wheel / pip download for the base image's Python), installs them into a
# site-packages tree, and builds this file with a small context holding `site.tar`. By
# default it builds FROM the imported Debian rootfs (edgelambda/debian-rootfs:...; nothing is
# pulled); EDGELAMBDA_GATEWAY_BASE_IMAGE=python:3.12-slim picks another base (its Python
# version is detected and the wheels staged for it).
#
# Connected machines can also build it straight from the repository root, as the compose
# file's `build:` does (`docker compose build gateway`, default BASE_IMAGE python:3.12-slim):
# without `site.tar` in the context, the RUN below pip-installs the source tree (this needs
# the package index, so not here).
#
# Runtime: routing.yaml and functions/ are mounted under /srv (the working directory), the
# Docker socket at /var/run/docker.sock, durable state (the async event queue) at /data.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONPATH=/opt/edgelambda/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/edgelambda/site/bin:/usr/local/bin:/usr/bin:/bin \
    ROUTING_CONFIG_PATH=/srv/routing.yaml \
    EDGELAMBDA_DATA_DIR=/data

# ADD unpacks site.tar (the prepared site-packages) straight into place. From the repository
# root `site.tar*` matches nothing; pyproject.toml always exists, so the ADD succeeds with the
# legacy builder and BuildKit alike (the stray copy is removed below).
ADD pyproject.toml site.tar* /opt/edgelambda/site/
COPY pyproject.toml README.md /tmp/edgelambda-build/
COPY src/ /tmp/edgelambda-build/src/
RUN set -eu; \
    site=/opt/edgelambda/site; build=/tmp/edgelambda-build; \
    rm -f "$site/pyproject.toml"; \
    if [ ! -d "$site/edgelambda" ]; then \
      python3 -m pip install --no-cache-dir --disable-pip-version-check --target "$site" "$build"; \
    fi; \
    rm -rf "$build"; \
    mkdir -p /srv /data; \
    python3 -c "import edgelambda.cli"

WORKDIR /srv
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('EDGELAMBDA_PORT', '8000'), timeout=3)"]
ENTRYPOINT ["python3", "-m", "edgelambda"]
CMD ["serve"]
