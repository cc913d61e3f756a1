"""Log floods: is a job's log complete at its final state, and do the supervisor and API stay small?

Runs, through the real API on a throw-away platform (Docker work pool, SQLite):
- baseline: a job that prints 10 lines;
- 200k lines on stdout (~2.3 MB);
- a 1 GiB sparse log file (one line of NULs, then one line) plus 20k lines on stdout;
- 40k lines of 1 KiB on stdout (40 MiB: what ``/logs`` costs the API for a big log);
and prints, per job: seconds from submit to the final state, the job's lines found in
``/logs`` at that moment, the seconds that read took, the supervisor container's peak
memory (docker stats, page cache excluded) and the API process's peak RSS during the job
and the reads of ``/logs`` and ``/file-logs`` (VmHWM, reset before each job through
``/proc/<pid>/clear_refs``; the first row is the baseline). Target (issue 21): every line
there at the final state, both peaks <= 200 MiB.

    OPEVA_IMAGE=opeva-runtime:<tag> python bench/log_flood.py
"""

from __future__ import annotations

import threading
import time

import _platform  # noqa: F401  (sets up sys.path and the environment first)
from _platform import running_platform

import docker
import httpx

LINES = "import sys\nw = sys.stdout.write\nfor i in range(N): w(f'line {i}\\n')\nsys.stdout.flush()"
SPARSE = (
    "import os, sys\nlog = os.environ['OPEVA_LOG_FILE']\n"
    "with open(log, 'wb') as f:\n    f.truncate(1 << 30); f.seek(0, 2); f.write(b'\\nend of the sparse file\\n')\n"
    "w = sys.stdout.write\nfor i in range(20000): w(f'line {i}\\n')\nsys.stdout.flush()"
)
WIDE = "import sys\nw = sys.stdout.write\npad = 'x' * 1000\nfor i in range(40000): w(f'line {i} {pad}\\n')\nsys.stdout.flush()"
CASES = [("baseline (10 lines)", LINES.replace("N", "10"), 10), ("200k lines on stdout", LINES.replace("N", "200000"), 200_000),
         ("1 GiB sparse log + 20k lines", SPARSE, 20_000), ("40k lines of 1 KiB (40 MiB)", WIDE, 40_000)]


class Peak(threading.Thread):
    def __init__(self, job_id: str) -> None:
        super().__init__(daemon=True)
        self.job_id, self.peak = job_id, 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = docker.from_env()
        while not self.stop.is_set():
            for c in client.containers.list(ignore_removed=True, filters={"label": [f"opeva.job_id={self.job_id}", "opeva.role=simulator"]}):
                try:
                    mem = client.api.stats(c.labels["opeva.supervisor"], stream=False, one_shot=True)["memory_stats"]
                    self.peak = max(self.peak, int(mem.get("usage", 0)) - int((mem.get("stats") or {}).get("inactive_file", 0)))
                except Exception:
                    pass
            time.sleep(0.3)


def vm_hwm_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm(pid: int) -> None:
    """Start the process's peak RSS again from its current RSS (Linux >= 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def run_case(api: httpx.Client, api_pid: int, name: str, script: str, expected: int) -> str:
    reset_hwm(api_pid)
    started = time.monotonic()
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "flood", "run_name": "x"}},
                                          "command": ["python3", "-c", script], "target_host": "local"})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    peak = Peak(job_id)
    peak.start()
    while (status := api.get(f"/status/{job_id}").json()["status"]) not in ("finished", "failed", "stopped"):
        time.sleep(0.25)
    seconds = time.monotonic() - started
    peak.stop.set()
    read_started = time.monotonic()
    found = 0
    with api.stream("GET", f"/logs/{job_id}", params={"follow": "false"}) as r:
        for line in r.iter_lines():
            found += line.startswith("line ")
    read_seconds = time.monotonic() - read_started
    api.get(f"/file-logs/{job_id}", params={"follow": "false"})
    return (f"| {name:<30} | {status:<8} | {seconds:>8.1f} | {found:>7}/{expected:<7} | {read_seconds:>7.1f} | "
            f"{peak.peak / 2**20:>14.0f} | {vm_hwm_mib(api_pid):>12.0f} |")


def main() -> None:
    with running_platform({"local": True}, api=True, concurrency=1) as p, httpx.Client(base_url=p.api_url, timeout=300) as api:
        api_pid = next(s.proc.pid for s in p.services if s.name == "api")
        rows = [run_case(api, api_pid, *case) for case in CASES]
    print(f"| {'job':<30} | {'state':<8} | {'final s':>8} | {'lines in /logs':>15} | {'read s':>7} | {'supervisor MiB':>14} | {'API peak MiB':>12} |")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 10}|{'-' * 17}|{'-' * 9}|{'-' * 16}|{'-' * 14}|")
    print("\n".join(rows))
    print("target: every line in /logs at the final state; supervisor and API peaks <= 200 MiB "
          "(API: VmHWM from the job's submit through its /logs and /file-logs reads)")


if __name__ == "__main__":
    main()
