"""A Slurm host against Slurm itself, on a real cluster (this machine's node, 2 slots; node2 for the node loss), in one run.

Rows, each beside its baseline (the same thing done with raw Slurm commands):
  submit -> running     POST /run-simulation until /status says running  |  sbatch until squeue says R
  stop -> stopped       POST /stop until /status says stopped (the job's TERM handler ran)  |  scancel --signal=TERM until gone
  exit 3 -> failed      POST until /status says failed "exit code 3"  |  sbatch until scontrol says FAILED
  N short jobs          all N submitted through the API until all finished; most running at once  |  N raw sbatch jobs
  node lost (link cut)  a job on node2 (partition lossy, its slurmd in a network namespace) running, its link cut,
                        until /status says failed node_fail  |  the same raw sbatch job until scontrol says NODE_FAIL;
                        both beside the cluster's SlurmdTimeout (Slurm's own bound for calling a node lost)

Usage (root, slurm-wlm + munge + socat installed): python bench/slurm.py [--runs 3] [--jobs 40] [--node-loss-runs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402

from _cpu import MACHINE, machine_cpu, print_split, proc_cpu, services_cpu  # noqa: E402
from _table import HEADER, row  # noqa: E402
from deployments.slurm_cluster import SlurmCluster, simulator_venv  # noqa: E402
from helpers import new_platform, pointed_at  # noqa: E402
from tools.polling import wait_until  # noqa: E402


def wait(pred, timeout: float = 300.0, step: float = 0.1):
    """Polled every 0.1 s: the figures below are latencies."""
    return wait_until(pred, timeout, step)

HOSTS = """hosts:
  - name: deucalion
    kind: slurm
    concurrency_limit: {limit}
    slurm:
      partitions: [normal-x86, lossy]
      runtime: none
      defaults: {{time: "00:05:00", cpus_per_task: 1, mem_gb: 0.5, gpus: 0}}
      stop_grace_seconds: 5
      python: {python}
"""
TRAP = "trap 'echo TERM handler ran; exit 0' TERM; echo started; while :; do sleep 0.1; done"


def sh(*args: str, env=None) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout


def raw_state(job: str) -> str:
    out = sh("scontrol", "show", "job", "-o", job)
    return out.split("JobState=")[1].split()[0] if "JobState=" in out else "GONE"


def raw_sbatch(script: str, output: str = "/dev/null", partition: str = "normal-x86") -> str:
    return sh("sbatch", "--parsable", "--no-requeue", "--uid=65534", "--gid=65534", "--export=NONE", "--chdir=/tmp", f"--output={output}",
              "-p", partition, "-t", "00:05:00", "--mem=512M", "--wrap", script).strip()


def raw_started(path: str) -> bool:
    try:
        return "started" in Path(path).read_text()
    except OSError:
        return False


class Api:
    def __init__(self, url: str) -> None:
        self.c = httpx.Client(base_url=url, timeout=60)

    def submit(self, command: list[str] | None = None, run: str = "r", partition: str | None = None) -> str:
        body = {"config": {"experiment": {"name": "bench", "run_name": run}}, "target_host": "deucalion"}
        if partition:
            body["deucalion_options"] = {"partition": partition}
        if command:
            body["command"] = command
        r = self.c.post("/run-simulation", json=body)
        r.raise_for_status()
        return r.json()["job_id"]

    def status(self, job: str) -> dict:
        try:
            return self.c.get(f"/status/{job}").json()
        except httpx.TimeoutException:  # an API busy with the burst: ask again at the next poll
            return {"status": "unknown"}


def measure(api: Api, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("run", "raw_run", "stop", "raw_stop", "fail", "raw_fail")}
    for i in range(runs):
        t = time.monotonic()
        job = api.submit(["bash", "-c", TRAP], f"s{i}")
        wait(lambda: api.status(job)["status"] == "running")
        out["run"].append(time.monotonic() - t)
        wait(lambda: "started" in api.c.get(f"/logs/{job}").text)
        t = time.monotonic()
        api.c.post(f"/stop/{job}")
        wait(lambda: api.status(job)["status"] in ("stopped", "failed", "finished"))
        out["stop"].append(time.monotonic() - t)
        assert api.status(job)["status"] == "stopped" and "TERM handler ran" in api.c.get(f"/logs/{job}").text
        t = time.monotonic()
        job = api.submit(["sh", "-c", "exit 3"], f"f{i}")
        wait(lambda: api.status(job)["status"] in ("failed", "finished"))
        out["fail"].append(time.monotonic() - t)
        assert "code 3" in api.status(job)["prefect_state"]["message"]
        # the same with raw Slurm
        t = time.monotonic()
        out_file = f"/tmp/opeva-bench-slurm-raw-{os.getpid()}-{i}.out"
        sid = raw_sbatch(TRAP, out_file)
        wait(lambda: raw_state(sid) == "RUNNING")
        out["raw_run"].append(time.monotonic() - t)
        wait(lambda: raw_started(out_file))  # as the API row waits for "started": TERM before the trap is set would be lost
        t = time.monotonic()
        sh("scancel", "--full", "--signal=TERM", sid)
        wait(lambda: raw_state(sid) not in ("RUNNING", "COMPLETING", "PENDING"))
        out["raw_stop"].append(time.monotonic() - t)
        t = time.monotonic()
        sid = raw_sbatch("exit 3")
        wait(lambda: raw_state(sid) == "FAILED")
        out["raw_fail"].append(time.monotonic() - t)
    return out


def node_lost(api: Api, cluster: SlurmCluster, runs: int) -> dict[str, list[float]]:
    """Seconds from node2's link cut to the job's end: through the API (failed node_fail), and raw
    (scontrol says NODE_FAIL). The link is healed and node2 idle again before the next run."""
    out: dict[str, list[float]] = {"lost": [], "raw_lost": []}
    for i in range(runs):
        job = api.submit(["bash", "-c", "echo started; while :; do sleep 1; done"], f"n{i}", partition="lossy")
        wait(lambda: "started" in api.c.get(f"/logs/{job}").text)
        cluster.cut_node2()
        t = time.monotonic()
        wait(lambda: api.status(job)["status"] in ("failed", "finished", "stopped"), timeout=600, step=0.5)
        out["lost"].append(time.monotonic() - t)
        info = api.c.get(f"/job-info/{job}").json()
        assert (api.status(job)["status"], info["error_code"], info["slurm_state"]) == ("failed", "node_fail", "NODE_FAIL"), info
        cluster.heal_node2()
        out_file = f"/tmp/opeva-bench-slurm-raw-{os.getpid()}-n{i}.out"
        sid = raw_sbatch(TRAP, out_file, partition="lossy")
        wait(lambda: raw_started(out_file))
        cluster.cut_node2()
        t = time.monotonic()
        wait(lambda: raw_state(sid) not in ("RUNNING", "PENDING", "CONFIGURING"), timeout=600, step=0.5)
        out["raw_lost"].append(time.monotonic() - t)
        assert raw_state(sid) == "NODE_FAIL", raw_state(sid)
        cluster.heal_node2()
    return out


def slurmd_timeout() -> float:
    line = next(l for l in sh("scontrol", "show", "config").splitlines() if l.startswith("SlurmdTimeout"))
    return float(line.split("=")[1].split()[0])


def most_running(stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen.append(len([l for l in sh("squeue", "-h", "-t", "R", "-o", "%i").splitlines() if l.strip()]))
        time.sleep(0.25)


def cpu_split(platform) -> dict[str, float]:
    """CPU seconds so far per part: each platform service and its reaped children (the worker's children
    are the flow runs' launchers; its living child, the fork server, holds the engines it forked, with the Slurm commands they ran),
    Slurm's daemons, and the whole machine (/proc/stat)."""
    out = services_cpu(platform)
    for daemon in ("slurmctld", "slurmd"):
        out[daemon] = sum(proc_cpu(int(p))[0] for p in sh("pgrep", "-x", daemon).split())
    out[MACHINE] = machine_cpu()
    return out


def burst(api: Api, n: int, platform) -> tuple[float, int, float, int, int]:
    seen: list[int] = []
    stop = threading.Event()
    threading.Thread(target=most_running, args=(stop, seen), daemon=True).start()
    before = cpu_split(platform)
    t = time.monotonic()
    jobs = [api.submit(["sh", "-c", "sleep 1; echo done"], f"b{i}") for i in range(n)]
    wait(lambda: all(api.status(j)["status"] in ("finished", "failed", "stopped") for j in jobs), timeout=1800, step=1)
    ours = time.monotonic() - t
    print_split(f"CPU seconds during the {n} jobs through the API ({ours:.1f} s of wall time, {os.cpu_count()} cores)", before, cpu_split(platform))
    finished = sum(api.status(j)["status"] == "finished" for j in jobs)
    stop.set()
    peak = max(seen or [0])
    seen.clear()
    stop = threading.Event()
    threading.Thread(target=most_running, args=(stop, seen), daemon=True).start()
    t = time.monotonic()
    ids = [raw_sbatch("sleep 1; echo done") for _ in range(n)]
    wait(lambda: all(raw_state(i) in ("COMPLETED", "FAILED", "GONE") for i in ids), timeout=900, step=0.5)
    raw = time.monotonic() - t
    stop.set()
    return ours, peak, raw, max(seen or [0]), finished


def latencies(api: Api, cluster: SlurmCluster, args: argparse.Namespace) -> None:
    """The single-job rows and the node-loss rows, each beside its raw-Slurm baseline."""
    m = measure(api, args.runs)
    print(f"\nSlurm host vs raw Slurm, this machine's node (2 slots), {args.runs} runs each; node2 (partition lossy) "
          f"for the node-loss rows, {args.node_loss_runs} cut(s)\n")
    print(HEADER)
    for key, name in (("run", "submit -> running (API /status)"), ("raw_run", "  baseline: sbatch -> squeue R"),
                      ("stop", "stop -> stopped (TERM handler ran)"), ("raw_stop", "  baseline: scancel --signal=TERM -> gone"),
                      ("fail", "exit 3 -> failed 'exit code 3'"), ("raw_fail", "  baseline: sbatch exit 3 -> FAILED")):
        print(row(name, m[key]), flush=True)
    lost = node_lost(api, cluster, args.node_loss_runs)
    print(row("node lost (link cut) -> failed node_fail", lost["lost"]))
    print(row("  baseline: link cut -> scontrol NODE_FAIL", lost["raw_lost"]))
    print(row("  Slurm's SlurmdTimeout (the bound)", [slurmd_timeout()]), flush=True)



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--node-loss-runs", type=int, default=1, help="link cuts of node2 (each lasts ~SlurmdTimeout)")
    parser.add_argument("--limit", type=int, default=40, help="the host's concurrency_limit (flow runs at once)")
    parser.add_argument("--burst-only", action="store_true", help="only the N-jobs row (to compare --limit values)")
    args = parser.parse_args()
    python = simulator_venv()
    with SlurmCluster.start(second_node=True) as cluster:
        os.environ.update(cluster.env())
        home = Path(tempfile.mkdtemp(prefix="opeva-bench-slurm-"))
        home.chmod(0o755)
        platform = new_platform(home)
        hosts = home / "hosts.yaml"
        hosts.write_text(HOSTS.format(limit=args.limit, python=python))
        with pointed_at(platform, hosts):
            os.environ["OPEVA_MLFLOW"] = "0"
            try:
                platform.start_prefect_server()
                platform.start_mongo()
                platform.setup_pools(hosts, docker=False)
                platform.start_worker("deucalion", "process")
                platform.start_api(OPEVA_HOSTS_FILE=str(hosts))
                for d in (platform.data_dir, platform.data_dir / "jobs"):
                    d.chmod(0o755)
                api = Api(platform.api_url)
                if not args.burst_only:
                    latencies(api, cluster, args)
                ours, peak, raw, raw_peak, finished = burst(api, args.jobs, platform)
            finally:
                platform.stop()
    print(f"\n| {args.jobs} jobs of `sleep 1` | wall time (s) | most running at once | finished |\n|---|---|---|---|")
    print(f"| through the API (concurrency_limit {args.limit}) | {ours:.1f} | {peak} | {finished}/{args.jobs} |")
    print(f"| raw sbatch (baseline) | {raw:.1f} | {raw_peak} | - |")
    print(f"\nratio API/raw: {ours / raw:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
