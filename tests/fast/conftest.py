"""The fast tier (``make check``): real services, no Docker engine.

A Prefect server on SQLite, the MongoDB-wire server and the REST API, on free
loopback ports; the hosts are process work pools with no worker, so a submitted
job stays ``queued`` (what the API does with it is what these tests check).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.platform import Platform
from helpers import hosts_yaml, new_platform, pointed_at


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="opeva-check-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(hosts_yaml(platform.data_dir))
    with pointed_at(platform, hosts_file):
        try:
            platform.start_prefect_server()
            platform.start_mongo()
            platform.pool_types = platform.setup_pools(hosts_file, docker=False)  # type: ignore[attr-defined]
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
            yield platform
        finally:
            platform.stop()
