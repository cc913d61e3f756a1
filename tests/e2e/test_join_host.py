"""``make host NAME=<name>`` (deployments/join_host.py, issue 22 item 2): a host joins with only the
server's URL and credentials. Its checks refuse, with a reason, bad credentials, an unknown host and
a mount that is not the platform's data root; then it becomes the host's worker and a job submitted
through the REST API runs on it. Here the "other machine" is this one: the session platform's
``second`` worker is stopped and ``make host`` takes its place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.data_root_id import MARKER
from deployments.platform import PROJECT_ROOT
from helpers import experiment, read_run, sh, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")


def _join(platform, name: str, *extra: str, auth: str | None = "same", wait: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}  # only what `make host` is told
    env.update(OPEVA_PREFECT_API_URL=platform.prefect_api_url, PYTHONPATH=str(PROJECT_ROOT))
    token = platform.prefect_auth_string if auth == "same" else auth
    if token:
        env["OPEVA_PREFECT_AUTH_STRING"] = token
    cmd = [sys.executable, "-m", "deployments.join_host", "--name", name, *extra]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
                            start_new_session=True)


def test_the_checks_say_what_is_wrong_and_pass_on_a_sound_host(platform):
    if platform.prefect_auth_string:
        out = _join(platform, "second", "--check", auth="opeva:wrong")
        assert out.returncode == 2 and "refused the credentials" in out.stderr, out.stderr
    out = _join(platform, "nowhere", "--check")
    assert out.returncode == 2 and "no pool 'nowhere'" in out.stderr and "make setup" in out.stderr, out.stderr

    out = _join(platform, "second", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    runtime image" in out.stdout and "is the platform's" in out.stdout, out.stdout

    marker = Path(platform.data_dir) / MARKER
    moved = marker.with_name(MARKER + ".away")
    marker.rename(moved)  # the mount is an empty folder of the same name, as a forgotten NFS mount leaves it
    try:
        out = _join(platform, "second", "--check")
    finally:
        moved.rename(marker)
    assert out.returncode == 2 and "holds the platform's data root" in out.stdout and "worker was not started" in out.stderr, out.stdout


def test_a_joined_host_runs_a_job_submitted_through_the_api(platform, api):
    old = next(s for s in platform.services if s.name.startswith("worker-second") and s.proc.poll() is None)
    os.killpg(old.proc.pid, signal.SIGTERM)
    old.proc.wait(30)
    joined = _join(platform, "second", wait=False)
    try:
        r = api.post("/run-simulation", json={"config": experiment("joined", "r"), "command": sh("echo ran on the joined host"),
                                              "target_host": "second"})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180,
                          what="the job on the joined host")
        assert status == "finished", api.get(f"/logs/{job_id}").text[-2000:]
        assert read_run(job_id).work_pool_name == "second"
        assert "ran on the joined host" in api.get(f"/logs/{job_id}").text
    finally:
        os.killpg(joined.pid, signal.SIGTERM)
        out, _ = joined.communicate(timeout=60)
        print(out[-3000:])
        platform.spawn(old)  # second's own worker again, for the next tests
    assert "starting the worker of second" in out
