"""One real platform per test session, started the way `make up` starts it.

A Prefect server (SQLite in a temp home), the MongoDB-wire server, two hosts
(`local` and `second`, each a Docker work pool with its own worker) and the
REST API, all on free loopback ports. Docker is required when
OPEVA_REQUIRE_DOCKER=1 (CI sets it): then a missing engine fails the tests
instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.platform import Platform, free_port, prefect_cli  # noqa: E402

_HOME = Path(tempfile.mkdtemp(prefix="opeva-tests-"))
PLATFORM = Platform(home=_HOME, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=_HOME / "data")
# Prefect reads its settings from the environment: point this process at the test server first.
os.environ.update(PLATFORM.env())
os.environ.pop("MONGO_URI", None)
os.environ["MONGO_URI"] = PLATFORM.mongo_uri

HOSTS_YAML = f"""
hosts:
  - name: local
    concurrency_limit: 4
    volumes: ["{PLATFORM.data_dir}:{PLATFORM.data_dir}"]
    start_worker: true
  - name: second
    concurrency_limit: 2
    volumes: ["{PLATFORM.data_dir}:{PLATFORM.data_dir}"]
    start_worker: true
  - name: offline
    concurrency_limit: 1
    volumes: ["{PLATFORM.data_dir}:{PLATFORM.data_dir}"]
"""
HOSTS_FILE = _HOME / "hosts.yaml"
HOSTS_FILE.write_text(HOSTS_YAML)
os.environ["OPEVA_HOSTS_FILE"] = str(HOSTS_FILE)

REQUIRE_DOCKER = os.environ.get("OPEVA_REQUIRE_DOCKER") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart shared services run last, so they cannot disturb others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "disruptive: restarts shared services; runs last")


def _docker_ok() -> bool:
    from deployments.setup import docker_available

    return docker_available()


@pytest.fixture(scope="session")
def docker_ready() -> bool:
    """True when a Docker engine answers and the runtime image is current."""
    if not _docker_ok():
        if REQUIRE_DOCKER:
            pytest.fail("OPEVA_REQUIRE_DOCKER=1 but no Docker engine answers (run deployments/docker_engine.sh)")
        return False
    # Layer cache makes this a few seconds when only the code changed: the image
    # must hold the code under test.
    out = subprocess.run(["bash", str(ROOT / "deployments" / "build_image.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"building the runtime image failed:\n{out.stderr[-3000:]}")
    return True


@pytest.fixture(scope="session")
def platform(docker_ready: bool) -> Iterator[Platform]:
    PLATFORM.start_prefect_server()
    PLATFORM.start_mongo()
    types = PLATFORM.setup_pools(HOSTS_FILE, docker=docker_ready)
    PLATFORM.pool_types = types  # type: ignore[attr-defined]
    for host in ("local", "second"):
        PLATFORM.start_worker(host, types[host])
    PLATFORM.start_api()
    yield PLATFORM
    PLATFORM.stop()


@pytest.fixture
def needs_docker(platform: Platform, docker_ready: bool) -> None:
    if not docker_ready:
        pytest.skip("needs a Docker engine (set OPEVA_REQUIRE_DOCKER=1 to fail instead)")


@pytest.fixture(scope="session")
def storage(platform: Platform):
    from core.layout import DataRoot

    return DataRoot(platform.data_dir)


@pytest.fixture
def api(platform: Platform) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        yield client


API_TOKEN = "test-token-123"


@pytest.fixture(scope="session")
def secured_api_url(platform: Platform) -> Iterator[str]:
    """A second API process with bearer tokens turned on (OPEVA_API_TOKENS)."""
    secured = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                       api_port=free_port(), data_dir=platform.data_dir)
    secured.start_api(OPEVA_API_TOKENS=f"other-token,{API_TOKEN}")
    yield secured.api_url
    secured.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_gateway(fn: Callable[..., Any]) -> Any:
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway

    async with get_client() as client:
        return await fn(PrefectGateway(client))


def gateway_call(fn: Callable[..., Any]) -> Any:
    """Run ``await fn(gateway)`` against the test Prefect server."""
    return asyncio.run(_with_gateway(fn))


def wait_for(predicate: Callable[[], Any], timeout: float = 120, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_run(job_id: str):
    return gateway_call(lambda g: g.read_run(job_id))


def wait_final(job_id: str, timeout: float = 180):
    def done():
        fr = read_run(job_id)
        return fr if fr.state and fr.state.is_final() else None

    return wait_for(done, timeout, what=f"job {job_id} to finish")


def experiment(name: str = "test", run_name: str = "run") -> dict:
    return {"experiment": {"name": name, "run_name": run_name}}


def prefect_cmd(*args: str) -> list[str]:
    """The ``prefect`` CLI, talking to the test server (PREFECT_API_URL is in the environment)."""
    return prefect_cli() + list(args)


def sh(script: str) -> list[str]:
    """A simulator command: a shell script using the contract's environment."""
    return ["sh", "-c", script]
