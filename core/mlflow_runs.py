"""Find a job's MLflow run in the platform's MLflow server, over its REST API (no mlflow package).

Why by tag and from the server: both OPEVA's image and the reference simulator tag their run
``opeva.job_id = <job id>``; the job's own ``job_info.json`` is written by user code and is not
trusted for a link the API hands out. MLflow has no per-job credentials, so a hostile job could
still tag a run of its own with another job's id: among the runs carrying the tag the earliest
one that started after the job did is taken, and the link says which run it is (docs/mlflow.md).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

API = "/api/2.0/mlflow"
TIMEOUT_SECONDS = 3.0
MAX_EXPERIMENTS = 1000  # one page of experiments/search; older ones are not looked in


class MlflowUnavailable(RuntimeError):
    """The server did not answer, or answered something unexpected."""


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """MLflow's JSON answer to one REST call; any failure is MlflowUnavailable naming the call."""
    try:
        response = client.request(method, f"{API}/{path}", **kwargs)
    except httpx.HTTPError as exc:
        raise MlflowUnavailable(f"MLflow does not answer: {exc}") from exc
    if response.status_code >= 400:
        raise MlflowUnavailable(f"MLflow {path}: HTTP {response.status_code} {response.text[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise MlflowUnavailable(f"MLflow {path}: not JSON") from exc


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _call(client, "POST", path, json=body)


def _quoted(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError("a job id has no quotes")
    return f"'{value}'"


def find_run(tracking_url: str, ui_url: str, job_id: str, not_before_ms: int = 0) -> dict[str, Any] | None:
    """``{run_id, experiment_id, run_name, status, url, ...}`` of the job's run, or None."""
    with httpx.Client(base_url=tracking_url.rstrip("/"), timeout=TIMEOUT_SECONDS) as client:
        experiments = _post(client, "experiments/search", {"max_results": MAX_EXPERIMENTS, "order_by": ["last_update_time DESC"]})
        ids = [e["experiment_id"] for e in experiments.get("experiments", []) if isinstance(e, dict) and "experiment_id" in e]
        if not ids:
            return None
        found = _post(client, "runs/search", {
            "experiment_ids": ids, "filter": f"tags.`opeva.job_id` = {_quoted(job_id)}",
            "order_by": ["attributes.start_time ASC"], "max_results": 20,
        })
    runs = [r.get("info", {}) | {"data": r.get("data", {})} for r in found.get("runs", []) if isinstance(r, dict)]
    runs = [r for r in runs if int(r.get("start_time") or 0) >= not_before_ms] or []
    if not runs:
        return None
    run = runs[0]
    data = run.get("data") or {}
    experiment_id, run_id = str(run.get("experiment_id")), str(run.get("run_id"))
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "run_name": run.get("run_name"),
        "status": run.get("status"),
        "start_time": run.get("start_time"),
        "end_time": run.get("end_time"),
        "params": len(data.get("params") or []),
        "metrics": len(data.get("metrics") or []),
        "metric_keys": sorted({str(m.get("key")) for m in data.get("metrics") or [] if isinstance(m, dict) and m.get("key")}),
        "url": f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
        "tracking_uri": tracking_url,
        "runs_with_this_tag": len(runs),
    }


MAX_HISTORY_POINTS = 100_000  # a learning curve of more points is refused, not drawn partly


def metric_history(tracking_url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """Every ``(step, value)`` MLflow holds for ``key`` of ``run_id``, in step order (all pages).

    Why GET with pages: ``metrics/get-history`` is a GET in MLflow's REST API and pages with
    ``page_token`` on large histories; a curve is drawn from all of it or not at all.
    """
    points: list[tuple[int, float, int]] = []
    token: str | None = None
    with httpx.Client(base_url=tracking_url.rstrip("/"), timeout=TIMEOUT_SECONDS) as client:
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": 25_000} | ({"page_token": token} if token else {})
            body = _call(client, "GET", "metrics/get-history", params=params)
            for m in body.get("metrics") or []:
                if isinstance(m, dict) and isinstance(m.get("value"), (int, float)):
                    points.append((int(m.get("step") or 0), float(m["value"]), int(m.get("timestamp") or 0)))
            if len(points) > MAX_HISTORY_POINTS:
                raise ValueError(f"metric {key} of run {run_id} has more than {MAX_HISTORY_POINTS} points")
            token = body.get("next_page_token")
            if not token:
                break
    points.sort(key=lambda p: (p[0], p[2]))
    return [(step, value) for step, value, _ in points]


def log_dataset_input(tracking_url: str, job_id: str, version: dict[str, Any], not_before_ms: int = 0) -> str | None:
    """Log the dataset version a job ran on as an input of the job's MLflow run (MLflow's
    ``runs/log-inputs``); the run id, or None when the job made no run.

    Why the short digest: MLflow stores a dataset digest in 36 characters; the full sha256 (the
    platform's version id, core/dataset_lineage.py) goes in ``source``.
    """
    run = find_run(tracking_url, tracking_url, job_id, not_before_ms)
    if run is None:
        return None
    source = {"uri": f"opeva://datasets/{version['name']}", "sha256": version["digest"]}
    profile = {k: version.get(k) for k in ("site", "window")}
    dataset = {"name": version["name"], "digest": version["digest"][:12], "source_type": "opeva-dataset",
               "source": json.dumps(source), "profile": json.dumps(profile)}
    with httpx.Client(base_url=tracking_url.rstrip("/"), timeout=TIMEOUT_SECONDS) as client:
        _post(client, "runs/log-inputs", {"run_id": run["run_id"], "datasets": [
            {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "training"}]}]})
    return run["run_id"]
