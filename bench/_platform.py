"""Start a throw-away platform for a benchmark (same code as `make up` and the tests)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.platform import Platform, free_port  # noqa: E402

# Prefect reads its settings when first imported: point it at the bench server now.
_HOME = Path(tempfile.mkdtemp(prefix="opeva-bench-"))
PLATFORM = Platform(home=_HOME, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=_HOME / "data")
HOSTS_FILE = _HOME / "hosts.yaml"
os.environ.update(PLATFORM.env(OPEVA_HOSTS_FILE=str(HOSTS_FILE)))


@contextmanager
def running_platform(hosts: dict[str, bool], *, api: bool = False) -> Iterator[Platform]:
    """``hosts`` maps host name -> start a worker for it."""
    from deployments.setup import docker_available

    p, hosts_file = PLATFORM, HOSTS_FILE
    hosts_file.write_text(
        "hosts:\n" + "".join(f"  - name: {h}\n    concurrency_limit: 4\n    volumes: ['{p.data_dir}:{p.data_dir}']\n" for h in hosts)
    )
    try:
        p.start_prefect_server()
        p.start_mongo()
        docker = docker_available()
        if not docker:
            raise SystemExit("this benchmark needs a Docker engine (bash deployments/docker_engine.sh)")
        types = p.setup_pools(hosts_file, docker=True)
        for host, worker in hosts.items():
            if worker:
                p.start_worker(host, types[host])
        if api:
            p.start_api()
        yield p
    finally:
        p.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def row(name: str, values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    return f"| {name:<44} | {len(values):>3} | {pct(values, .5) * scale:>9.3f} | {pct(values, .95) * scale:>9.3f} | {statistics.mean(values) * scale:>9.3f} | {unit:<4} |"


HEADER = f"| {'measure':<44} | {'n':>3} | {'p50':>9} | {'p95':>9} | {'mean':>9} | unit |\n|{'-' * 46}|{'-' * 5}|{'-' * 11}|{'-' * 11}|{'-' * 11}|------|"
