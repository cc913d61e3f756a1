"""Turn the relay's recording of an energaize_ui cross-origin run into the committed fixture
``tests/fast/fixtures/energaize_requests.json`` that tests/fast/test_energaize_contract.py replays.

One entry per distinct request the UI sent (method, route with ids as placeholders, query
keys, the headers CORS looks at, the body's shape), with the preflight the browser sent for
it (if any) and the journeys that sent it (matched by time to energaize-results-cross.json).
Values are never kept: ids, names and the UI's port become placeholders. What the API
answered during the recording is kept as ``recorded_status`` (a baseline, not an expectation).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

# The UI's API calls (src/api/trainingApi.ts, src/services/*.ts, src/api/deployApi.ts at
# 3111ff7): a recorded path matches one of these; its variable parts become placeholders.
ROUTES = [
    "/jobs", "/queue", "/hosts", "/datasets", "/dataset/sites", "/experiment-configs", "/job-folders",
    "/job-images/versions", "/run-simulation", "/experiment-config/create", "/dataset", "/dataset/upload",
    "/simulation-data/index", "/simulation-data/file", "/ops/queue/cleanup", "/ops/jobs/cleanup",
    "/energy-communities", "/deploy/inferences", "/deploy/bundles", "/deploy/bundles/upload-folder",
    "/status/{job_id}", "/job-info/{job_id}", "/progress/{job_id}", "/result/{job_id}", "/logs/{job_id}",
    "/file-logs/{job_id}", "/logs-chunk/{job_id}", "/job-resolved-config/{job_id}", "/stop/{job_id}",
    "/job/{job_id}", "/job/{job_id}/folder", "/job/{job_id}/archive", "/job/{job_id}/restore",
    "/ops/jobs/{job_id}/stop", "/ops/jobs/{job_id}/requeue", "/ops/jobs/{job_id}/fail",
    "/ops/jobs/{job_id}/cancel", "/ops/jobs/{job_id}/recover", "/ops/workers/{worker}/authenticate",
    "/job-folders/{folder_id}", "/experiment-config/{config}", "/dataset/{dataset}",
    "/dataset/download/{dataset}", "/dataset/dates-available/{site}",
    "/deploy/inferences/{target}/health", "/deploy/bundles/{bundle}/files",
]


def _regex(template: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$")


COMPILED = sorted(((_regex(t), t) for t in ROUTES), key=lambda p: p[1].count("{"))


def template(path: str) -> str:
    for rx, t in COMPILED:  # fixed routes first: /dataset/sites is not /dataset/{dataset}
        if rx.match(path):
            return t
    return "UNKNOWN " + re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", path)


def journey_at(results: list[dict], t: float) -> str | None:
    ms = t * 1000
    for r in results:
        if r["started"] - 500 <= ms <= r["ended"] + 500:
            return r["name"]
    return None


def build(record: Path, results_file: Path, ui_origin: str) -> dict:
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    entries: dict[tuple, dict] = {}
    preflights: dict[tuple, dict] = {}
    for row in rows:
        route = template(row["path"])
        headers = {k: (v.replace(ui_origin, "{ui_origin}") if k == "origin" else v) for k, v in row["headers"].items()}
        if row["method"] == "OPTIONS" and "access-control-request-method" in headers:
            key = (headers["access-control-request-method"], route)
            preflights[key] = {"headers": headers, "recorded_status": row["status"]}
            continue
        query_keys = sorted({kv.split("=", 1)[0] for kv in row["query"].split("&") if kv})
        ctype = headers.get("content-type", "")
        ctype = "multipart/form-data" if ctype.startswith("multipart/form-data") else ctype
        headers = {**headers, **({"content-type": ctype} if ctype else {})}
        key = (row["method"], route, tuple(query_keys), json.dumps(row["body"], sort_keys=True))
        entry = entries.setdefault(key, {
            "method": row["method"], "route": route, "query_keys": query_keys, "headers": headers,
            "body_shape": row["body"], "recorded_status": row["status"], "answer_type": row["answer_type"],
            "journeys": [],
        })
        name = journey_at(results, row["t"])
        if name and name not in entry["journeys"]:
            entry["journeys"].append(name)
    out = []
    for (method, route, _q, _b), entry in sorted(entries.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
        entry["preflight"] = preflights.get((method, route))
        out.append(entry)
    return {
        "about": "Every request energaize_ui 3111ff7 sent in bench/clients/energaize_journeys.mjs (cross-origin run), "
                 "recorded by energaize_serve.py's relay; values replaced by placeholders. Regenerate with "
                 "UPDATE_FIXTURE=1 CLIENTS=energaize bash bench/clients/run_all.sh.",
        "ui": "energaize_ui@3111ff7",
        "requests": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True, type=Path)
    ap.add_argument("--results", required=True, type=Path)
    ap.add_argument("--ui-origin", required=True)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    data = build(a.record, a.results, a.ui_origin)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['requests'])} distinct requests -> {a.out}")


if __name__ == "__main__":
    main()
