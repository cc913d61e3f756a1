"""A host whose engine is reached over TCP with TLS (core/engines.py, docs/hosts.md): a second
dockerd on loopback with client certificates required (tests/e2e/tls_engine.py), named in the
platform's hosts file with ``docker_url`` + ``docker_tls``. Through the real API: the image
check at submit reads that engine (present there: accepted; present only on the local engine:
refused naming image and host), ``/job-images/versions`` lists that engine's tags, and without
the client certificate the engine is reported unreachable, never replaced by the local socket."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from helpers import gateway_call
from tls_engine import TlsEngine, build_tiny_image, tls_engine

pytestmark = pytest.mark.usefixtures("needs_docker")

HOST = "tls-engine"
REPOSITORY = "opeva-test/tls-sim"  # only this test's host may run it
REMOTE_TAG, LOCAL_TAG = "1.0", "only-local"
CONFIG = {"experiment": {"name": "tls", "run_name": "engine"}, "episodes": 1, "simulation": {"buildings": 2, "days": 2}}


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[TlsEngine]:
    missing = [tool for tool in ("dockerd", "openssl", "docker") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        why = f"a second dockerd needs root and {', '.join(missing) or 'its tools'}" if os.geteuid() != 0 else f"{', '.join(missing)} not installed"
        if os.environ.get("OPEVA_REQUIRE_DOCKER") == "1":
            pytest.fail(f"OPEVA_REQUIRE_DOCKER=1 but the TLS engine test cannot run: {why}")
        pytest.skip(f"{why} (set OPEVA_REQUIRE_DOCKER=1 to fail instead)")
    with tls_engine() as started:
        build_tiny_image(started.socket, f"{REPOSITORY}:{REMOTE_TAG}", tmp_path_factory.mktemp("remote-context"))
        yield started


@pytest.fixture(scope="module")
def local_only_image(tmp_path_factory) -> Iterator[str]:
    """A tag of the host's repository on the LOCAL engine only: it must not count for the TLS host."""
    ref = f"{REPOSITORY}:{LOCAL_TAG}"
    build_tiny_image(None, ref, tmp_path_factory.mktemp("local-context"))
    yield ref
    client = docker.from_env()
    try:
        client.images.remove(ref, force=True)
    finally:
        client.close()


def _write(path: Path, text: str) -> None:
    """Rewrite the hosts file and move its mtime on: the API re-reads it when the mtime changes."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    stamp = max(path.stat().st_mtime_ns, before + 1_000_000)
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def tls_host(platform, engine) -> Iterator[Callable[[bool], None]]:
    """Adds the TLS host to the platform's hosts file (with or without the client certificate);
    the file is put back afterwards."""
    path = platform.home / "hosts.yaml"
    original = path.read_text()

    def add(with_client_cert: bool) -> None:
        tls = {"ca_cert": engine.ca_cert, **({"client_cert": engine.client_cert, "client_key": engine.client_key} if with_client_cert else {})}
        block = ", ".join(f"{k}: {v}" for k, v in tls.items())
        _write(path, original + f"  - name: {HOST}\n    docker_url: {engine.url}\n    docker_tls: {{{block}}}\n"
                                f"    simulator_image: {REPOSITORY}\n")

    yield add
    _write(path, original)


def submit(api, tag: str):
    return api.post("/run-simulation", json={"config": CONFIG, "target_host": HOST, "image_tag": tag})


def run_count() -> int:
    return gateway_call(lambda g: g.list_runs(limit=1))[1]


def test_the_api_reads_a_tls_engine_and_never_the_local_socket_for_it(api, tls_host, local_only_image):
    tls_host(True)
    before = run_count()
    body = api.get("/job-images/versions", params={"repository": REPOSITORY}).json()
    assert body["hosts"] == [HOST] and body["reason"] is None, body
    assert [(t["name"], t["hosts"]) for t in body["tags"]] == [(REMOTE_TAG, [HOST])], body  # not the local engine's tag

    present = submit(api, REMOTE_TAG)  # the image check passes; this host has no pool, so Prefect's answer is next
    assert present.status_code == 503 and f"run-simulation/{HOST}" in present.json()["detail"], present.text
    absent = submit(api, LOCAL_TAG)
    assert absent.status_code == 400, absent.text
    assert f"Image '{REPOSITORY}:{LOCAL_TAG}' is not present on host '{HOST}'" in absent.json()["detail"] and absent.json()["host"] == HOST

    tls_host(False)  # the client certificate removed: the engine refuses the handshake
    down = api.get("/job-images/versions", params={"repository": REPOSITORY})
    assert down.status_code == 200 and down.json()["tags"] == [], down.text  # no local tag either
    reason = down.json()["reason"]
    assert f"host '{HOST}': Docker engine did not answer" in reason and "over TLS" in reason, reason
    refused = submit(api, REMOTE_TAG)
    assert refused.status_code == 400, refused.text
    assert f"cannot be checked on host '{HOST}': its Docker engine does not answer" in refused.json()["detail"], refused.text
    assert run_count() == before  # nothing was queued


def test_the_second_engine_is_its_own(engine, local_only_image):
    """The images of the test's engine are not the default engine's, and the other way round."""
    remote = subprocess.run(["docker", "-H", engine.socket, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert remote == [f"{REPOSITORY}:{REMOTE_TAG}"]
    client = docker.from_env()
    try:
        local = {t for image in client.images.list(name=REPOSITORY) for t in image.tags}
    finally:
        client.close()
    assert local == {f"{REPOSITORY}:{LOCAL_TAG}"}
