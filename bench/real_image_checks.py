"""What issue 20's "Done when" asks of OPEVA's real image, checked over HTTP against a `make up`
(bench/_up.py): each function returns rows ``(what, value, ok)`` that bench/real_image.py prints.

Nothing here assumes the image's internals beyond what upstream documents: it logs with loguru
to ``jobs/<id>/logs/<id>.log``, writes ``progress.json`` and ``result.json``, and logs one MLflow
run tagged ``opeva.job_id``.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
import zipfile
from pathlib import Path

from _up import Up

Row = tuple[str, object, bool]
REPOSITORY = "calof/opeva_simulator"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def zipped(folder: Path) -> bytes:
    """The dataset folder as a user zips it: one top folder, the files under it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()


def prepare(up: Up, dataset: Path, config: Path) -> list[Row]:
    """Dataset through POST /dataset/upload, config through POST /experiment-config/create, as shipped."""
    r = up.api.post("/dataset/upload", files={"file": ("dataset.zip", zipped(dataset), "application/zip")}, data={"name": dataset.name})
    rows: list[Row] = [("POST /dataset/upload", f"{r.status_code} {r.json().get('name', r.text[:80])}", r.status_code == 200)]
    r = up.api.post("/experiment-config/create", json={"file_name": config.name, "yaml_content": config.read_text()})
    rows.append(("POST /experiment-config/create (unchanged)", f"{r.status_code} {r.json()}", r.status_code == 200))
    return rows


def submit(up: Up, tag: str, config_name: str) -> tuple[str, dict]:
    r = up.api.post("/run-simulation", json={"config_path": config_name, "target_host": "local", "image_tag": tag})
    r.raise_for_status()
    return r.json()["job_id"], r.json()


def launch_cli(up: Up, tag: str, config_name: str) -> str:
    """``prefect deployment run run-simulation/local`` with the same parameters: the flow run id."""
    out = subprocess.run(["prefect", "deployment", "run", "run-simulation/local", "--param", f"config_path=configs/{config_name}",
                          "--param", f"image_tag={tag}"], env=up.cli_env, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"prefect deployment run failed: {out.stdout}{out.stderr}")
    match = UUID_RE.search(out.stdout.split("UUID:")[-1])
    if not match:
        raise RuntimeError(f"no flow run id in: {out.stdout}")
    return match.group(0)


def check_job(up: Up, job_id: str, tag: str) -> list[Row]:
    """A finished job of the real image, as every client reads it."""
    image = f"{REPOSITORY}:{tag}"
    status = up.wait_final(job_id)
    rows: list[Row] = [("status", status, status == "finished")]
    progress = up.api.get(f"/progress/{job_id}").json()
    pct = progress.get("progress_pct", progress.get("percent"))
    rows.append(("/progress", f"{pct} ({progress.get('step_current')}/{progress.get('step_total')} steps)", pct == 100))
    result = up.api.get(f"/result/{job_id}").json()
    rows.append(("/result status", result.get("status"), result.get("status") == "completed"))
    on_disk = (up.data_dir / "jobs" / job_id / "logs" / f"{job_id}.log").read_bytes()
    file_logs = up.api.get(f"/file-logs/{job_id}").content
    rows.append(("/file-logs = the simulator's own log file", f"{len(file_logs.splitlines())} lines, byte for byte: {file_logs == on_disk}",
                 file_logs == on_disk and len(on_disk) > 0))
    logs = up.api.get(f"/logs/{job_id}").text
    missing = [line for line in on_disk.decode(errors="replace").splitlines() if line.strip() and line.strip() not in logs]
    startup = logs.count("[opeva-startup")
    rows.append(("/logs: stdout/stderr + every log-file line + platform", f"{len(logs.splitlines())} lines, {startup} start-up traces, "
                 f"{len(missing)} log-file lines missing", not missing and startup > 0))
    info = up.api.get(f"/job-info/{job_id}").json()
    rows.append(("/job-info image, container_name", f"{info.get('image')}, {info.get('container_name')}",
                 info.get("image") == image and info.get("container_name") == f"opeva-sim-{job_id}"))
    link = info.get("mlflow") or {}
    rows.append(("/job-info mlflow", f"{link.get('status')} {link.get('params')} params {link.get('metrics')} metrics, "
                 f"url {info.get('mlflow_run_url')}", link.get("available") is True and link.get("status") == "FINISHED"
                 and str(info.get("mlflow_run_url", "")).startswith(up.mlflow_url)))
    rows += mlflow_run(up, job_id, link.get("run_id"))
    shared = sorted(p.name for p in (up.data_dir / "mlflow").glob("*")) if (up.data_dir / "mlflow").exists() else []
    rows.append(("shared <root>/mlflow after the job", shared or "empty", not shared))
    sims = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=opeva.job_id={job_id}"], capture_output=True, text=True).stdout.split()
    rows.append(("simulator container left after finish", len(sims), not sims))
    left = len(up.containers_of(job_id)) - len(sims)  # informational: docs/images.md, the exited supervisor waits for a reap
    rows.append(("exited supervisor container kept (reaped after 60 s)", left, True))
    return rows


def mlflow_run(up: Up, job_id: str, run_id: str | None) -> list[Row]:
    """The run as the platform's MLflow server holds it (its own REST API)."""
    if not run_id:
        return [("MLflow run (server)", "none linked", False)]
    run = up.mlflow.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    params, metrics = len(run["data"].get("params", [])), len(run["data"].get("metrics", []))
    return [("MLflow run (server)", f"{run['info']['status']}, {params} params, {metrics} metrics, tag opeva.job_id ok: "
             f"{tags.get('opeva.job_id') == job_id}", run["info"]["status"] == "FINISHED" and params > 0 and metrics > 0
             and tags.get("opeva.job_id") == job_id)]


def prefect_view(up: Up, job_id: str) -> list[Row]:
    """What the Prefect UI shows for the run (it reads the same API)."""
    run = up.prefect.get(f"/flow_runs/{job_id}").json()
    deployment = up.prefect.get(f"/deployments/{run['deployment_id']}").json()["name"] if run.get("deployment_id") else None
    logs = up.prefect.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [job_id]}}, "limit": 200}).json()
    artifacts = up.prefect.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [job_id]}}}).json()
    kinds = sorted(f"{a.get('key') or '-'}:{a['type']}" for a in artifacts)
    return [("Prefect flow run name / deployment", f"{run['name']} / run-simulation/{deployment}", bool(run["name"])),
            ("Prefect state", f"{run['state']['type']} ({run['state']['name']})", run["state"]["type"] == "COMPLETED"),
            ("Prefect logs", f"{len(logs)}{'+' if len(logs) == 200 else ''} lines", len(logs) > 0),
            ("Prefect artifacts", ", ".join(kinds) or "none", bool(artifacts))]


def stop_once(up: Up, tag: str, config_name: str, into_run: float = 1.0) -> dict[str, float]:
    """Submit, wait until the simulator is stepping (progress above 0), POST /stop ``into_run`` s later:
    time to `stopped`, to no simulator container and to no container of the job at all."""
    job_id, _ = submit(up, tag, config_name)
    deadline = time.monotonic() + 900
    while not (up.api.get(f"/progress/{job_id}").json().get("progress_pct") or 0) > 0:
        if time.monotonic() > deadline or up.api.get(f"/status/{job_id}").json()["status"] in ("finished", "failed"):
            raise RuntimeError(f"{job_id} never made progress")
        time.sleep(0.2)
    time.sleep(into_run)
    t0 = time.monotonic()
    answer = up.api.post(f"/stop/{job_id}").json()
    stopped = sim_gone = gone = None
    while gone is None and time.monotonic() - t0 < 120:
        now = time.monotonic() - t0
        if stopped is None and up.api.get(f"/status/{job_id}").json()["status"] == "stopped":
            stopped = now
        left = up.containers_of(job_id)
        sims = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=opeva.job_id={job_id}"], capture_output=True, text=True).stdout.split()
        if sim_gone is None and not sims:
            sim_gone = now
        if stopped is not None and not left:
            gone = now
        time.sleep(0.05)
    return {"job_id": job_id, "message": answer.get("message"), "stop->stopped": stopped, "stop->simulator container gone": sim_gone,
            "stop->no container": gone, "progress at stop": up.api.get(f"/progress/{job_id}").json().get("progress_pct")}


def refusals(up: Up, config_name: str) -> list[Row]:
    """Refused repository, unknown tag, missing image (and a malformed tag): 4xx at submit, no run made."""
    cases = {"refused repository": {"image": "evil/sim:1"}, "unknown tag": {"image_tag": "nope"},
             "missing image (allowed repository)": {"image": f"{REPOSITORY}:never-built"},
             "malformed tag": {"image_tag": "a/b"}}
    rows: list[Row] = []
    for what, fields in cases.items():
        before = up.run_count()
        t0 = time.monotonic()
        r = up.api.post("/run-simulation", json={"config_path": config_name, "target_host": "local", **fields})
        took = time.monotonic() - t0
        made = up.run_count() - before
        detail = r.json().get("detail") if r.headers.get("content-type", "").startswith("application/json") else r.text
        rows.append((what, f"{r.status_code} in {took:.2f} s, runs made {made}: {str(detail)[:110]}", 400 <= r.status_code < 500 and made == 0))
    return rows
