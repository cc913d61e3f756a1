"""Fixtures both tiers share. Each tier's own conftest defines ``platform``:

- ``tests/fast`` (``make check``): a Prefect server, the MongoDB-wire server and the
  REST API, with process work pools and no worker, so jobs stay queued; no Docker.
- ``tests/e2e`` (``make test`` runs both tiers): the same plus Docker work pools,
  workers and containers, as ``make up`` runs them.

No fixture here starts anything by itself, and nothing runs at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers import API_TOKEN


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart shared services run last, so they cannot disturb others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def storage(platform):
    from core.layout import DataRoot

    return DataRoot(platform.data_dir)


@pytest.fixture
def api(platform) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def mongo(platform):
    import pymongo

    with pymongo.MongoClient(platform.mongo_uri, tz_aware=True) as client:
        yield client


@pytest.fixture(scope="session")
def secured_api_url(platform) -> Iterator[str]:
    """A second API process with bearer tokens turned on (OPEVA_API_TOKENS)."""
    from deployments.platform import Platform, free_port

    secured = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                       api_port=free_port(), data_dir=platform.data_dir)
    secured.start_api(OPEVA_API_TOKENS=f"other-token,{API_TOKEN}", OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
    yield secured.api_url
    secured.stop()
