"""The production path: the Prefect server on PostgreSQL (Debian's binaries, a private
cluster started as an unprivileged user in a temp dir, as `make up` does with
OPEVA_DATABASE=postgres), a Docker worker and the REST API run a job end to end, and
the runs live in PostgreSQL (no SQLite file is made)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from deployments.platform import Platform
from deployments.postgres import DB_NAME, DB_USER, LocalPostgres
from helpers import experiment, new_platform, sh, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")


@pytest.fixture(scope="module")
def pg_platform(docker_ready) -> Platform:
    home = Path(tempfile.mkdtemp(prefix="opeva-pg-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    data = platform.data_dir
    hosts_file.write_text(f"hosts:\n  - name: local\n    concurrency_limit: 2\n    volumes: ['{data}:{data}']\n")
    try:
        url = platform.start_postgres()
        assert url.startswith("postgresql+asyncpg://")
        platform.start_prefect_server()
        platform.start_mongo()
        types = platform.setup_pools(hosts_file, docker=True)
        platform.start_worker("local", types["local"])
        platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file), MONGO_URI=platform.mongo_uri)
        yield platform
    finally:
        platform.stop()


def psql(platform: Platform, sql: str) -> str:
    pg = LocalPostgres(platform.home / "postgres", int(platform.database_url.rsplit(":", 1)[1].split("/")[0]))
    out = pg._run(str(pg.bindir / "psql"), "-U", DB_USER, "-d", DB_NAME, "-tAc", sql)  # with the generated password
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_job_runs_end_to_end_on_the_postgresql_backed_server(pg_platform):
    script = 'echo "[INFO] on postgres"; echo \'{"status": "completed", "summary": "pg", "metrics": {}}\' > "$OPEVA_RESULT_FILE"'
    with httpx.Client(base_url=pg_platform.api_url, timeout=30) as api:
        r = api.post("/run-simulation", json={"config": experiment("pg", "e2e"), "command": sh(script)})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        wait_for(lambda: api.get(f"/status/{job_id}").json()["status"] in ("finished", "failed"), 240, what="the job to end")
        assert api.get(f"/status/{job_id}").json()["status"] == "finished"
        assert api.get(f"/result/{job_id}").json()["summary"] == "pg"
        assert "[INFO] on postgres" in api.get(f"/logs/{job_id}", params={"follow": False}).text
        assert api.get("/health").status_code == 200
    states = psql(pg_platform, f"SELECT string_agg(name, ',' ORDER BY timestamp) FROM flow_run_state WHERE flow_run_id = '{job_id}'")
    assert states.startswith("Scheduled") and states.endswith("Completed") and "Running" in states
    assert not list((pg_platform.home / "prefect").glob("*.db")), "the server must not fall back to SQLite"


def test_postgres_runs_as_an_unprivileged_user(pg_platform):
    pid = next(s.proc.pid for s in pg_platform.services if s.name == "postgres")
    uid = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    port = pg_platform.database_url.rsplit(":", 1)[1].split("/")[0]
    assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening


def test_a_login_without_the_password_is_refused(pg_platform):
    """Attack 2 of issue 21: any loopback login was a superuser (initdb -A trust). Now a
    login without the password fails, from the host as root and as PostgreSQL's account,
    over TCP and the socket, while the platform keeps working with its password."""
    import os
    import stat

    from deployments.postgres import drop_to

    port = int(pg_platform.database_url.rsplit(":", 1)[1].split("/")[0])
    pg = LocalPostgres(pg_platform.home / "postgres", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for target in (("-h", "127.0.0.1"), ("-h", str(pg.root))):
        for user in (None, pg.user):
            out = subprocess.run([str(pg.bindir / "psql"), "-w", *target, "-p", str(port), "-U", DB_USER, "-d", DB_NAME, "-tAc", "SELECT 1"],
                                 env=env, capture_output=True, text=True, cwd="/", **drop_to(user))
            assert out.returncode != 0 and out.stdout.strip() != "1", (target, user, out.stdout)
    assert stat.S_IMODE(pg.password_file.stat().st_mode) == 0o600
    assert psql(pg_platform, "SELECT 1") == "1"
    method = psql(pg_platform, "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules")
    assert method == "scram-sha-256", method
