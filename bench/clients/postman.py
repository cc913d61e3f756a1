"""Run the upstream OPEVA Postman suite (newman) against our API and judge it.

The collection is read from the fetched upstream repository at run time (never copied
into this repo). Two verdicts come out:

- ``postman-assertions``: the suite's own ``pm.test`` assertions, as newman counts them.
- ``postman-requests``: every request, against the answer upstream OPEVA gives it
  (status code, and the shape the clients read). Most requests carry no assertion, so
  this is the stricter view. The expectations are written from upstream's code at the
  same commit (shared/OPEVA_UPSTREAM.md) and listed in EXPECT below.

Out of scope, left out of the run: the ``Agent`` folder (/api/agent/*: the upstream
worker agent's protocol, replaced by Prefect workers here).
Changed in the temporary copy: "Upload Dataset (ZIP)" reads the zip prepare_state.py made
instead of /tmp/sample-dataset.zip. Nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = os.environ.get("OPEVA_UPSTREAM_API_REPO", "/work/.mirror/Soft-CPS-Research-Group+opeva_backend_api_training/repo")
COMMIT = os.environ.get("OPEVA_UPSTREAM_API_COMMIT", "99eb82e")
COLLECTION = "OPEVA Backend API - Full Test Suite.postman_collection.json"
CACHE = Path(os.environ.get("OPEVA_CLIENTS_CACHE", "/var/cache/opeva/clients"))


def _is_array(body):
    return isinstance(body, list)


def _has(*keys):
    return lambda body: isinstance(body, dict) and all(k in body for k in keys)


def _text(body):
    return isinstance(body, str) and body.strip() != ""


# request name -> (accepted status codes, optional check of the parsed body, what upstream answers)
EXPECT = {
    "Health Check": ({200}, _has("status"), "200 {status: ok}"),
    "Create Experiment Config": ({200}, _has("file"), "200 {message: Config saved, file}"),
    "List Experiment Configs": ({200}, _is_array, "200, a JSON array of file names"),
    "Get Experiment Config by Name": ({200}, None, "200 with the config"),
    "Update Experiment Config": ({200}, _has("message"), "200 {message: Config updated, file}"),
    "Delete Experiment Config": ({200}, _has("message"), "200 {message: Config <name> deleted successfully}"),
    "Run Simulation (Inline Config)": ({200}, _has("job_id"), "200 {job_id, status: queued, ...}"),
    "Check Status": ({200}, _has("status"), "200 {job_id, status}"),
    "Get Progress": ({200}, None, "always 200 (progress file or {progress: No updates yet.})"),
    "Get Results": ({200}, None, "always 200 (result file or {status: pending, ...})"),
    "Simulation Data Index": ({200, 404}, None, "200 index, or 404 when the job exported no simulation data"),
    "Simulation Data File": ({200, 404}, None, "200 file bytes, or 404 when absent"),
    "Get Logs (run_id/job_id fallback)": ({200}, None, "200 text/plain, the log as it is now, once"),
    "Get Logs File (run_id/job_id fallback)": ({200}, None, "200 text/plain, the log file as it is now, once"),
    "List All Jobs": ({200}, _is_array, "200, a JSON array of jobs"),
    "List Queue": ({200}, _is_array, "200, a JSON array"),
    "Get Job Info": ({200}, _has("job_id"), "200 job_info.json"),
    "Hosts": ({200}, _has("hosts", "available_hosts"), "200 {available_hosts, hosts}"),
    "Stop Job": ({200}, _has("message"), "200 {message} in every state"),
    "Delete Job and Files": ({200}, _has("message"), "200 {message: Job <id> deleted successfully}"),
    "Run Simulation (Config Path)": ({200}, _has("job_id"), "200 {job_id, ...} (host worker-a is prepared)"),
    "List Job Image Versions": ({200}, _has("tags"), "200 {repository, tags: [...]}"),
    "Requeue Job": ({200, 409}, None, "200 {status: queued} or 409"),
    "Stop Job (Ops)": ({200}, _has("status"), "200 {message, job_id, status}"),
    "Fail Job": ({200, 409}, None, "200 {status: failed} or 409"),
    "Cancel Job": ({200, 409}, None, "200 {status: canceled} or 409"),
    "Cleanup Queue": ({200}, _has("count"), "200 {removed, count}"),
    "Cleanup Jobs Registry": ({200}, _has("count"), "200 {removed, count}"),
    "Create Dataset": ({200, 201, 202}, None, "200 {message: Dataset created, name, ...} (site prepared with data in range)"),
    "List Datasets": ({200}, _is_array, "200, a JSON array of {name, description}"),
    "List Dates Available": ({200}, _is_array, "200, [{installation, oldest_record, newest_record}]"),
    "Upload Dataset (ZIP)": ({200, 201}, _has("name"), "200 {message: Dataset uploaded, name, size_bytes}"),
    "DownloadDataset": ({200}, None, "200 zip (dataset okkokoko is prepared)"),
    "Delete Dataset and Files": ({200}, None, "200 (dataset adeusola2 is prepared)"),
    "Energy Communities": ({200}, _has("energy_communities"), "200 {energy_communities: [...]}"),
    "Historical Data - Last X Minutes (Paginated)": ({200}, _has("collections"), "200 {energy_community, query, collections}"),
    "Historical Data - Range (Paginated)": ({200}, _has("collections"), "200 {energy_community, query, collections}"),
    "Historical Data - Last X Minutes + Granularity": ({200}, _has("collections"), "200 {..., collections}"),
    "Historical Data - Range + Granularity": ({200}, _has("collections"), "200 {..., collections}"),
    "Historical Data - Validation Error (Missing Time Filter)": ({400}, None, "400"),
    "Historical Data - Validation Error (Mixed Filters)": ({400}, None, "400"),
    "Historical Data - Not Found Community (404)": ({404}, None, "404"),
    # The suite's schema bodies hold /* */ comments; Postman and newman strip them before
    # sending (body.options.raw.language = json), so the server gets plain JSON.
    "Create Site and Schema": ({200}, None, "200 {message: Schema created ...} (site living_lab_test_schema is new)"),
    "List schema from site": ({404}, None, "404: no site is named 'site'"),
    "Update Schema": ({200}, None, "200 {message: Schema updated ...} (site i-charging_headquarters is prepared)"),
}


def load_collection(zip_path: Path) -> dict:
    raw = subprocess.run(["git", "-C", REPO, "show", f"{COMMIT}:{COLLECTION}"], check=True, capture_output=True).stdout
    coll = json.loads(raw)
    coll["item"] = [it for it in coll["item"] if it.get("name") != "Agent"]

    def walk(items):
        for it in items:
            walk(it.get("item", []))
            for field in (it.get("request", {}).get("body") or {}).get("formdata", []) or []:
                if field.get("type") == "file":
                    field["src"] = str(zip_path)

    walk(coll["item"])
    return coll


def run_newman(coll: dict, base_url: str, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    coll_path, report = out_dir / "collection.json", out_dir / "newman-report.json"
    coll_path.write_text(json.dumps(coll))
    cmd = [str(CACHE / "node_modules/.bin/newman"), "run", str(coll_path), "--env-var", f"baseUrl={base_url}",
           "--reporters", "cli,json", "--reporter-json-export", str(report), "--timeout-request", "20000",
           "--timeout", "600000", "--suppress-exit-code", "--color", "off", "--disable-unicode"]
    with open(out_dir / "newman.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=900)
    return json.loads(report.read_text())


def _body(execution: dict) -> tuple[str, object]:
    stream = (execution.get("response") or {}).get("stream") or {}
    text = bytes(stream.get("data", [])).decode("utf-8", "replace")
    try:
        return text, json.loads(text)
    except ValueError:
        return text, text


def judge(report: dict) -> tuple[dict, dict]:
    asserted = {"client": "postman-assertions", "passed": 0, "total": 0, "failures": []}
    requests = {"client": "postman-requests", "passed": 0, "total": 0, "failures": []}
    for ex in report["run"]["executions"]:
        name = ex["item"]["name"]
        resp = ex.get("response") or {}
        code = resp.get("code")
        text, body = _body(ex)
        snippet = " ".join(text.split())[:160]
        where = f"{ex['request']['method']} {'/' + '/'.join(ex['request']['url'].get('path', []))}"
        err = (ex.get("requestError") or {}).get("message")
        for a in ex.get("assertions", []):
            asserted["total"] += 1
            if a.get("error"):
                asserted["failures"].append(f"{name} [{a['assertion']}]: {where} -> {code or err}: {a['error']['message'][:100]}; body: {snippet}")
            else:
                asserted["passed"] += 1
        codes, check, upstream = EXPECT.get(name, ({200}, None, "200"))
        requests["total"] += 1
        ok = code in codes and (check is None or check(body))
        if ok:
            requests["passed"] += 1
        else:
            got = f"{code}" if code else f"no answer ({err})"
            requests["failures"].append(f"{name}: {where} -> {got}; upstream: {upstream}; body: {snippet}")
    return asserted, requests


def main() -> int:
    ap = argparse.ArgumentParser(description="Upstream Postman suite against our API")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--out", type=Path, help="write the verdicts here (JSON lines)")
    a = ap.parse_args()
    report = run_newman(load_collection(a.state_dir / "sample-dataset.zip"), a.base_url, a.state_dir / "postman")
    verdicts = judge(report)
    for v in verdicts:
        print(f"{v['client']}: {v['passed']}/{v['total']}")
        for f in v["failures"]:
            print(f"  FAIL {f}")
    if a.out:
        with open(a.out, "a") as fh:
            for v in verdicts:
                fh.write(json.dumps(v) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
