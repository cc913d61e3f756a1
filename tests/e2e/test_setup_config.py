"""``make setup`` while ``make up`` runs: it reads the configuration ``make up`` runs with
(core.settings.running_settings, from <home>/platform.json), so editing the hosts file and
running it changes what was edited and nothing else; it refuses, saying what is wrong,
when it cannot know that configuration or would contradict it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from deployments.platform import PROJECT_ROOT, free_port
from helpers import wait_for

HOSTS = """hosts:
  - name: local
    concurrency_limit: {limit}
    volumes: ["${{OPEVA_DATA_DIR}}:${{OPEVA_DATA_DIR}}"]
    start_worker: true
    simulator_image: opeva-test/setup-sim
"""


def clean_env(**extra: str) -> dict[str, str]:
    """A shell that has none of the platform's variables (what a user who opens a new terminal has)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPEVA_", "PREFECT_", "MONGO_")) or k == "OPEVA_PREFECT_START_TIMEOUT"}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), **extra}


def make_setup(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployments.setup"], env=clean_env(**env), cwd=str(PROJECT_ROOT),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def made_up(docker_ready):
    """``deployments.up.run()`` (what ``make up`` runs) on free ports, with a non-default image."""
    assert docker_ready
    home = Path(tempfile.mkdtemp(prefix="opeva-setup-"))
    hosts = home / "hosts.yaml"
    hosts.write_text(HOSTS.format(limit=2))
    image = os.environ.get("OPEVA_IMAGE") or "opeva-runtime:0.1.0"
    env = clean_env(OPEVA_HOME=str(home), OPEVA_HOSTS_FILE=str(hosts), OPEVA_IMAGE=image, OPEVA_PREFECT_PORT=str(free_port()),
                    OPEVA_API_PORT=str(free_port()), OPEVA_MONGO_PORT=str(free_port()))
    log = open(home / "up.log", "wb")
    up = "from deployments.up import run; raise SystemExit(run())"  # what `make up` runs
    proc = subprocess.Popen([sys.executable, "-c", up], env=env, cwd=str(PROJECT_ROOT), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: (home / "platform.json").exists() or proc.poll() is not None, 400, interval=1, what="make up to start")
        assert proc.poll() is None, (home / "up.log").read_text()[-3000:]
        yield {"home": home, "hosts": hosts, "image": image, "env": env}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def pool(made_up) -> dict:
    port = made_up["env"]["OPEVA_PREFECT_PORT"]
    user, password = (made_up["home"] / "prefect" / "auth_string").read_text().strip().split(":", 1)
    r = httpx.get(f"http://127.0.0.1:{port}/api/work_pools/local", auth=(user, password), timeout=30)
    r.raise_for_status()
    return r.json()


def test_editing_the_hosts_file_and_running_setup_changes_only_that(made_up):
    before = pool(made_up)
    assert before["concurrency_limit"] == 2 and before["base_job_template"]["job_configuration"]["image"] == made_up["image"]
    made_up["hosts"].write_text(HOSTS.format(limit=3))
    out = make_setup(OPEVA_HOME=str(made_up["home"]))  # no OPEVA_IMAGE, no ports, no credentials: read from the running platform
    assert out.returncode == 0, out.stdout + out.stderr
    after = pool(made_up)
    assert after["concurrency_limit"] == 3
    # the running worker holds the limit it started with (--limit, deployments/platform.py worker_cli): setup says so
    assert "concurrency_limit raised from 2 to 3" in out.stdout + out.stderr and "restart the worker" in out.stdout + out.stderr
    assert after["base_job_template"]["job_configuration"]["image"] == made_up["image"]  # the runtime image is unchanged


def test_setup_refuses_what_contradicts_or_cannot_find_the_running_platform(made_up, tmp_path):
    other = make_setup(OPEVA_HOME=str(made_up["home"]), OPEVA_IMAGE="opeva-runtime:something-else")
    assert other.returncode != 0 and "OPEVA_IMAGE=opeva-runtime:something-else" in other.stderr and made_up["image"] in other.stderr
    nowhere = make_setup(OPEVA_HOME=str(tmp_path))
    assert nowhere.returncode != 0 and "platform.json" in nowhere.stderr and "make up" in nowhere.stderr
    assert pool(made_up)["base_job_template"]["job_configuration"]["image"] == made_up["image"]
