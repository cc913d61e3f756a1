"""Start a throw-away platform for a benchmark (same code as `make up` and the tests)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import HEADER, pct, row  # noqa: E402,F401  (re-exported: the benches import them from here)
from deployments.platform import Platform, free_port  # noqa: E402

# Prefect reads its settings when first imported: point it at the bench server now.
# One server credential for every platform this bench starts (each gets a fresh home, and
# the client below is configured once).
os.environ.setdefault("OPEVA_PREFECT_AUTH_STRING", f"opeva:bench-{os.urandom(12).hex()}")
_HOME = Path(tempfile.mkdtemp(prefix="opeva-bench-"))
PLATFORM = Platform(home=_HOME, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=_HOME / "data")
HOSTS_FILE = _HOME / "hosts.yaml"
os.environ.update(PLATFORM.env(OPEVA_HOSTS_FILE=str(HOSTS_FILE)))


@contextmanager
def running_platform(hosts: dict[str, bool], *, api: bool = False, database: str = "sqlite", concurrency: int = 4,
                     host_extra: str = "") -> Iterator[Platform]:
    """``hosts`` maps host name -> start a worker for it; ``database`` is sqlite or postgres.

    Each call gets a fresh home (database, data) on the same ports, so one bench can
    compare two set-ups in one run with the Prefect client it imported once.
    """
    from deployments.setup import docker_available

    home = Path(tempfile.mkdtemp(prefix=f"opeva-bench-{database}-"))
    p = Platform(home=home, prefect_port=PLATFORM.prefect_port, mongo_port=PLATFORM.mongo_port, api_port=PLATFORM.api_port, data_dir=home / "data")
    hosts_file = HOSTS_FILE
    hosts_file.write_text(
        "hosts:\n" + "".join(f"  - name: {h}\n    concurrency_limit: {concurrency}\n    volumes: ['{p.data_dir}:{p.data_dir}']\n{host_extra}" for h in hosts)
    )
    os.environ["OPEVA_DATA_DIR"] = str(p.data_dir)
    try:
        if database == "postgres":
            p.start_postgres()
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
