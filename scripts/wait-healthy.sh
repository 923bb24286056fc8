#!/usr/bin/env bash
# Wait until URL answers 200, at most SECONDS seconds (default 120); a clear error otherwise.
set -euo pipefail
url="$1"; limit="${2:-120}"
for _ in $(seq 1 "$limit"); do
  if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
    echo "healthy: $url"
    exit 0
  fi
  sleep 1
done
echo "not healthy within ${limit}s: $url (see: docker-compose logs gateway)" >&2
exit 1
