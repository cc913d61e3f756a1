#!/usr/bin/env bash
# Judge our API with the real OPEVA clients: the upstream Postman suite (newman) and the
# OPEVA UI (chromium + playwright-core), on a throw-away platform started like `make up`.
#
#   bash bench/clients/run_all.sh            # everything; prints the table at the end
#   CLIENTS=postman bash bench/clients/run_all.sh   # or CLIENTS=ui, CLIENTS=energaize, CLIENTS=ui,energaize
#   ENERGAIZE_MODES=cross,proxy ...          # energaize_ui: cross-origin (as deployed) and/or behind a same-origin proxy
#                                            # (proxy-hosts: also re-shape /hosts to names, a diagnostic)
#   UPDATE_FIXTURE=1 ...                     # rewrite tests/fast/fixtures/energaize_requests.json from the cross-origin run
#   KEEP=1 ...                               # leave the platform running afterwards (prints how to stop it)
#   STRICT=1 ...                             # exit 1 when any client has a failure
#
# Needs: Docker engine (as make up), Debian's chromium, npm registry access the first time
# (newman, playwright-core and the UI's own dependencies are cached in /var/cache/opeva/clients).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/clients"
CACHE=${OPEVA_CLIENTS_CACHE:-/var/cache/opeva/clients}
CLIENTS=${CLIENTS:-postman,ui}
has() { [[ ",$CLIENTS," == *",$1,"* ]]; }
ENERGAIZE_MODES=${ENERGAIZE_MODES:-cross,proxy}
export OPEVA_IMAGE=${OPEVA_IMAGE:-opeva-runtime:clients}
export OPEVA_CLIENTS_CACHE=$CACHE

# -- tools -------------------------------------------------------------------
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
if [ ! -x "$CACHE/node_modules/.bin/newman" ] || [ ! -d "$CACHE/node_modules/playwright-core" ]; then
  mkdir -p "$CACHE" && { [ -f "$CACHE/package.json" ] || echo '{"name":"opeva-clients-cache","private":true}' > "$CACHE/package.json"; }
  npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error newman@6.2.2 playwright-core@1.65.1 || exit 1
fi
if has ui; then
  echo "UI build (cached per UI commit; first time ~10 min)..."
  BUILD=$(bash "$HERE/ui_build.sh") || { echo "UI build failed"; exit 1; }
fi
if has energaize; then
  echo "energaize_ui build (cached per commit; first time ~2 min)..."
  EBUILD=$(bash "$HERE/energaize_build.sh") || { echo "energaize_ui build failed"; exit 1; }
fi

# -- platform: what `make up` runs (python -m deployments.up), on free ports -------
STATE=$(mktemp -d /tmp/opeva-clients-XXXXXX)
# mktemp makes it 0700: the platform's own accounts (RabbitMQ runs as `rabbitmq`, make up's
# broker) must traverse it to reach their folders under $OPEVA_HOME, which stay private.
chmod 755 "$STATE"
read -r PREFECT_PORT API_PORT MONGO_PORT UI_PORT EUI_PORT EAPI_PORT EPROXY_PORT < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(7)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
export OPEVA_HOME="$STATE/home" OPEVA_DATA_DIR="$STATE/home/data" OPEVA_HOSTS_FILE="$STATE/hosts.yaml"
export OPEVA_PREFECT_PORT=$PREFECT_PORT OPEVA_API_PORT=$API_PORT OPEVA_MONGO_PORT=$MONGO_PORT
unset MONGO_URI PREFECT_API_URL
# energaize_ui is served from its own origin and calls the API cross-origin (energaize_serve.py).
# ai-manager-ui calls through its dev proxy, which forwards the browser's Origin (as
# http-proxy-middleware does): its origin must be allowed too, or every POST/PUT/DELETE is a 403.
export OPEVA_CORS_ORIGINS=${OPEVA_CORS_ORIGINS:-http://127.0.0.1:$EUI_PORT,http://127.0.0.1:$UI_PORT}
mkdir -p "$OPEVA_DATA_DIR"
# local: the host the UI picks, with the inference target `local` (no bundle until a switch);
# worker-a: the host Postman's "Run Simulation (Config Path)" names, with no worker (a remote
# host that is down), so its job stays queued.
cat > "$OPEVA_HOSTS_FILE" <<HOSTS
hosts:
  - name: local
    concurrency_limit: 3
    volumes: ["$OPEVA_DATA_DIR:$OPEVA_DATA_DIR"]
    start_worker: true
    simulator_image: calof/opeva_simulator     # as the shipped hosts.yaml: the UI's runtime versions are its tags
    allowed_images: [calof/opeva_simulator, calof/algorithms]   # calof/algorithms: the image Postman's launches name
    inference_targets:        # as the shipped hosts.yaml: energaize_ui's Deploy page manages it
      - {id: local, name: Local inference service, memory: 256m, cpus: 1, pids: 64}
  - name: worker-a
    concurrency_limit: 1
    volumes: ["$OPEVA_DATA_DIR:$OPEVA_DATA_DIR"]
    start_worker: false
    simulator_image: calof/opeva_simulator
    allowed_images: [calof/opeva_simulator, calof/algorithms]
HOSTS
API="http://127.0.0.1:$API_PORT"
echo "state: $STATE  API $API  Prefect :$PREFECT_PORT  Mongo :$MONGO_PORT  image $OPEVA_IMAGE  code $(git -C "$ROOT" log -1 --format='%h %s' | cut -c1-70)"
( cd "$ROOT" && PYTHONPATH="$ROOT" exec setsid python3 -m deployments.up ) > "$STATE/platform.log" 2>&1 &
PLATFORM_PID=$!
UI_PID=""
EUI_PID=""
cleanup() {
  [ -n "$UI_PID" ] && kill "$UI_PID" 2>/dev/null
  [ -n "$EUI_PID" ] && kill "$EUI_PID" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "platform left running: kill $PLATFORM_PID"; return; fi
  kill -TERM "$PLATFORM_PID" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$PLATFORM_PID" 2>/dev/null || break; sleep 1; done
}
trap cleanup EXIT
for i in $(seq 900); do
  grep -q "OPEVA platform is up" "$STATE/platform.log" 2>/dev/null && break
  if ! kill -0 "$PLATFORM_PID" 2>/dev/null; then echo "platform exited:"; tail -30 "$STATE/platform.log"; exit 1; fi
  sleep 1
done
grep -q "OPEVA platform is up" "$STATE/platform.log" || { echo "platform not up after 900 s"; tail -30 "$STATE/platform.log"; exit 1; }
echo "platform up after ${i} s"

python3 "$HERE/prepare_state.py" --mongo-uri "mongodb://127.0.0.1:$MONGO_PORT" --data-dir "$OPEVA_DATA_DIR" --state-dir "$STATE" || exit 1
VERDICTS="$STATE/verdicts.jsonl"
if has postman; then
  echo "== Postman suite (newman) =="
  # Both "Run Simulation" requests name the image calof/algorithms:v0.2.5 (the simulator image
  # upstream deployed when the suite was written). Like the datasets and configs the suite
  # reads, it is made to exist: the reference simulator, tagged under that name on the engine
  # (the hosts above allow the repository). Without it the answer is our 400 "not present on
  # host" (docs/clients.md, "Postman").
  docker tag calof/opeva_simulator:reference calof/algorithms:v0.2.5 || echo "could not tag calof/algorithms:v0.2.5"
  timeout 900 python3 "$HERE/postman.py" --base-url "$API" --state-dir "$STATE" --out "$VERDICTS"
fi
if has ui; then
  echo "== OPEVA UI journeys (chromium) =="
  # ai-manager-ui's 2025 shapes live under /ai-manager-ui; ui_serve.py adds that prefix (--prefix).
  echo "ai-manager-ui proxies to $API/ai-manager-ui"
  python3 "$HERE/ui_serve.py" --build "$BUILD" --backend "$API" --port "$UI_PORT" > "$STATE/ui-serve.log" 2>&1 &
  UI_PID=$!
  for _ in $(seq 30); do curl -sf "http://127.0.0.1:$UI_PORT/" >/dev/null && break; sleep 0.5; done
  timeout 1800 node "$HERE/ui_journeys.mjs" --ui "http://127.0.0.1:$UI_PORT" --state "$STATE" --out "$VERDICTS"
  kill "$UI_PID" 2>/dev/null; UI_PID=""
fi
if has energaize; then
  for MODE in ${ENERGAIZE_MODES//,/ }; do
    echo "== energaize_ui journeys ($MODE) =="
    if [ "$MODE" = cross ]; then
      SERVE=(--port "$EUI_PORT" --api-port "$EAPI_PORT" --record "$STATE/energaize-requests.jsonl"); EUI="http://127.0.0.1:$EUI_PORT"
    elif [ "$MODE" = proxy ]; then
      SERVE=(--port "$EPROXY_PORT" --proxy); EUI="http://127.0.0.1:$EPROXY_PORT"
    else  # proxy-hosts: diagnostic, /hosts re-shaped to names by the proxy
      SERVE=(--port "$EPROXY_PORT" --proxy --reshape-hosts); EUI="http://127.0.0.1:$EPROXY_PORT"
    fi
    python3 "$HERE/energaize_serve.py" --build "$EBUILD" --backend "$API" "${SERVE[@]}" > "$STATE/energaize-serve-$MODE.log" 2>&1 &
    EUI_PID=$!
    for _ in $(seq 30); do curl -sf "$EUI/" >/dev/null && break; sleep 0.5; done
    timeout 2400 node "$HERE/energaize_journeys.mjs" --ui "$EUI" --api "$API" --mode "$MODE" --state "$STATE" --out "$VERDICTS"
    kill "$EUI_PID" 2>/dev/null; EUI_PID=""
  done
  if [ "${UPDATE_FIXTURE:-0}" = 1 ] && [ -s "$STATE/energaize-requests.jsonl" ]; then
    python3 "$HERE/energaize_fixture.py" --record "$STATE/energaize-requests.jsonl" --results "$STATE/energaize-results-cross.json" \
      --ui-origin "http://127.0.0.1:$EUI_PORT" --out "$ROOT/tests/fast/fixtures/energaize_requests.json"
  fi
fi

python3 - "$VERDICTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
print("\n| client | passed/total | of which the UI cannot do whatever the API answers |\n|---|---|---|")
for r in rows:
    print(f"| {r['client']} | {r['passed']}/{r['total']} | {r.get('ui_blocked', '')} |")
for r in rows:
    if r["failures"]:
        print(f"\n{r['client']} failures:")
        for f in r["failures"]:
            print(f"  - {f}")
if any(r["failures"] for r in rows) and __import__("os").environ.get("STRICT") == "1":
    sys.exit(1)
PY
RC=$?
echo "details: $STATE (platform.log, postman/newman.log, ui-results.json, ui-shots/, energaize-results-<mode>.json, energaize-requests.jsonl)"
exit $RC
