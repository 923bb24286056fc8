#!/usr/bin/env bash
# Wait until URL answers 200, at most SECONDS seconds (default 120); a clear error otherwise,
# with HINT (default: the gateway's compose log) saying where to look.
#   bash scripts/wait-healthy.sh URL [SECONDS] [HINT]
set -euo pipefail
url="$1"; limit="${2:-120}"; hint="${3:-docker-compose logs gateway}"
for _ in $(seq 1 "$limit"); do
  if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
    echo "healthy: $url"
    exit 0
  fi
  sleep 1
done
echo "not healthy within ${limit}s: $url (see: $hint)" >&2
exit 1
