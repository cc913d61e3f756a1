"""A stand-in for OPEVA's simulator image (calof/opeva_simulator, Algorithms@0bc57d9's
``run_experiment.py``), for tests: it behaves like upstream's where the platform sees it.

- CLI ``--config``, ``--job_id``, ``--base-dir``; base ``$OPEVA_BASE_DIR`` (``/data``).
- ``_prepare_paths`` as upstream: the job's folders **and ``<base>/mlflow/mlruns``**, always.
- start-up traces ``[opeva-startup +0.012s] ...`` on stderr (as upstream), nothing else on
  stdout/stderr; loguru-format lines (``YYYY-MM-DD HH:mm:ss.SSS | LEVEL    | name:function:line - msg``)
  **only** to ``jobs/<id>/logs/<id>.log`` (upstream calls ``logger.remove()`` first).
- MLflow on by default (``tracking.mlflow_enabled``): ``MLFLOW_TRACKING_URI`` first, then
  ``runtime.tracking_uri``, else the file store ``file:<base>/mlflow/mlruns`` (written in MLflow's
  file-store layout, ``.trash`` included). A server is spoken to through MLflow's REST API
  (``/api/2.0/mlflow/...``) with urllib: this image has no mlflow package.
- ``result.json`` pending -> completed (KPIs with nulls) or failed with ``error`` and ``traceback``;
  progress ``progress_pct``; ``summary.json``; simulation data CSVs; ``config.resolved.yaml``;
  keys merged into ``job_info.json`` (rewritten in place, as upstream: the file must be the job's). On error: a traceback on stderr and a non-zero exit.

Reads a JSON config (JSON is YAML; the image has no YAML library). ``simulator:`` options drive
it: ``steps``, ``sleep``, ``fail``, ``ignore_sigterm``, ``probe`` (records what it can reach).
"""

import argparse
import datetime
import json
import os
import signal
import socket
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
import zlib

T0 = time.monotonic()
LOG = None


def startup_trace(message):
    print(f"[opeva-startup +{time.monotonic() - T0:.3f}s] {message}", file=sys.stderr, flush=True)


startup_trace("module import started")


def log(level, message, line=1):
    stamp = f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S.%f}"[:-3]
    LOG.write(f"{stamp} | {level:<8} | __main__:run_experiment:{line} - {message}\n")
    LOG.flush()


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def prepare_paths(base, job_id):
    """Upstream's _prepare_paths: every folder made at once, <base>/mlflow/mlruns included."""
    job = f"{base}/jobs/{job_id}"
    paths = {"job_dir": job, "bundle_dir": f"{job}/bundle", "log_dir": f"{job}/logs", "checkpoints_dir": f"{job}/checkpoints",
             "results_dir": f"{job}/results", "simulation_data_dir": f"{job}/results/simulation_data", "progress_dir": f"{job}/progress",
             "mlflow_dir": f"{base}/mlflow/mlruns"}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
    return paths


class FileStore:
    """MLflow's file store layout (mlruns/<experiment>/<run>/{meta.yaml,params,metrics,tags})."""

    def __init__(self, root):
        self.root = root
        os.makedirs(f"{root}/.trash", exist_ok=True)
        os.makedirs(f"{root}/0", exist_ok=True)
        self._meta(f"{root}/0/meta.yaml", {"experiment_id": "0", "name": "Default", "lifecycle_stage": "active"})

    @staticmethod
    def _meta(path, fields):
        with open(path, "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in fields.items())

    def start(self, experiment):
        exp_id = str(zlib.crc32(experiment.encode()))
        os.makedirs(f"{self.root}/{exp_id}", exist_ok=True)
        self._meta(f"{self.root}/{exp_id}/meta.yaml", {"experiment_id": exp_id, "name": experiment, "lifecycle_stage": "active"})
        run_id = uuid.uuid4().hex
        self.run_dir = f"{self.root}/{exp_id}/{run_id}"
        for sub in ("params", "metrics", "tags", "artifacts"):
            os.makedirs(f"{self.run_dir}/{sub}", exist_ok=True)
        self._meta(f"{self.run_dir}/meta.yaml", {"run_id": run_id, "experiment_id": exp_id, "status": 1, "lifecycle_stage": "active"})
        return exp_id, run_id

    def log(self, params, metrics, step):
        for k, v in params.items():
            with open(f"{self.run_dir}/params/{k}", "w") as f:
                f.write(str(v))
        for k, v in metrics.items():
            with open(f"{self.run_dir}/metrics/{k}", "a") as f:
                f.write(f"{int(time.time() * 1000)} {v} {step}\n")

    def end(self, status):
        with open(f"{self.run_dir}/meta.yaml", "a") as f:
            f.write(f"end_status: {status}\n")


class RestStore:
    """A tracking server, through MLflow's REST API 2.0."""

    def __init__(self, uri, job_id):
        self.uri, self.job_id = uri.rstrip("/"), job_id

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/{path}", data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def start(self, experiment):
        try:
            exp_id = self._call("GET", f"experiments/get-by-name?experiment_name={urllib.request.quote(experiment)}")["experiment"]["experiment_id"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            exp_id = self._call("POST", "experiments/create", {"name": experiment})["experiment_id"]
        run = self._call("POST", "runs/create", {"experiment_id": exp_id, "start_time": int(time.time() * 1000),
                                                 "tags": [{"key": "opeva.job_id", "value": self.job_id}]})["run"]
        self.run_id = run["info"]["run_id"]
        return exp_id, self.run_id

    def log(self, params, metrics, step):
        now = int(time.time() * 1000)
        self._call("POST", "runs/log-batch", {"run_id": self.run_id, "params": [{"key": k, "value": str(v)} for k, v in params.items()],
                                              "metrics": [{"key": k, "value": v, "timestamp": now, "step": step} for k, v in metrics.items()]})

    def end(self, status):
        self._call("POST", "runs/update", {"run_id": self.run_id, "status": status, "end_time": int(time.time() * 1000)})


def tracking_store(config, mlflow_dir, job_id):
    tracking = config.get("tracking") or {}
    if not tracking.get("mlflow_enabled", True):
        return None, None
    uri = (os.environ.get("MLFLOW_TRACKING_URI") or "").strip() or ((config.get("runtime") or {}).get("tracking_uri") or "").strip()
    uri = uri or f"file:{mlflow_dir}"
    return uri, (FileStore(uri[len("file:"):]) if uri.startswith("file:") else RestStore(uri, job_id))


def probe(base, job_dir, prefect_api):
    def attempt(fn):
        try:
            fn()
            return "allowed"
        except Exception as exc:  # noqa: BLE001 - the refusal itself is the answer
            return f"refused: {type(exc).__name__}: {exc}"[:300]

    def write(path):
        with open(path, "w") as f:
            f.write("escape")

    def prefect_privileged():
        body = json.dumps({"job_variables": {"privileged": True, "volumes": ["/:/host"]}}).encode()
        req = urllib.request.Request(f"{prefect_api}/flow_runs/filter", data=body, method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    def docker_socket():
        socket.socket(socket.AF_UNIX).connect("/var/run/docker.sock")

    status = open("/proc/self/status").read()
    found = {
        "uid": os.getuid(), "gid": os.getgid(), "env_keys": sorted(os.environ),
        "docker_socket_exists": os.path.exists("/var/run/docker.sock"), "docker_socket": attempt(docker_socket),
        "pid1_environ": attempt(lambda: open("/proc/1/environ", "rb").read()), "prefect_api": attempt(prefect_privileged),
        "write_configs": attempt(lambda: write(f"{base}/configs/written-by-a-job.yaml")),
        "write_root": attempt(lambda: write(f"{base}/written-by-a-job.txt")),
        "write_other_job": attempt(lambda: write(f"{base}/jobs/written-by-a-job.txt")),
        "write_own_job": attempt(lambda: write(f"{job_dir}/inside.txt")),
        "capabilities": status.split("CapEff:")[1].split()[0], "no_new_privs": status.split("NoNewPrivs:")[1].split()[0],
        "secret_env": [k for k in os.environ if k.startswith("PREFECT") or "AUTH" in k or "TOKEN" in k or "MONGO" in k],
    }
    write_json(f"{job_dir}/probe.json", found)


def reach(targets):
    """host:port -> 'allowed' or why not (the network tests read it)."""
    found = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            found[target] = "allowed"
        except Exception as exc:  # noqa: BLE001 - the refusal itself is the answer
            found[target] = f"refused: {type(exc).__name__}: {exc}"[:300]
    return found


def run_experiment(config_path, job_id, base):
    global LOG
    startup_trace(f"run_experiment entered job_id={job_id} base_dir={base}")
    paths = prepare_paths(base, job_id)
    startup_trace(f"paths prepared job_dir={paths['job_dir']}")
    config = json.load(open(config_path))
    startup_trace("config yaml loaded")
    job_dir, sim = paths["job_dir"], config.get("simulator", {})
    if sim.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log_file = f"{paths['log_dir']}/{job_id}.log"
    LOG = open(log_file, "a")
    startup_trace(f"loguru file sink configured log_file={log_file}")
    log("INFO", f"Logging bootstrap to {log_file}")
    result_file = f"{paths['results_dir']}/result.json"
    write_json(result_file, {"status": "pending"})
    uri, store = tracking_store(config, paths["mlflow_dir"], job_id)
    if store is None:
        log("WARNING", "MLflow disabled; metrics will be stored in local JSONL logs only.")
    log("INFO", f"Starting experiment '{(config.get('metadata') or {}).get('experiment_name')}' (job_id={job_id})")
    try:
        exp_id, run_id = store.start((config.get("metadata") or {}).get("experiment_name") or "upstream") if store else (None, f"local-{job_id}")
        log("INFO", f"MLflow run started: id={run_id}, experiment_id={exp_id}, tracking_uri={uri}")
        ui = (os.environ.get("MLFLOW_UI_BASE_URL") or "").rstrip("/")
        run_url = f"{ui}/#/experiments/{exp_id}/runs/{run_id}" if ui and store else None
        with open(f"{job_dir}/config.resolved.yaml", "w") as f:
            json.dump({**config, "resolved": True, "runtime": {"tracking_uri": uri, "run_id": run_id}}, f)
        info_path = f"{job_dir}/job_info.json"
        info = json.load(open(info_path)) if os.path.exists(info_path) else {}
        with open(info_path, "w") as f:  # in place, as upstream does: the file must be the job's to write, not only its folder
            json.dump({**info, "simulator": "upstream-style", "mlflow_run_id": run_id if store else None, "mlflow_run_url": run_url}, f)
        if sim.get("probe"):
            probe(base, job_dir, sim.get("prefect_api", ""))
        if sim.get("reach"):
            write_json(f"{job_dir}/reach.json", reach(sim["reach"]))
        if store:
            store.log({"steps": sim.get("steps", 4), "algorithm": "stand-in"}, {}, 0)
        steps = int(sim.get("steps", 4))
        for step in range(1, steps + 1):
            time.sleep(float(sim.get("sleep", 0.2)))
            write_json(f"{paths['progress_dir']}/progress.json", {"progress_pct": round(100 * step / steps, 1), "episode": 1, "step": step,
                                                                 "global_step": step, "status": "running", "timestamp": time.time()})
            if store:
                store.log({}, {"reward": step * 0.5}, step)
            log("INFO", f"step {step}/{steps}")
        log("ERROR", "a recoverable problem, logged at ERROR (test)")
        if sim.get("fail"):
            raise RuntimeError("asked to fail")
        os.makedirs(f"{paths['simulation_data_dir']}/session-1", exist_ok=True)
        with open(f"{paths['simulation_data_dir']}/session-1/building_1.csv", "w") as f:
            f.write("step,net_load\n1,0.5\n2,0.7\n")
        write_json(f"{paths['results_dir']}/summary.json", {"job_id": job_id, "run_id": run_id, "experiment_id": exp_id, "tracking_uri": uri,
                                                          "mlflow_enabled": store is not None})
        write_json(result_file, {"status": "completed", "kpis": {"cost": 1.25, "emissions": None}, "mlflow_url": run_url})
        log("INFO", f"Experiment complete: {sim.get('last_words', 'done')}")
        if store:
            store.end("FINISHED")
    except Exception as exc:
        log("ERROR", "Experiment failed\n" + traceback.format_exc().rstrip())
        write_json(result_file, {"status": "failed", "error_type": type(exc).__name__, "error": str(exc), "traceback": traceback.format_exc()})
        if store:
            store.end("FAILED")
        raise


def main():
    parser = argparse.ArgumentParser(description="Run a CityLearn training experiment")
    parser.add_argument("--config", required=True)
    parser.add_argument("--job_id", dest="job_id")
    parser.add_argument("--base-dir")
    args = parser.parse_args()
    base = os.path.abspath(args.base_dir or os.environ.get("OPEVA_BASE_DIR", "./runs"))
    job_id = args.job_id or datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    startup_trace(f"cli parsed config={args.config} base_dir={base}")
    run_experiment(args.config, job_id, base)  # an exception: Python prints its traceback and exits 1


if __name__ == "__main__":
    main()
