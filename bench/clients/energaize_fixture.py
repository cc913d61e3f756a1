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
    "/deploy/inferences/{target}/switch-bundle", "/deploy/inferences/{target}/logs/stream",
    "/deploy/inferences/{target}/logs/history/chunk", "/deploy/bundles/{bundle}/files/content", "/deploy/bundles/{bundle}",
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


def _simple(method: str, ctype: str) -> bool:
    """A request the browser sends cross-origin without a preflight (CORS "simple")."""
    return method in ("GET", "HEAD", "POST") and ctype in ("", "multipart/form-data", "text/plain", "application/x-www-form-urlencoded")


def build(record: Path, results_file: Path, ui_origin: str) -> dict:
    """Entries from the cross-origin relay's recording and, for the requests CORS stopped there,
    from the same-origin run's journeys (``energaize-results-proxy*.json`` next to ``results_file``:
    the requests the page sent, with their bodies' shapes)."""
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()] if record.exists() else []
    for extra in sorted(results_file.parent.glob("energaize-results-proxy*.json")):
        for journey in json.loads(extra.read_text()):
            for seen in journey.get("seen", []):
                if seen.get("status") == "failed" or "content_type" not in seen:
                    continue
                path, _, query = seen["path"].partition("?")
                ctype = seen["content_type"]
                headers = {"origin": ui_origin, **({"content-type": ctype} if ctype else {})}
                if seen["method"] == "GET" and seen.get("answer_type") in ("application/zip", "application/octet-stream") and not ctype:
                    headers = {}  # a download link: a navigation, which sends no Origin
                rows.append({"t": None, "journey": journey["name"], "method": seen["method"], "path": path, "query": query,
                             "headers": headers, "body": seen["body"], "status": seen["status"], "answer_type": seen.get("answer_type", ""),
                             "source": "same-origin run"})
    entries: dict[tuple, dict] = {}
    preflights: dict[tuple, dict] = {}
    for row in rows:
        route = template(row["path"])
        headers = {k: (v.replace(ui_origin, "{ui_origin}") if k == "origin" else v) for k, v in row["headers"].items() if k != "accept"}
        if row["method"] == "OPTIONS" and "access-control-request-method" in headers:
            key = (headers["access-control-request-method"], route)
            preflights[key] = {"headers": headers, "recorded_status": row["status"], "source": "recorded",
                               "_query_keys": sorted({kv.split("=", 1)[0] for kv in row["query"].split("&") if kv})}
            continue
        query_keys = sorted({kv.split("=", 1)[0] for kv in row["query"].split("&") if kv})
        ctype = headers.get("content-type", "")
        ctype = "multipart/form-data" if ctype.startswith("multipart/form-data") else ctype
        headers = {**headers, **({"content-type": ctype} if ctype else {})}
        key = (row["method"], route, tuple(query_keys), json.dumps(row["body"], sort_keys=True))
        entry = entries.setdefault(key, {
            "method": row["method"], "route": route, "query_keys": query_keys, "headers": headers,
            "body_shape": row["body"], "recorded_status": {}, "answer_type": row["answer_type"], "journeys": [],
        })
        entry["recorded_status"][row.get("source", "cross-origin run")] = row["status"]
        name = row.get("journey") or (journey_at(results, row["t"]) if row["t"] else None)
        if name and name not in entry["journeys"]:
            entry["journeys"].append(name)
    for (method, route), pre in preflights.items():  # preflighted, never sent, not seen same-origin either
        if not any(e["method"] == method and e["route"] == route for e in entries.values()):
            entries[(method, route, tuple(pre["_query_keys"]), "null")] = {
                "method": method, "route": route, "query_keys": pre["_query_keys"], "headers": {"origin": "{ui_origin}", "content-type": "application/json"},
                "body_shape": None, "recorded_status": {}, "answer_type": "", "journeys": []}
    # A request recorded without its body (stopped by CORS before it was sent, or a body the relay
    # could not read) is the same request as its sibling recorded with one.
    for key in [k for k in entries if k[3] == "null"]:
        siblings = [k for k in entries if k[:3] == key[:3] and k[3] != "null"]
        if siblings:
            gone = entries.pop(key)
            entries[siblings[0]]["recorded_status"].update(gone["recorded_status"])
            entries[siblings[0]]["journeys"] += [j for j in gone["journeys"] if j not in entries[siblings[0]]["journeys"]]
    out = []
    for (method, route, _q, _b), entry in sorted(entries.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
        pre = dict(preflights.get((method, route)) or {}) or None
        if pre:
            pre.pop("_query_keys", None)
        if pre is None and not _simple(method, entry["headers"].get("content-type", "")) and "origin" in entry["headers"]:
            pre = {"headers": {"origin": "{ui_origin}", "access-control-request-method": method,
                               "access-control-request-headers": "content-type"}, "source": "derived (the browser preflights it)"}
        entry["preflight"] = pre
        out.append(entry)
    return {
        "about": "Every request energaize_ui 3111ff7 sent in bench/clients/energaize_journeys.mjs: the cross-origin run "
                 "(recorded by energaize_serve.py's relay, preflights included) and, where CORS stopped the request, the "
                 "same-origin run (recorded by the page); values replaced by placeholders. Regenerate with "
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
