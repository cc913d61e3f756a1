#!/usr/bin/env bash
# schemathesis against the REST API's own /openapi.json at both mounts (/ and /ai-manager-ui), every check, launch and DELETE routes included.
#   bash bench/schemathesis_run.sh                      # a throw-away fast-tier platform (no Docker, no worker)
#   OPEVA_API_URL=http://127.0.0.1:8000 bash bench/schemathesis_run.sh   # a running platform
# Extra arguments go to `st run` (e.g. --max-examples 20, --include-path-regex '^/ops').
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/schemathesis/run.py "$@"
