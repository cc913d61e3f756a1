"""The scaled layout (deployments/scaled.py, ``OPEVA_PREFECT_SERVERS=2 OPEVA_API_REPLICAS=2``):
PostgreSQL, Redis, two Prefect API servers and one services process, two OPEVA API
replicas, all behind haproxy. A real job runs end to end through it; then one Prefect
server and one API replica are killed during a stream of ~20 requests/s and not one
request fails; Prefect's shared state really is in Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from deployments.platform import Platform
from deployments.scaled import Layout, ScaleSettings, start_apis, start_platform_front
from helpers import experiment, new_platform, sh, wait_for
from tools.load_drill import percentile, run_drill

@pytest.fixture(scope="module")
def scaled(docker_ready) -> Platform:
    if not docker_ready:
        pytest.fail("the scaled layout's job runs in a Docker container: start an engine (deployments/docker_engine.sh)")
    home = Path(tempfile.mkdtemp(prefix="opeva-scaled-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    data = platform.data_dir
    # "idle" has no worker: the drill's submissions stay queued there (no container per request).
    hosts_file.write_text(f"hosts:\n  - name: local\n    concurrency_limit: 2\n    volumes: ['{data}:{data}']\n"
                          f"  - name: idle\n    concurrency_limit: 1\n    volumes: ['{data}:{data}']\n")
    layout = Layout.plan(ScaleSettings(prefect_servers=2, api_replicas=2))
    try:
        start_platform_front(platform, ScaleSettings(prefect_servers=2, api_replicas=2), layout)
        platform.start_mongo()
        types = platform.setup_pools(hosts_file, docker=True)
        platform.start_worker("local", types["local"])
        start_apis(platform, layout, OPEVA_HOSTS_FILE=str(hosts_file), MONGO_URI=platform.mongo_uri)
        yield platform
    finally:
        platform.stop()


def service(platform: Platform, name: str):
    return next(s for s in platform.services if s.name == name)


def test_the_layout_is_what_was_asked_for(scaled):
    names = [s.name for s in scaled.services]
    for expected in ("postgres", "redis", "prefect-server-1", "prefect-server-2", "prefect-services", "haproxy", "api-1", "api-2"):
        assert expected in names, names
    assert names.index("prefect-server-1") < names.index("prefect-server-2") < names.index("prefect-services") < names.index("haproxy")
    log1 = service(scaled, "prefect-server-1").log_path.read_text(errors="replace")
    assert "Running migration" not in log1 and "alembic" not in log1.lower()  # migrated once, before any server
    assert not list((scaled.home / "prefect").glob("*.db")), "no server may fall back to SQLite"


def test_a_job_runs_end_to_end_through_the_balancer(scaled):
    script = 'echo "[INFO] scaled"; echo \'{"status": "completed", "summary": "scaled", "metrics": {}}\' > "$OPEVA_RESULT_FILE"'
    with httpx.Client(base_url=scaled.api_url, timeout=30) as api:
        r = api.post("/run-simulation", json={"config": experiment("scaled", "e2e"), "command": sh(script), "target_host": "local"})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        wait_for(lambda: api.get(f"/status/{job_id}").json()["status"] in ("finished", "failed"), 240, what="the job to end")
        assert api.get(f"/status/{job_id}").json()["status"] == "finished"
        assert api.get(f"/result/{job_id}").json()["summary"] == "scaled"
        assert "[INFO] scaled" in api.get(f"/logs/{job_id}", params={"follow": False}).text


def test_prefects_shared_state_is_in_redis(scaled):
    """Events went through Redis streams (prefect_redis.messaging), not a per-process queue."""
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli comes with Debian's redis-server"
    port = Path(scaled.home / "redis" / "redis.conf").read_text().split("port ", 1)[1].split()[0]
    env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": (scaled.home / "redis" / "password").read_text().strip()}
    keys = subprocess.run([cli, "-p", port, "--scan"], capture_output=True, text=True, env=env).stdout.split()
    assert "events" in keys, keys[:50]
    assert subprocess.run([cli, "-p", port, "type", "events"], capture_output=True, text=True, env=env).stdout.strip() == "stream"
    refused = subprocess.run([cli, "-p", port, "ping"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert "NOAUTH" in refused.stdout + refused.stderr  # no password, no Redis
    policy = subprocess.run([cli, "-p", port, "info", "memory"], capture_output=True, text=True, env=env).stdout
    assert "maxmemory_policy:noeviction" in policy


def test_killing_a_prefect_server_and_an_api_replica_costs_no_request(scaled):
    def kill(name: str):
        def action() -> None:
            os.killpg(service(scaled, name).proc.pid, signal.SIGKILL)
        return name, action

    body = {"config": experiment("drill", "r"), "command": sh("true"), "target_host": "idle"}
    # The test counts answers (availability); how fast they come is bench/scaled.py's table. A busy
    # 2-core machine can take seconds per answer, so the client waits up to 60 s before calling it a failure.
    drill = run_drill(scaled.api_url, body, rate=20, seconds=15, faults={4.0: kill("prefect-server-1"), 8.0: kill("api-1")}, timeout=60)
    assert [name for _, name in drill.faults] == ["prefect-server-1", "api-1"]
    assert service(scaled, "prefect-server-1").proc.poll() is not None and service(scaled, "api-1").proc.poll() is not None
    assert len(drill.outcomes) == 300
    assert not drill.failed, [(round(o.at, 2), o.what, o.status, o.error) for o in drill.failed[:10]]
    after = [o for o in drill.outcomes if o.at > 8.5]
    assert after and {o.what for o in after} >= {"submit", "status"}  # the stream went on after both kills
    print(f"\n{len(drill.outcomes)} requests, 0 failed, p50 {percentile(drill.latencies(), .5) * 1000:.0f} ms, "
          f"p99 {percentile(drill.latencies(), .99) * 1000:.0f} ms")
