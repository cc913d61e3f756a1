"""An upstream-style OPEVA simulator (contract of OPEVA_UPSTREAM.md section 3), for tests.

Called as ``run_experiment.py --config /data/configs/<file> --job_id <id>``. Reads a
JSON config (JSON is YAML, and this image has no YAML library), logs loguru-style to
stderr and to ``jobs/<id>/logs/<id>.log``, writes ``progress_pct``, a result that goes
pending -> completed (with nulls), simulation data CSVs and ``config.resolved.yaml``,
and merges its keys into ``job_info.json``. ``simulator.probe: true`` also records what
this process can reach (the sandbox tests read it).
"""

import argparse
import datetime
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LOG = None


def log(level, message):
    line = f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" | {level:<8} | run_experiment:main - {message}"
    print(line, file=sys.stderr, flush=True)
    LOG.write(line + "\n")
    LOG.flush()


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def attempt(fn):
    try:
        fn()
        return "allowed"
    except Exception as exc:  # noqa: BLE001 - the refusal itself is the answer
        return f"refused: {type(exc).__name__}: {exc}"[:300]


def probe(base, job_dir, job_id, prefect_api):
    def write(path):
        with open(path, "w") as f:
            f.write("escape")

    def prefect_privileged():
        body = json.dumps({"job_variables": {"privileged": True, "volumes": ["/:/host"]}}).encode()
        req = urllib.request.Request(f"{prefect_api}/flow_runs/filter", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    def docker_socket():
        s = socket.socket(socket.AF_UNIX)
        s.connect("/var/run/docker.sock")

    def pid1_environ():
        return open("/proc/1/environ", "rb").read()

    found = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "env_keys": sorted(os.environ),
        "docker_socket_exists": os.path.exists("/var/run/docker.sock"),
        "docker_socket": attempt(docker_socket),
        "pid1_environ": attempt(pid1_environ),
        "prefect_api": attempt(prefect_privileged),
        "write_configs": attempt(lambda: write(f"{base}/configs/written-by-a-job.yaml")),
        "write_root": attempt(lambda: write(f"{base}/written-by-a-job.txt")),
        "write_other_job": attempt(lambda: write(f"{base}/jobs/written-by-a-job.txt")),
        "write_own_job": attempt(lambda: write(f"{job_dir}/inside.txt")),
        "capabilities": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
        "no_new_privs": open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0],
    }
    secrets = [k for k in os.environ if k.startswith("PREFECT") or "AUTH" in k or "TOKEN" in k or "MONGO" in k]
    found["secret_env"] = secrets
    write_json(f"{job_dir}/probe.json", found)


def mlflow_call(uri, path, body=None, query=""):
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}{query}", method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read() or b"{}")


def track(base, job_id, experiment, params, metrics):
    """Like upstream: always <base>/mlflow/mlruns; a run in the server at MLFLOW_TRACKING_URI, else the file store."""
    os.makedirs(f"{base}/mlflow/mlruns", exist_ok=True)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        write_json(f"{base}/mlflow/mlruns/{job_id}.json", {"params": params, "metrics": metrics})
        return None
    try:
        exp = mlflow_call(uri, "experiments/get-by-name", query=f"?experiment_name={urllib.parse.quote(experiment)}")["experiment"]["experiment_id"]
    except urllib.error.HTTPError:
        exp = mlflow_call(uri, "experiments/create", {"name": experiment})["experiment_id"]
    run = mlflow_call(uri, "runs/create", {"experiment_id": exp, "start_time": int(time.time() * 1000),
                                           "tags": [{"key": "opeva.job_id", "value": job_id}]})["run"]["info"]["run_id"]
    now = int(time.time() * 1000)
    mlflow_call(uri, "runs/log-batch", {"run_id": run, "params": [{"key": k, "value": str(v)} for k, v in params.items()],
                                        "metrics": [{"key": k, "value": v, "timestamp": now, "step": 0} for k, v in metrics.items()]})
    mlflow_call(uri, "runs/update", {"run_id": run, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    return run


def reach(targets):
    """host:port -> 'open' or why not (the network tests read it)."""
    found = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        found[target] = attempt(lambda: socket.create_connection((host, int(port)), timeout=2).close())
    return found


def main():
    global LOG
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--job_id", required=True)
    args = parser.parse_args()
    base = os.environ.get("OPEVA_BASE_DIR", "/data")
    job_dir = f"{base}/jobs/{args.job_id}"
    for sub in ("logs", "progress", "results"):
        os.makedirs(f"{job_dir}/{sub}", exist_ok=True)
    LOG = open(f"{job_dir}/logs/{args.job_id}.log", "a")
    config = json.load(open(args.config))
    sim = config.get("simulator", {})
    if sim.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result_file = f"{job_dir}/results/result.json"
    write_json(result_file, {"status": "pending"})
    log("INFO", f"Experiment {os.environ.get('OPEVA_JOB_NAME')} starting with {args.config}")
    with open(f"{job_dir}/config.resolved.yaml", "w") as f:
        json.dump({**config, "resolved": True}, f)
    info_path = f"{job_dir}/job_info.json"
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    write_json(info_path, {**info, "simulator": "upstream-style", "mlflow_run_id": None})
    if sim.get("probe"):
        probe(base, job_dir, args.job_id, sim.get("prefect_api", ""))
    if sim.get("reach"):
        write_json(f"{job_dir}/reach.json", reach(sim["reach"]))
    steps = int(sim.get("steps", 4))
    for step in range(1, steps + 1):
        time.sleep(float(sim.get("sleep", 0.2)))
        write_json(f"{job_dir}/progress/progress.json", {
            "progress_pct": round(100 * step / steps, 1), "episode": 1, "step": step, "global_step": step,
            "status": "running", "timestamp": time.time()})
        log("INFO", f"step {step}/{steps}")
    log("ERROR", "a recoverable problem, logged at ERROR (test)")
    if sim.get("fail"):
        write_json(result_file, {"status": "failed", "error": "asked to fail", "traceback": None})
        log("ERROR", "Experiment failed")
        return 3
    session = f"{job_dir}/results/simulation_data/session-1"
    os.makedirs(session, exist_ok=True)
    with open(f"{session}/building_1.csv", "w") as f:
        f.write("step,net_load\n1,0.5\n2,0.7\n")
    run_id = track(base, args.job_id, config.get("metadata", {}).get("experiment_name", "upstream"), {"steps": steps}, {"cost": 1.25})
    write_json(result_file, {"status": "completed", "kpis": {"cost": 1.25, "emissions": None}, "mlflow_run_id": run_id})
    log("INFO", f"Experiment finished: {sim.get('last_words', 'done')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
