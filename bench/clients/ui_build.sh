#!/usr/bin/env bash
# Build the OPEVA UI (ai-manager-ui) from its fetched repository into the cache, once per
# commit. Its committed build/ is the April 2025 first version (none of the Run
# Simulations/Datasets/Configs/Schema pages), so it cannot be judged as it is.
# Prints the build directory. Never copies UI code into this repo.
set -euo pipefail
UI_REPO=${OPEVA_UI_REPO:-/work/.mirror/Soft-CPS-Research-Group+ai-manager-ui/repo}
UI_COMMIT=${OPEVA_UI_COMMIT:-$(git -C "$UI_REPO" rev-parse --short HEAD)}
CACHE=${OPEVA_CLIENTS_CACHE:-/var/cache/opeva/clients}
DIR="$CACHE/ui-$UI_COMMIT"
if [ -f "$DIR/build/index.html" ] && grep -q 'experiment-config/create' "$DIR"/build/static/js/main.*.js; then
  echo "$DIR/build"; exit 0
fi
mkdir -p "$DIR"
git -C "$UI_REPO" archive "$UI_COMMIT" | tar -x -C "$DIR"
cd "$DIR"
# --legacy-peer-deps: react-chartist 0.14.4 wants chartist ^0.10 while the UI pins 0.11.4.
# No dev deps (cypress would download its own binary); react-scripts is a runtime dep here.
CYPRESS_INSTALL_BINARY=0 npm install --omit=dev --legacy-peer-deps --no-audit --no-fund --loglevel=error >&2
CI=false GENERATE_SOURCEMAP=false DISABLE_ESLINT_PLUGIN=true npx react-scripts build >&2
echo "$DIR/build"
