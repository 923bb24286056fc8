# Stand-in for VictoriaLogs where its image cannot be pulled: log_recorder.py speaks the part
# of VictoriaLogs' HTTP API edgelambda uses (/insert/jsonline, /select/logsql/query and
# /tail, /health), keeps lines in memory and appends them to /data/lines.jsonl. Built offline
# by scripts/build-stack-images.sh (edgelambda/log-recorder:local) FROM the stand-ins' Debian
# rootfs (with wget, as VictoriaLogs' Alpine image has), with aiohttp installed on the host from wheels, packed as site.tar in the build
# context (ADD unpacks it).
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONPATH=/opt/log-recorder/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECORDER_PORT=9428 \
    RECORDER_DATA_DIR=/data

ADD site.tar /opt/log-recorder/site/
COPY log_recorder.py /opt/log-recorder/log_recorder.py
RUN mkdir -p /data

EXPOSE 9428
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('RECORDER_PORT', '9428'), timeout=3)"]
ENTRYPOINT ["python3", "/opt/log-recorder/log_recorder.py"]
