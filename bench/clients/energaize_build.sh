#!/usr/bin/env bash
# Build energaize_ui (the OPEVA UI in use today) unchanged from its public sources, once per
# commit, into the cache; prints the dist/ directory. Nothing of the UI is copied into this repo.
#
# Vite inlines VITE_API_BASE_URL and VITE_JOB_ORCHESTRATOR_API_URL into the bundle. We build
# with a sentinel origin (OPEVA_API_SENTINEL below) and energaize_serve.py replaces it with the
# real API origin while it serves the bundle, so one build serves any API port (a build takes
# minutes on this machine). Upstream's own docker build sets the same two variables.
#
#   bash bench/clients/energaize_build.sh          # -> /var/cache/opeva/clients/energaize-<commit>-<hash>/dist
#   OPEVA_ENERGAIZE_COMMIT=<sha> ...               # another commit (default 3111ff7, the one judged)
set -euo pipefail
REPO=${OPEVA_ENERGAIZE_REPO:-/work/.mirror/Soft-CPS-Research-Group+energaize_ui/repo}
COMMIT=${OPEVA_ENERGAIZE_COMMIT:-3111ff7}
CACHE=${OPEVA_CLIENTS_CACHE:-/var/cache/opeva/clients}
# Must stay in step with SENTINEL in energaize_serve.py.
SENTINEL=http://opeva-api-sentinel.invalid:18011
HASH=$(printf %s "$SENTINEL" | sha256sum | cut -c1-8)
DIR="$CACHE/energaize-$COMMIT-$HASH"
if [ -f "$DIR/dist/index.html" ] && grep -rqs "$SENTINEL" "$DIR/dist/assets/"; then
  echo "$DIR/dist"; exit 0
fi
[ -d "$REPO" ] || { echo "energaize_ui sources not found at $REPO (fetch github:Soft-CPS-Research-Group/energaize_ui)" >&2; exit 1; }
rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp"
git -C "$REPO" archive "$COMMIT" | tar -x -C "$DIR.tmp"
cd "$DIR.tmp"
# package.json asks node >= 22 (engines; npm only warns); node 20 builds it.
npm ci --no-audit --no-fund --loglevel=error >&2
# Its own build script: tsc -b && vite build.
VITE_API_BASE_URL=$SENTINEL VITE_JOB_ORCHESTRATOR_API_URL=$SENTINEL npm run build >&2
grep -rqs "$SENTINEL" dist/assets/ || { echo "build does not carry the API sentinel" >&2; exit 1; }
rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
echo "$DIR/dist"
