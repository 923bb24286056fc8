# Stand-in for RustFS (S3) and ScyllaDB Alternator (DynamoDB) where their images cannot be
# pulled: moto's server, which answers S3 and DynamoDB on one port. Built offline by
# scripts/build-stack-images.sh (edgelambda/moto:local) FROM the imported Debian rootfs, with
# moto[server] installed on the host from wheels (docker/standins/moto-requirements.txt), packed
# as site.tar in the build context (ADD unpacks it). Not for production: state lives in memory.
ARG ROOTFS_IMAGE=edgelambda/debian-rootfs:bookworm-python3.11
FROM ${ROOTFS_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONPATH=/opt/moto/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/moto/site/bin:/usr/local/bin:/usr/bin:/bin

ADD site.tar /opt/moto/site/
COPY moto_entry.py /opt/moto/moto_entry.py

EXPOSE 5000
# Compose files that change the port (-p) override this check with their own port.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/moto-api/', timeout=3)"]
ENTRYPOINT ["python3", "/opt/moto/moto_entry.py"]
CMD ["-H", "0.0.0.0", "-p", "5000"]
