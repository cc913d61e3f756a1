"""Runtime versions and images at submit, against the real Docker engine (core.images, docs/images.md):
what /job-images/versions offers is what the engine holds and runs; a refused repository, an
unknown tag or a missing image is a 400 at submit that names image and host, and no run is made;
the stand-in of OPEVA's image (tests/e2e/upstream_sim/) with its default config (MLflow's file
store under <base>/mlflow) finishes with /file-logs byte for byte its own log; a stopped job
leaves no container, supervisor included."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from helpers import gateway_call, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

IMAGE_DIR = Path(__file__).resolve().parent / "upstream_sim"
REPOSITORY = "opeva-test/opeva-simulator"  # the local host's simulator_image in the test hosts file (tests/helpers.py)
IMAGE = f"{REPOSITORY}:1.0"


@pytest.fixture(scope="module")
def upstream_image() -> str:
    """The stand-in, FROM the Debian base (python3 only), plus tags upstream would have beside it."""
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(IMAGE_DIR)], check=True, capture_output=True)
    client = docker.from_env()
    for extra in ("1.0-jetson-r35.3.1", "latest", "sha-0bc57d9", "buildcache"):
        client.images.get(IMAGE).tag(REPOSITORY, extra)
    return IMAGE


def config(storage, name: str, **simulator) -> str:
    """An upstream-style config (``metadata``, ``tracking``), stored as JSON, which is also YAML."""
    body = {"metadata": {"experiment_name": "upstream", "run_name": name}, "experiment": {"name": "upstream", "run_name": name},
            "simulator": simulator}
    storage.configs_dir.mkdir(parents=True, exist_ok=True)
    (storage.configs_dir / f"{name}.yaml").write_text(json.dumps(body))
    return f"configs/{name}.yaml"


def run_count() -> int:
    return gateway_call(lambda g: g.list_runs(limit=1))[1]


def wait_status(api, job_id: str, wanted: set[str], timeout: float = 300) -> dict:
    return wait_for(lambda: (s := api.get(f"/status/{job_id}").json())["status"] in wanted and s, timeout, what=f"{job_id} to be {wanted}")


def containers_of(job_id: str) -> list:
    """Every container of the job, exited ones included: the simulator (labelled by job) and the supervisor (by flow run)."""
    client = docker.from_env()
    sims = client.containers.list(ignore_removed=True, all=True, filters={"label": [f"opeva.job_id={job_id}"]})
    sups = client.containers.list(ignore_removed=True, all=True, filters={"label": ["opeva.role=supervisor", f"io.prefect.flow-run-id={job_id}"]})
    return sims + sups


def test_versions_offer_the_tags_on_the_engine_with_readiness(api, upstream_image):
    body = api.get("/job-images/versions").json()  # as the UI asks: no repository, the host's simulator_image
    assert body["repository"] == REPOSITORY and body["sif_repository"] == f"{REPOSITORY}_sif" and body["hosts"] == ["local"]
    names = [t["name"] for t in body["tags"]]
    assert {"1.0", "reference"} <= set(names) and not {"latest", "sha-0bc57d9", "buildcache", "1.0-jetson-r35.3.1"} & set(names), names
    tag = next(t for t in body["tags"] if t["name"] == "1.0")
    assert tag["jetson_ready"] is True and tag["union_ready"] is False and tag["deucalion_ready"] is False
    assert tag["hosts"] == ["local"] and tag["digest"].startswith("sha256:") and tag["reference"] is False
    again = api.get("/job-images/versions").json()
    assert again["cached"] is True and again["fetched_at"] == body["fetched_at"] or not body["cached"]


@pytest.mark.parametrize("fields,says", [
    ({"image": "evil/sim:1"}, "Image 'evil/sim:1' is not allowed on host 'local'"),
    ({"image_tag": "nope"}, f"Image '{REPOSITORY}:nope' is not present on host 'local'"),
    ({"image": "opeva-test/missing:never-built"}, "Image 'opeva-test/missing:never-built' is not present on host 'local'"),
    ({"image_tag": "1.0", "target_host": "second"}, "cannot run on host 'second': the host names no simulator_image"),
], ids=["refused-repository", "unknown-tag", "missing-image", "host-without-repository"])
def test_bad_images_are_refused_at_submit_and_nothing_is_queued(api, storage, upstream_image, fields, says):
    before = run_count()
    r = api.post("/run-simulation", json={"config_path": config(storage, "refused"), "target_host": "local", **fields})
    assert r.status_code == 400 and says in r.json()["detail"], r.text
    assert r.json()["host"] == fields.get("target_host", "local")
    assert run_count() == before  # no Prefect run was made


def test_the_reference_tag_the_ui_offers_runs(api, upstream_image):
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "ref", "run_name": "tag"}, "episodes": 1,
                                                     "simulation": {"buildings": 2, "days": 2}}, "image_tag": "reference"})
    assert r.status_code == 200 and r.json()["image"] == f"{REPOSITORY}:reference", r.text
    job_id = r.json()["job_id"]
    assert wait_status(api, job_id, {"finished", "failed", "stopped"})["status"] == "finished"
    info = api.get(f"/job-info/{job_id}").json()
    assert info["image"] == f"{REPOSITORY}:reference" and info["container_name"] == f"opeva-sim-{job_id}"
    assert "Simulation started" in api.get(f"/file-logs/{job_id}").text


def test_the_stand_in_with_its_default_config_finishes_and_file_logs_are_its_own_file(api, storage, upstream_image):
    r = api.post("/run-simulation", json={"config_path": config(storage, "default", steps=3), "image_tag": "1.0"})
    assert r.status_code == 200 and r.json()["image"] == IMAGE, r.text
    job_id = r.json()["job_id"]
    final = wait_status(api, job_id, {"finished", "failed", "stopped"})
    assert final["status"] == "finished", (final, api.get(f"/logs/{job_id}").text[-3000:])
    job = storage.job(job_id)
    own = job.simulator_log_file.read_bytes()
    assert api.get(f"/file-logs/{job_id}").content == own  # byte for byte
    assert b"[opeva-startup" not in own and b"| INFO     | __main__:run_experiment:" in own and b"Experiment complete" in own
    logs = api.get(f"/logs/{job_id}").text
    assert "[opeva-startup +" in logs and "Experiment complete" in logs  # its output and its file, in /logs
    # MLflow's file store (no tracking URI given) in the job's own <base>/mlflow, not the shared root
    runs = [p for p in (job.dir / "mlflow" / "mlruns").glob("*/*/meta.yaml")]
    assert len(runs) == 1 and "end_status: FINISHED" in runs[0].read_text()
    assert not any((storage.root / "mlflow").iterdir())  # the shared root's is only the (empty) mount point
    info = api.get(f"/job-info/{job_id}").json()
    assert info["container_name"] == f"opeva-sim-{job_id}" and info["supervisor_container_name"] and info["mlflow_run_id"]
    assert info["simulator"] == "upstream-style"  # its keys, merged into job_info.json in place as upstream's image does


def test_the_stand_in_failing_exits_non_zero_with_its_traceback(api, storage, upstream_image):
    r = api.post("/run-simulation", json={"config_path": config(storage, "fails", steps=1, fail=True), "image_tag": "1.0"})
    job_id = r.json()["job_id"]
    final = wait_status(api, job_id, {"finished", "failed", "stopped"})
    assert final["status"] == "failed" and "exited with code 1" in final["prefect_state"]["message"], final
    assert "RuntimeError: asked to fail" in api.get(f"/logs/{job_id}").text  # the traceback on its stderr
    result = api.get(f"/result/{job_id}").json()
    assert result["status"] == "failed" and "asked to fail" in result["traceback"]


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["plain", "ignores-sigterm"])
def test_a_stopped_job_leaves_no_container_within_5_s(api, storage, upstream_image, ignore_sigterm):
    job_id = api.post("/run-simulation", json={"config_path": config(storage, f"stop{int(ignore_sigterm)}", steps=600, sleep=0.5,
                                                                     ignore_sigterm=ignore_sigterm), "image_tag": "1.0"}).json()["job_id"]
    wait_for(lambda: storage.job(job_id).progress_file.exists(), 300, what="the simulator to make progress")
    assert len(containers_of(job_id)) == 2  # its supervisor and its simulator
    assert api.post(f"/stop/{job_id}").status_code == 200
    wait_status(api, job_id, {"stopped"}, timeout=30)
    stopped = time.monotonic()
    wait_for(lambda: not containers_of(job_id), 15, interval=0.2, what="every container of the job to be removed")
    gone_after = time.monotonic() - stopped
    assert gone_after <= 5, f"containers left {gone_after:.1f} s after the job was stopped"
    assert api.get(f"/status/{job_id}").json()["status"] == "stopped"
