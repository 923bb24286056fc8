# The image registry of the Swarm backend: Debian's docker-registry package (the CNCF
# Distribution registry 2.8), built offline from a Debian rootfs (scripts/build-stack-images.sh).
# One image serves both roles: the registry the gateway pushes function images to, and, with
# REGISTRY_PROXY_REMOTEURL set (Distribution reads any config key from REGISTRY_* variables),
# a node's pull-through mirror of it.
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE}
COPY config.yml /etc/docker/registry/config.yml
RUN mkdir -p /var/lib/docker-registry && chown docker-registry /var/lib/docker-registry
USER docker-registry
EXPOSE 5000
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
  CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5000/v2/"]
ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
