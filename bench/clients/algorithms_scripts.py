"""Run the maintainers' own scripts (Algorithms repository) unchanged against a throw-away platform.

    OPEVA_IMAGE=opeva-runtime:mine python3 bench/clients/algorithms_scripts.py [--mirror DIR] [--commit 0bc57d9]

What runs, with ``OPEVA_SERVER`` pointing at our API (the scripts' own environment variable):
``manage_remote_experiment.py preflight`` (without ``--deucalion``), ``submit
--confirm-submit`` of a ``config_path`` payload, ``watch --until-terminal --details``, then
``collect_remote_results.py --jobs-file submitted_jobs.json``. Each step passes when the script
exits 0 and its outputs hold what a maintainer reads (job id, terminal status, the KPI
table). The scripts come from the fetched mirror by ``git archive`` into a temporary folder
(nothing of upstream is committed here) and run in their own venv (PyYAML only: the
``prepare`` step and inline configs import the Algorithms package, torch included, and are
not run; a ``config_path`` payload is what ``submit`` takes without it).

The platform is started like ``make up`` on free ports, with one host whose
``simulator_image`` is the runtime image's repository: the ``image_tag`` the scripts must send
is then the runtime image's tag, which runs the reference simulator. Prints a pass/fail table;
exit 1 when a step fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/Soft-CPS-Research-Group+Algorithms/repo")
VENV = Path(os.environ.get("OPEVA_CACHE", "/var/cache/opeva")) / "algorithms-scripts-venv"
CONFIG = """experiment: {name: algorithms-scripts, run_name: bench}
algorithm: rule_based
seed: 3
simulation: {buildings: 3, days: 2}
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def scripts_from_mirror(mirror: Path, commit: str, dest: Path) -> Path:
    """``scripts/`` of the pinned commit, unpacked under ``dest`` (the scripts' REPO_ROOT)."""
    archive = subprocess.run(["git", "--git-dir", str(mirror), "archive", commit, "scripts"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "scripts"


def scripts_python() -> str:
    """A venv of the scripts' own (PyYAML), made once and cached."""
    python = VENV / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import yaml"], capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "PyYAML==6.0.2"], check=True)
    return str(python)


def start_platform(state: Path, image: str) -> tuple[subprocess.Popen, str]:
    prefect, api, mongo = free_ports(3)
    data = state / "home" / "data"
    data.mkdir(parents=True)
    repository, tag = image.rsplit(":", 1)
    hosts = state / "hosts.yaml"
    hosts.write_text(f"""hosts:
  - name: local
    concurrency_limit: 2
    volumes: ["{data}:{data}"]
    start_worker: true
    simulator_image: {repository}
""")
    env = {**os.environ, "OPEVA_HOME": str(state / "home"), "OPEVA_DATA_DIR": str(data), "OPEVA_HOSTS_FILE": str(hosts), "OPEVA_IMAGE": image,
           "OPEVA_PREFECT_PORT": str(prefect), "OPEVA_API_PORT": str(api), "OPEVA_MONGO_PORT": str(mongo), "PYTHONPATH": str(ROOT)}
    for key in ("MONGO_URI", "PREFECT_API_URL"):
        env.pop(key, None)
    log = open(state / "platform.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "deployments.up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(900):
        if "OPEVA platform is up" in (state / "platform.log").read_text():
            return proc, f"http://127.0.0.1:{api}"
        if proc.poll() is not None:
            break
        time.sleep(1)
    stop_platform(proc)
    raise SystemExit("platform did not start:\n" + (state / "platform.log").read_text()[-3000:])


def stop_platform(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run(python: str, repo: Path, server: str, args: list[str], timeout: float = 900) -> tuple[int, str, float]:
    started = time.monotonic()
    out = subprocess.run([python, *args], cwd=repo, env={"PATH": os.environ["PATH"], "OPEVA_SERVER": server, "HOME": str(repo)},
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, (out.stdout + out.stderr).strip(), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--commit", default="0bc57d9")
    args = parser.parse_args()
    image = os.environ.get("OPEVA_IMAGE") or "opeva-runtime:algorithms-scripts"
    if ":" not in image:
        raise SystemExit("OPEVA_IMAGE must name a tag (repository:tag)")
    state = Path(tempfile.mkdtemp(prefix="opeva-algorithms-"))
    repo = state / "algorithms"
    repo.mkdir()
    scripts = scripts_from_mirror(args.mirror, args.commit, repo)
    python = scripts_python()
    proc, server = start_platform(state, image)
    rows: list[tuple[str, bool, float, str]] = []
    try:
        with httpx.Client(base_url=server, timeout=60) as api:
            r = api.post("/experiment-config/create", json={"file_name": "algorithms_bench.yaml", "yaml_content": CONFIG})
            assert r.status_code == 200, r.text
        tag = image.rsplit(":", 1)[1]
        campaign = state / "campaign"
        payload = state / "payload.json"
        payload.write_text(json.dumps({"config_path": "configs/algorithms_bench.yaml", "target_host": "local", "job_name": "algorithms-bench",
                                       "submitted_by": "maintainer", "image_tag": tag}))
        manage, collect = str(scripts / "manage_remote_experiment.py"), str(scripts / "collect_remote_results.py")
        rows += steps(python, repo, server, manage, collect, payload, campaign, state, tag)
    finally:
        stop_platform(proc)
    width = max(len(r[0]) for r in rows)
    print(f"\nAlgorithms {args.commit} scripts against {server} (image {image}); state {state}")
    print(f"{'step':<{width}}  result  seconds  detail")
    for name, ok, seconds, detail in rows:
        print(f"{name:<{width}}  {'pass' if ok else 'FAIL':<6}  {seconds:7.1f}  {detail}")
    return 0 if rows and all(ok for _, ok, _, _ in rows) else 1


def steps(python: str, repo: Path, server: str, manage: str, collect: str, payload: Path, campaign: Path, state: Path, tag: str) -> list:
    rows = []
    code, out, secs = run(python, repo, server, [manage, "preflight", "--target-host", "local", "--image-tag", tag, "--strict", "--output", str(state / "preflight.json")])
    snap = json.loads((state / "preflight.json").read_text()) if (state / "preflight.json").exists() else {}
    flags = {k: snap.get(k) for k in ("target_host_found", "target_host_online", "image_tag_found")}
    rows.append(("preflight --strict", code == 0 and not snap.get("errors") and all(flags.values()), secs, f"exit {code}, {flags}, errors {snap.get('errors')}"))
    code, out, secs = run(python, repo, server, [manage, "submit", "--payload", str(payload), "--campaign-dir", str(campaign), "--confirm-submit"])
    records = json.loads((campaign / "submitted_jobs.json").read_text()) if (campaign / "submitted_jobs.json").exists() else []
    job_id = records[0]["job_id"] if records else ""
    rows.append(("submit --confirm-submit", code == 0 and bool(job_id), secs, f"exit {code}, job {job_id or out[-300:]}"))
    if not job_id:
        return rows
    code, out, secs = run(python, repo, server, [manage, "watch", "--jobs-file", str(campaign / "submitted_jobs.json"), "--until-terminal", "--details",
                                                 "--interval", "2", "--max-wait-seconds", "600", "--output-dir", str(state / "watch")])
    latest = json.loads((state / "watch" / "latest_status.json").read_text()) if (state / "watch" / "latest_status.json").exists() else [{}]
    status = latest[0].get("status")
    rows.append(("watch --until-terminal --details", code == 0 and status == "finished", secs, f"exit {code}, status {status}"))
    out_dir = state / "collected"
    code, out, secs = run(python, repo, server, [collect, "--jobs-file", str(campaign / "submitted_jobs.json"), "--output-dir", str(out_dir)])
    summary = list(csv.DictReader((out_dir / "summary.csv").open())) if (out_dir / "summary.csv").exists() else []
    row = summary[0] if summary else {}
    ok = code == 0 and row.get("status") == "finished" and not row.get("errors") and row.get("kpi_file") == "exported_kpis.csv" \
        and row.get("community_cost_eur") not in (None, "") and (out_dir / "jobs" / job_id / "exported_data_community.csv").is_file()
    detail = {k: row.get(k) for k in ("status", "errors", "kpi_file", "simulation_data_session", "community_cost_eur", "cost_bau_eur",
                                      "community_import_kwh", "job_name", "image_tag", "queued_at", "total_duration_seconds")}
    rows.append(("collect_remote_results", ok, secs, f"exit {code}, {detail}"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
