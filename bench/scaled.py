"""The scaled control plane against the single server, in one run (issue 22).

Each layout gets a fresh platform with a Docker worker on host ``local`` and a host
``idle`` without a worker (the stream's submissions queue there: no container per
request). The same paced stream (tools/load_drill.py: ~20 requests/s, one submission
in ten with its own Idempotency-Key, the rest status/list/hosts reads) runs twice on
each: undisturbed, then with faults. Single server: its Prefect server is killed. Scaled
(2 Prefect API servers + services on PostgreSQL and Redis, 2 API replicas, haproxy): one
Prefect server and one API replica are killed. Nothing restarts them (no supervisor
here): what the table shows is what the layout itself absorbs.

Usage: python bench/scaled.py [--seconds 15] [--rate 20] [--servers 2] [--replicas 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.platform import Platform, free_port  # noqa: E402
from deployments.scaled import Layout, ScaleSettings, start_apis, start_platform_front  # noqa: E402
from tools.load_drill import Drill, percentile, run_drill  # noqa: E402

BODY = {"config": {"experiment": {"name": "bench", "run_name": "scaled"}}, "command": ["sh", "-c", "true"], "target_host": "idle"}


def platform_for(scale: ScaleSettings) -> tuple[Platform, Layout, Path]:
    home = Path(tempfile.mkdtemp(prefix="opeva-bench-scaled-"))
    p = Platform(home=home, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=home / "data")
    hosts = home / "hosts.yaml"
    hosts.write_text(f"hosts:\n  - name: local\n    concurrency_limit: 2\n    volumes: ['{p.data_dir}:{p.data_dir}']\n"
                     f"  - name: idle\n    concurrency_limit: 1\n    volumes: ['{p.data_dir}:{p.data_dir}']\n")
    return p, Layout.plan(scale), hosts


def measure(scale: ScaleSettings, faults: Callable[[Platform], dict], rate: float, seconds: float) -> list[tuple[str, Drill]]:
    p, layout, hosts = platform_for(scale)
    try:
        start_platform_front(p, scale, layout)
        p.start_mongo()
        types = p.setup_pools(hosts, docker=True)
        p.start_worker("local", types["local"])
        start_apis(p, layout, OPEVA_HOSTS_FILE=str(hosts), MONGO_URI=p.mongo_uri)
        steady = run_drill(p.api_url, BODY, rate=rate, seconds=seconds)
        faulted = run_drill(p.api_url, BODY, rate=rate, seconds=seconds, faults=faults(p))
        return [("steady", steady), ("faults: " + ", ".join(name for _, name in faulted.faults), faulted)]
    finally:
        p.stop()


def killer(p: Platform, name: str) -> tuple[str, Callable[[], None]]:
    def action() -> None:
        os.killpg(next(s for s in p.services if s.name == name).proc.pid, signal.SIGKILL)
    return f"kill {name}", action


def line(layout: str, phase: str, d: Drill) -> str:
    ok = d.latencies()
    by_kind = {k: [o.seconds for o in d.outcomes if o.ok and o.what == k] for k in ("submit", "status", "jobs", "hosts")}
    kinds = " ".join(f"{k} {percentile(v, .5) * 1000:.0f}" for k, v in by_kind.items())
    return (f"| {layout:<22} | {phase:<42} | {len(d.outcomes):>4} | {len(d.failed):>6} | {percentile(ok, .5) * 1000:>7.0f} | "
            f"{percentile(ok, .99) * 1000:>7.0f} | {kinds} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("OPEVA_PREFECT_AUTH_STRING", f"opeva:bench-{os.urandom(12).hex()}")
    t = a.seconds
    rows = [("single server (SQLite)", *r) for r in measure(ScaleSettings(), lambda p: {t * 0.27: killer(p, "prefect-server")}, a.rate, t)]
    scaled = ScaleSettings(prefect_servers=a.servers, api_replicas=a.replicas)
    rows += [(f"{a.servers} servers + {a.replicas} APIs", *r) for r in measure(
        scaled, lambda p: {t * 0.27: killer(p, "prefect-server-1"), t * 0.53: killer(p, "api-1")}, a.rate, t)]
    print(f"\n{a.rate:.0f} requests/s for {t:.0f} s per phase; latencies of answered requests in ms; per kind: p50")
    print(f"| {'layout':<22} | {'phase':<42} | {'n':>4} | {'failed':>6} | {'p50':>7} | {'p99':>7} | p50 by kind |")
    print(f"|{'-' * 24}|{'-' * 44}|{'-' * 6}|{'-' * 8}|{'-' * 9}|{'-' * 9}|-------------|")
    for layout, phase, d in rows:
        print(line(layout, phase, d))
    for layout, phase, d in rows:
        for o in d.failed[:3]:
            print(f"  {layout} / {phase}: at {o.at:.1f} s {o.what} -> {o.status} {o.error[:120]}")


if __name__ == "__main__":
    main()
