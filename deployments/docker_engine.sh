#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# Why: CI machines and fresh developer boxes have only the docker client. The
# engine is started with no bridge and no iptables rules because containers
# here use the host's network (loopback only) and must never get another route.
# Exit 0 when an engine answers, 1 when none could be started (callers then
# fall back to a process work pool, or fail when OPEVA_REQUIRE_DOCKER=1).
# With --restart, a running dockerd is stopped first (SIGTERM, as a service manager
# would: it takes its containers down) and started again (the fault tests use this).
set -u
log=${OPEVA_DOCKERD_LOG:-/var/log/opeva-dockerd.log}

if [ "${1:-}" = "--restart" ]; then
  pids=$(pgrep -x dockerd || true)
  [ -n "$pids" ] || { echo "docker_engine: --restart: no dockerd process runs here" >&2; exit 1; }
  kill -TERM $pids
  for _ in $(seq 1 120); do
    alive=0
    for p in $pids; do [ -e "/proc/$p" ] && alive=1; done
    [ $alive = 0 ] && break
    sleep 1
  done
  [ $alive = 0 ] || { echo "docker_engine: dockerd did not exit within 120 s of SIGTERM" >&2; exit 1; }
  echo "docker_engine: dockerd stopped; starting it again" >&2
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "docker_engine: installing docker.io from Debian's packages" >&2
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io) >/tmp/opeva-apt-docker.log 2>&1 \
      || { echo "docker_engine: apt-get install docker.io failed (see /tmp/opeva-apt-docker.log)" >&2; exit 1; }
  else
    echo "docker_engine: no dockerd on this machine and not root: cannot start a Docker engine" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker_engine: dockerd present but not running, and starting it needs root" >&2
  exit 1
fi
echo "docker_engine: starting dockerd (--bridge=none --iptables=false), log in $log" >&2
nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "docker_engine: dockerd did not answer within 60 s (see $log)" >&2
exit 1
