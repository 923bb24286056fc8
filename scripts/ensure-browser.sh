#!/usr/bin/env bash
# Ensure a headless browser for the console's tests: Debian's chromium, which Playwright for
# Python drives through `executable_path` (Playwright's own browser download is not used).
# Idempotent; prints the browser's path.
set -euo pipefail

log() { echo "ensure-browser: $*" >&2; }

if path=$(command -v chromium); then
  echo "$path"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "chromium is missing and this is not root: apt-get install chromium yourself"
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log "installing Debian's chromium"
if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
command -v chromium
