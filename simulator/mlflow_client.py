"""Optional experiment tracking in MLflow, over its REST API (no mlflow package).

Tracking must never fail a simulation: the first error is logged as one
``[WARNING]`` line and the run carries on without MLflow.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

API = "/api/2.0/mlflow"
TIMEOUT_SECONDS = 10.0


class MlflowError(RuntimeError):
    """An MLflow request failed or answered something unexpected."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRun:
    """One MLflow run; every method is a no-op once MLflow has failed once."""

    def __init__(self, client: httpx.Client, run_id: str, log: logging.Logger, artifact_uri: str = "") -> None:
        self._client = client
        self.run_id = run_id
        self.artifact_uri = artifact_uri
        self._log = log
        self._ok = True

    @classmethod
    def start(
        cls,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        log: logging.Logger,
        transport: httpx.BaseTransport | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> MlflowRun | None:
        """Create (or reuse) the experiment and start a run in it; None if MLflow cannot be reached.

        ``MLFLOW_TRACKING_TOKEN`` (bearer) or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``
        (basic) authenticate when set, as with the mlflow client.
        """
        headers, auth = {}, None
        if os.environ.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
        elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
            auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        client = httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=TIMEOUT_SECONDS, headers=headers, auth=auth, transport=transport)
        try:
            experiment_id = _experiment_id(client, experiment)
            body = {
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": _now_ms(),
                "tags": [
                    {"key": "mlflow.runName", "value": run_name}, {"key": "mlflow.source.name", "value": "simulator"},
                    *({"key": k, "value": str(v)} for k, v in (tags or {}).items()),
                ],
            }
            info = _call(client, "runs/create", body)["run"]["info"]
            run_id = info["run_id"]
        except (httpx.HTTPError, MlflowError, KeyError, TypeError) as exc:
            log.warning("MLflow at %s is not usable, continuing without tracking: %s", tracking_uri, exc)
            client.close()
            return None
        log.info("MLflow run %s in experiment %r (id %s)", run_id, experiment, experiment_id)
        return cls(client, run_id, log, info.get("artifact_uri", ""))

    def _send(self, path: str, body: dict[str, Any]) -> None:
        if not self._ok:
            return
        try:
            _call(self._client, path, {"run_id": self.run_id, **body})
        except (httpx.HTTPError, MlflowError) as exc:
            self._ok = False
            self._log.warning("MLflow %s failed, no more tracking for this run: %s", path, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [{"key": k, "value": str(v)[:6000]} for k, v in params.items()]
        for i in range(0, len(items), 100):  # log-batch takes at most 100 params
            self._send("runs/log-batch", {"params": items[i : i + 100]})

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        stamp = _now_ms()
        items = [
            {"key": k, "value": float(v), "timestamp": stamp, "step": step}
            for k, v in metrics.items()
            if v is not None and math.isfinite(v)
        ]
        if items:
            self._send("runs/log-batch", {"metrics": items})

    def log_artifact(self, name: str, content: bytes) -> None:
        """Upload one file through the server's artifact proxy (``mlflow server --serve-artifacts``,
        the default): the run's ``artifact_uri`` is then ``mlflow-artifacts:/<path>``."""
        prefix = "mlflow-artifacts:/"
        if not self._ok:
            return
        if not self.artifact_uri.startswith(prefix):
            self._log.warning("MLflow artifacts not logged: the server does not proxy them (artifact_uri %r)", self.artifact_uri)
            return
        path = self.artifact_uri[len(prefix):].strip("/")
        try:
            response = self._client.put(f"/api/2.0/mlflow-artifacts/artifacts/{path}/{name}", content=content)
            if response.status_code >= 400:
                raise MlflowError(f"artifact {name}: HTTP {response.status_code} {response.text[:200]}")
        except (httpx.HTTPError, MlflowError) as exc:
            self._ok = False
            self._log.warning("MLflow artifact upload failed, no more tracking for this run: %s", exc)

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run ``FINISHED`` or ``FAILED`` and close the connection."""
        self._send("runs/update", {"status": status, "end_time": _now_ms()})
        self._client.close()


def _call(client: httpx.Client, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    url = f"{API}/{path}"
    response = client.get(url, params=params) if body is None else client.post(url, json=body)
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        detail = f"{data.get('error_code', '')} {data.get('message', response.text[:200])}".strip()
        raise MlflowError(f"{path}: HTTP {response.status_code} {detail}")
    return data


def _experiment_id(client: httpx.Client, name: str) -> str:
    """The id of experiment ``name``, created when missing."""

    def get() -> str:
        return _call(client, "experiments/get-by-name", params={"experiment_name": name})["experiment"]["experiment_id"]

    try:
        return get()
    except MlflowError as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
            raise
    try:
        return _call(client, "experiments/create", {"name": name})["experiment_id"]
    except MlflowError as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    return get()  # another run created it in the meantime
