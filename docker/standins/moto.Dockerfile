# Stand-in for RustFS (S3) and ScyllaDB Alternator (DynamoDB) where their images cannot be
# pulled: moto's server behind moto_entry.py, which takes either image's configuration
# (`moto_entry.py rustfs` or `moto_entry.py scylladb`, the entry command the stand-ins
# override names). Built offline by scripts/build-stack-images.sh (edgelambda/moto:local)
# FROM the stand-ins' Debian rootfs (with curl, as the real images have), with
# moto[server] installed on the host from wheels (docker/standins/moto-requirements.txt), packed
# as site.tar in the build context (ADD unpacks it). Not for production: state lives in memory.
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONPATH=/opt/moto/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/moto/site/bin:/usr/local/bin:/usr/bin:/bin

ADD site.tar /opt/moto/site/
COPY moto_entry.py /opt/moto/moto_entry.py

# The compose files carry the real services' healthchecks; this image has none of its own.
ENTRYPOINT ["python3", "/opt/moto/moto_entry.py"]
CMD ["rustfs"]
