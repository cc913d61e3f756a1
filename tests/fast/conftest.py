"""The fast tier (``make check``): real services, no Docker engine.

A Prefect server on SQLite, the MongoDB-wire server and the REST API, on free
loopback ports; the hosts are process work pools with no worker, so a submitted
job stays ``queued`` (what the API does with it is what these tests check).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployments.platform import Platform
from helpers import running_platform


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with running_platform("opeva-check-", docker=False) as platform:
        yield platform
