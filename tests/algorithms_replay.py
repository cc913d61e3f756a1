"""The maintainers' scripts' requests, replayed (Algorithms 0bc57d9, ``scripts/manage_remote_experiment.py``
without ``--deucalion`` and ``scripts/collect_remote_results.py``).

Why a replay: CI cannot fetch the Algorithms sources, so these functions send what the
scripts send (method, path, body, query) and check every field the scripts read, the way
they read it (a JSON object where they call ``.get``, strings in ``files``). The scripts
themselves are run by bench/clients/algorithms_scripts.py.
"""

from __future__ import annotations

import csv
import re
from typing import Any
from urllib.parse import quote, urlencode

TERMINAL = {"finished", "failed", "stopped", "canceled", "completed"}
PAYLOAD_FIELDS = {"config", "config_path", "target_host", "target_worker_profile", "save_as", "job_name", "submitted_by", "image_tag", "deucalion_options"}


def _json(r: Any, what: str) -> Any:
    assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:300]}"
    return r.json()


def _contains(payload: Any, expected: str, image_tag: bool = False) -> bool:
    """The scripts' ``_contains_identifier``: a string equal to it anywhere in the answer."""
    if isinstance(payload, dict):
        return any(_contains(v, expected, image_tag) for v in payload.values())
    if isinstance(payload, list):
        return any(_contains(v, expected, image_tag) for v in payload)
    return isinstance(payload, str) and (payload == expected or (image_tag and payload.endswith((f":{expected}", f"/{expected}"))))


def preflight(api: Any, host: str, image_tag: str | None) -> dict[str, Any]:
    """``manage_remote_experiment.py preflight --target-host H --image-tag T``: four GETs, no mutation."""
    answers = {name: _json(api.get(path), path) for name, path in (("health", "/health"), ("hosts", "/hosts"), ("queue", "/queue"),
                                                                    ("images", "/job-images/versions"))}
    entry = answers["hosts"].get("hosts", {}).get(host) if isinstance(answers["hosts"], dict) else None
    return {"target_host_found": _contains(answers["hosts"], host),
            "target_host_online": bool(entry.get("online")) if isinstance(entry, dict) and "online" in entry else None,
            "image_tag_found": None if not image_tag else _contains(answers["images"], image_tag, image_tag=True), "answers": answers}


def submit(api: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """``submit --confirm-submit``: the payload as the scripts validate it, then POST /run-simulation."""
    assert set(payload) <= PAYLOAD_FIELDS and all(str(payload.get(k) or "").strip() for k in ("job_name", "submitted_by", "image_tag"))
    response = _json(api.post("/run-simulation", json=payload), "run-simulation")
    assert isinstance(response, dict) and str(response.get("job_id") or "").strip(), response
    return response


def watch_once(api: Any, job_id: str, tail_lines: int = 200, max_bytes: int = 262144) -> dict[str, Any]:
    """One ``watch --details`` snapshot: status, job-info, progress, logs-chunk."""
    status = _json(api.get(f"/status/{quote(job_id)}"), "status")
    assert isinstance(status, dict) and isinstance(status.get("status"), str), status
    return {"status": status["status"], "job_info": _json(api.get(f"/job-info/{quote(job_id)}"), "job-info"),
            "progress": _json(api.get(f"/progress/{quote(job_id)}"), "progress"),
            "logs_chunk": _json(api.get(f"/logs-chunk/{quote(job_id)}?{urlencode({'tail_lines': tail_lines, 'max_bytes': max_bytes})}"), "logs-chunk")}


def _latest(files: list[str], pattern: str) -> str | None:
    matches = sorted((int(m.group(1)), f) for f in files if (m := re.search(pattern, f)))
    return matches[-1][1] if matches else None


def collect(api: Any, job_id: str, tail_lines: int = 500) -> dict[str, Any]:
    """``collect_remote_results.py --job-id J``: the five reads, then the simulation data it uses.

    Returns the summary row's fields the scripts fill from our answers (and the files read)."""
    status = _json(api.get(f"/status/{quote(job_id)}"), "status")
    info = _json(api.get(f"/job-info/{quote(job_id)}"), "job-info")
    result = _json(api.get(f"/result/{quote(job_id)}"), "result")
    logs = _json(api.get(f"/logs-chunk/{quote(job_id)}?{urlencode({'tail_lines': tail_lines, 'max_bytes': 200000})}"), "logs-chunk")
    resolved = api.get(f"/job-resolved-config/{quote(job_id)}")
    assert resolved.status_code == 200 and resolved.text.strip(), resolved.text[:200]
    assert all(isinstance(x, dict) for x in (status, info, result, logs)) and isinstance(logs.get("text"), str)
    session = result.get("simulation_data_session_default") if isinstance(result.get("simulation_data_session_default"), str) else None
    index = api.post("/simulation-data/index", json={"job_id": job_id, "session": session or "latest"})
    row: dict[str, Any] = {"status": status.get("status"), "job_name": info.get("job_name"), "config_path": info.get("config_path"),
                           "target_host": info.get("target_host"), "image_tag": info.get("image_tag"), "image": info.get("image"),
                           "queued_at": info.get("queued_at"), "started_at": info.get("started_at"), "finished_at": info.get("finished_at"),
                           "simulation_data_available": result.get("simulation_data_available"), "kpi_source": result.get("kpi_source"),
                           "index_status": index.status_code, "files": []}
    if index.status_code != 200:  # the script records "simulation_data: HTTP <code>" and goes on
        return row
    body = index.json()
    files = [str(f) for f in body.get("files", []) if isinstance(f, str)]
    row.update(files=files, simulation_data_session=body.get("session"))
    kpi_file = next((f for f in files if f.endswith("exported_kpis.csv")), None)
    sess = body.get("session") or session or "latest"
    if kpi_file:
        text = api.post("/simulation-data/file", json={"job_id": job_id, "session": sess, "relative_path": kpi_file})
        assert text.status_code == 200, text.text[:200]
        reader = csv.DictReader(text.text.splitlines())
        key = reader.fieldnames[0]
        row["kpis"] = {r[key]: r for r in reader}
    for name, pattern in (("community", r"exported_data_community_ep(\d+)\.csv$"), ("pricing", r"exported_data_pricing_ep(\d+)\.csv$")):
        found = _latest(files, pattern)
        if found:
            r = api.post("/simulation-data/file", json={"job_id": job_id, "session": sess, "relative_path": found})
            assert r.status_code == 200, r.text[:200]
            row[name] = r.text
    return row
