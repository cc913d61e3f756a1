"""The whole platform as ``make up`` runs it: Docker work pools, workers, containers.

A Prefect server (SQLite in a temp home), the MongoDB-wire server, two hosts with
a worker each (``local``, ``second``), one without (``offline``), the control pool's
worker (sweeps' parents) and the REST API,
on free loopback ports. Docker is required when OPEVA_REQUIRE_DOCKER=1 (CI sets
it): a missing engine then fails the tests instead of skipping them.

The Slurm modules share ``cluster``: a real Slurm per module (deployments/slurm_cluster.py), with
node2 in a network namespace where the module sets ``SLURM_SECOND_NODE = True``;
OPEVA_REQUIRE_SLURM=1 (CI) turns a missing Slurm into a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from deployments.platform import PROJECT_ROOT, Platform
from helpers import running_platform

REQUIRE_DOCKER = os.environ.get("OPEVA_REQUIRE_DOCKER") == "1"
REQUIRE_SLURM = os.environ.get("OPEVA_REQUIRE_SLURM") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "disruptive: restarts shared services; runs last")


@pytest.fixture(scope="session")
def docker_ready() -> bool:
    """True when a Docker engine answers and the runtime image holds the code under test."""
    from deployments.setup import docker_available

    if not docker_available():
        if REQUIRE_DOCKER:
            pytest.fail("OPEVA_REQUIRE_DOCKER=1 but no Docker engine answers (run deployments/docker_engine.sh)")
        return False
    # Layer cache makes this a few seconds when only the code changed.
    out = subprocess.run(["bash", str(PROJECT_ROOT / "deployments" / "build_image.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"building the runtime image failed:\n{out.stderr[-3000:]}")
    return True


@pytest.fixture(scope="session")
def platform(docker_ready: bool) -> Iterator[Platform]:
    with running_platform("opeva-tests-", docker=docker_ready, workers=("local", "second"), control=True) as platform:
        yield platform


@pytest.fixture
def needs_docker(platform: Platform, docker_ready: bool) -> None:
    if not docker_ready:
        pytest.skip("needs a Docker engine (set OPEVA_REQUIRE_DOCKER=1 to fail instead)")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[object]:
    """The module's Slurm cluster, SLURM_CONF exported to this process and its children (the worker,
    the API); afterwards nothing of it is left (a second node's namespace, relays and slurmd included)."""
    from deployments.slurm_cluster import SlurmCluster, SlurmUnavailable, missing

    second = getattr(request.module, "SLURM_SECOND_NODE", False)
    why = missing(second)
    if why:
        if REQUIRE_SLURM:
            pytest.fail(f"OPEVA_REQUIRE_SLURM=1 but {why}")
        pytest.skip(f"needs Slurm: {why} (set OPEVA_REQUIRE_SLURM=1 to fail instead)")
    try:
        c = SlurmCluster.start(second_node=second)
    except SlurmUnavailable as exc:
        pytest.fail(f"the test cluster did not start: {exc}")
    saved = os.environ.get("SLURM_CONF")
    os.environ.update(c.env())
    yield c
    c.stop()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved
    left = c.node2.leftovers() if c.node2 else []
    assert not left, f"the second node left {left}"
