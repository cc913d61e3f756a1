"""Hosts without the shared data root (``data: local``, docs/data-local.md), for real: a lab host
(deployments/lab.py ``local_data``) whose engine, containers and worker live in their own mount
namespace with a private folder over the data root's path, so it truly cannot see the server's.
Its jobs' inputs go in and their folders come back through its engine (flows/host_data.py on the
control pool). Needs root and the runtime image (OPEVA_IMAGE: the image of this code)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from core.settings import PlatformSettings
from deployments.lab import Lab
from deployments.lab_net import LabSpec, free_subnet, leftovers
from deployments.platform import Platform
from helpers import lab_started, new_platform, sh, wait_for

HOST = "lab-1"


@pytest.fixture(scope="module")
def local_lab(docker_ready: bool) -> Iterator[tuple[Platform, Lab]]:
    assert docker_ready and os.geteuid() == 0, "the lab needs root and a Docker engine"
    home = Path(tempfile.mkdtemp(prefix="opeva-dl-"))
    platform = new_platform(home)
    platform.data_dir.mkdir(parents=True, exist_ok=True)
    spec = LabSpec(tag=f"od{os.getpid() % 100000}", hosts=1, subnet=free_subnet(150 + os.getpid() % 100), state_dir=home / "lab",
                   local_data=(HOST,), data_root=platform.data_dir)
    lab = Lab.create(spec, [PlatformSettings().runtime_image])
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(yaml.safe_dump({"hosts": lab.host_entries(platform.data_dir)}))
    try:
        with lab_started(platform, lab, hosts_file, control=True):
            yield platform, lab
    finally:
        platform.stop()
        lab.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def api(local_lab) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_lab[0].api_url, timeout=30) as client:
        yield client


def _on_host(lab: Lab, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*lab.enter(HOST), *argv], capture_output=True, text=True, timeout=60)


def _final(api: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    return wait_for(lambda: (b := api.get(f"/status/{job_id}").json())["status"] in ("finished", "failed", "stopped", "canceled") and b,
                    timeout, 1, what=f"job {job_id} final")


def _config(platform: Platform, name: str, **extra: object) -> str:
    (platform.data_dir / "configs").mkdir(parents=True, exist_ok=True)
    (platform.data_dir / "configs" / f"{name}.yaml").write_text(yaml.safe_dump({"experiment": {"name": "dl", "run_name": name},
                                                                                 "marker": f"staged-{name}", **extra}))
    return f"configs/{name}.yaml"


def _copy_log(job_id: str) -> list[str]:
    """The staging flow's own words about the copies of ``job_id`` (its Prefect logs): the copy times."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["stage-host-data"])), limit=200)
                if (r.parameters or {}).get("job_id") == job_id]
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs]))) if runs else []
    return [entry.message for entry in logs if "copied" in entry.message or "error_code" in entry.message or "over its" in entry.message]


def test_the_local_host_cannot_see_the_shared_data_root(local_lab):
    platform, lab = local_lab
    (platform.data_dir / "only-on-the-server").write_text("x")
    assert _on_host(lab, "test", "-e", str(platform.data_dir / "only-on-the-server")).returncode == 1
    assert _on_host(lab, "test", "-d", str(platform.data_dir)).returncode == 0  # its own folder at the same path


def test_a_job_gets_its_inputs_and_its_outputs_come_back_without_links_or_fifos(local_lab, api):
    platform, lab = local_lab
    dataset = platform.data_dir / "datasets" / "dl-set"
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / "schema.json").write_text('{"staged": "dataset"}')
    script = ('grep -q staged-inputs "$OPEVA_CONFIG_PATH" && echo saw-the-staged-config; '
              'grep -q staged "$OPEVA_DATA_DIR/datasets/dl-set/schema.json" && echo saw-the-staged-dataset; mkdir -p "$OPEVA_JOB_DIR/results"; '
              'echo out > "$OPEVA_JOB_DIR/results/out.txt"; ln -s /etc/passwd "$OPEVA_JOB_DIR/results/link"; '
              'mkfifo "$OPEVA_JOB_DIR/results/fifo"; echo '"'"'{"progress": 1.0}'"'"' > "$OPEVA_PROGRESS_FILE"')
    started = time.monotonic()
    r = api.post("/run-simulation", json={"config_path": _config(platform, "inputs", dataset="dl-set"), "command": sh(script), "target_host": HOST})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    body = _final(api, job_id)
    assert body["status"] == "finished", (body, api.get(f"/logs/{job_id}").text[-3000:])
    job = platform.data_dir / "jobs" / job_id
    wait_for(lambda: (job / "results" / "out.txt").exists(), 60, 1, what="the outputs back in the server's job folder")
    print(f"\nDATA-LOCAL submit -> outputs back: {time.monotonic() - started:.1f} s")
    for line in wait_for(lambda: len(lines := _copy_log(job_id)) >= 2 and lines, 60, 1, what="the staging flow's copy log"):
        print(f"DATA-LOCAL {line}")
    assert (job / "results" / "out.txt").read_text() == "out\n"
    assert not (job / "results" / "link").exists() and not (job / "results" / "link").is_symlink()
    assert not (job / "results" / "fifo").exists()
    logs = api.get(f"/logs/{job_id}").text
    assert "saw-the-staged-config" in logs and "saw-the-staged-dataset" in logs, logs[-3000:]
    wait_for(lambda: _on_host(lab, "test", "-e", str(job)).returncode == 1, 60, 1, what="the host's copy removed")

    again = api.post(f"/ops/jobs/{job_id}/requeue")  # a requeued job waits for its inputs too
    assert again.status_code == 200, again.text
    body = _final(api, again.json()["job_id"])
    assert body["status"] == "finished", body
    assert "saw-the-staged-dataset" in api.get(f"/logs/{again.json()['job_id']}").text


def test_a_reference_job_finishes_with_its_result_in_the_servers_job_folder(local_lab, api):
    platform, _lab = local_lab
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "dl", "run_name": "reference"}}, "target_host": HOST})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    body = _final(api, job_id, 400)
    assert body["status"] == "finished", (body, api.get(f"/logs/{job_id}").text[-3000:])
    result = platform.data_dir / "jobs" / job_id / "results" / "result.json"
    wait_for(result.exists, 60, 1, what="the reference job's result back on the server")
    assert api.get(f"/result/{job_id}").json().get("status") != "pending"
    assert api.get(f"/logs/{job_id}").text.strip()


def test_a_stopped_job_has_its_outputs_back(local_lab, api):
    platform, _lab = local_lab
    script = 'mkdir -p "$OPEVA_JOB_DIR/results"; echo partial > "$OPEVA_JOB_DIR/results/partial.txt"; while true; do echo busy; sleep 1; done'
    r = api.post("/run-simulation", json={"config_path": _config(platform, "stop"), "command": sh(script), "target_host": HOST})
    job_id = r.json()["job_id"]
    wait_for(lambda: "busy" in api.get(f"/logs/{job_id}").text, 240, 1, what="the job running on the local host")
    assert api.post(f"/stop/{job_id}").status_code == 200
    assert _final(api, job_id)["status"] in ("stopped", "canceled")
    partial = platform.data_dir / "jobs" / job_id / "results" / "partial.txt"
    wait_for(partial.exists, 90, 1, what="the stopped job's outputs back")
    assert partial.read_text() == "partial\n"


def test_a_copy_that_fails_ends_the_job_failed_with_artifact_sync_failed(local_lab, api):
    platform, _lab = local_lab
    script = 'mkdir -p "$OPEVA_JOB_DIR/many" && cd "$OPEVA_JOB_DIR/many" && i=0; while [ $i -le 10001 ]; do : > f$i; i=$((i+1)); done'
    r = api.post("/run-simulation", json={"config_path": _config(platform, "many"), "command": sh(script), "target_host": HOST})
    job_id = r.json()["job_id"]

    def failed() -> dict | None:
        b = api.get(f"/status/{job_id}").json()
        return b if b["status"] == "failed" else None

    body = wait_for(failed, 300, 2, what="the job failed by its copy")
    assert body.get("error_code") == "artifact_sync_failed", body
    info = api.get(f"/job-info/{job_id}").json()
    assert "over its bounds" in str(info), info


def test_the_teardown_leaves_no_mount_namespace_or_process(local_lab):
    platform, lab = local_lab
    engine = lab.engines[HOST].pid
    platform.stop()
    assert lab.close() == [] and leftovers(lab.spec) == []
    assert not Path(f"/proc/{engine}").exists()
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(lab.spec.state_dir) in line]
