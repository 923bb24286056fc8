#!/usr/bin/env bash
# Print a setting as Docker Compose sees it: the environment's value when it is set, else the
# last `NAME=value` line of the env file (an optional `export `, spaces around `=` and one
# pair of matching quotes removed, as compose reads .env), else nothing.
#   bash scripts/env-value.sh NAME [ENV_FILE]      # ENV_FILE defaults to .env
set -euo pipefail
name=$1 file=${2:-.env}
if [ -n "${!name:-}" ]; then
  printf '%s\n' "${!name}"
  exit 0
fi
[ -f "$file" ] || exit 0
sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?${name}[[:space:]]*=[[:space:]]*//p" "$file" |
  tail -n 1 | sed -E -e 's/[[:space:]]+$//' -e "s/^'(.*)'\$/\\1/" -e 's/^"(.*)"$/\1/'
