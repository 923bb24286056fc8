# The Docker-in-Docker parent (`make dind`, container onpre-app-root): one container running
# its own dockerd and, inside it, the same compose stack as `make up` (gateway, RustFS,
# ScyllaDB Alternator, VictoriaLogs, or their stand-ins).
#
# Build it with scripts/build-dind-image.sh [--offline] (see there): the context holds the
# entrypoint, scripts/ensure-engine.sh, the stack's compose files and images/images.tar, the
# images the inner engine loads at its first start. ROOTFS_IMAGE is a Debian rootfs with
# docker.io, docker-compose, tini and iptables, imported from mmdebstrap (no registry).
#
# Runtime: privileged (or the capability list of compose/docker-compose.dind-caps.yml), a
# volume at /var/lib/docker for the inner engine's images, containers and data volumes, and
# routing.yaml and functions/ mounted under /srv/edgelambda.
# Set by scripts/build-dind-image.sh (edgelambda/dind-rootfs:<suite>-<hash of its packages>).
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE}

ENV LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

COPY compose/ /opt/edgelambda/compose/
COPY images/ /opt/edgelambda/images/
COPY ensure-engine.sh /opt/edgelambda/ensure-engine.sh
COPY dind-entrypoint.sh /usr/local/bin/edgelambda-dind
RUN mkdir -p /srv/edgelambda/functions && chmod 0755 /usr/local/bin/edgelambda-dind

VOLUME /var/lib/docker
EXPOSE 8000 9000 9001 8001 9428
HEALTHCHECK --interval=5s --timeout=3s --start-period=180s --retries=5 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
# tini reaps the engine's orphans and hands SIGTERM to the entrypoint, which stops the stack.
ENTRYPOINT ["tini", "--", "edgelambda-dind"]
