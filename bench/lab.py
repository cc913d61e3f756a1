"""The lab at load (issue 22 "Numbers"): N simulated hosts (deployments/lab.py) on a private platform,
as tests/e2e/test_lab.py starts them, plus a ``local`` host on the default engine.

1. load: ``--jobs`` short jobs over the lab hosts (``target_host`` round robin, ``--rate`` per second);
   every second Prefect's Pending + Running runs per pool (the count its limit governs), and the
   simulator / any containers running on each lab engine. Prints jobs final / lost / run twice
   (Prefect's run_count > 1 or two simulator containers seen), the three peaks per host against the
   limit, sustained jobs/s (first submit -> last job final).
2. submit -> running (p50 of 5, /status polled every 0.1 s) on lab-1 vs the local host: the ratio.
3. busy cut: ``--limit`` sleep loops on every lab host, lab-2's link cut for ``--cut-seconds``: cut ->
   offline in /hosts, cut -> lab-2's jobs failed, the other hosts' jobs finished; heal -> online, and
   lab-2's orphans removed by make up's reconcilers (``_reconcile_at_start``'s, ticked here as
   make lab's supervisor loop does).

Targets: 0 lost, 0 run twice, running <= limit, >= 0.5 job/s; ratio <= 1.5; offline <= 35 s,
failed <= 120 s, online <= 15 s, orphans gone <= 30 s. No asserts: the table says what held.

Usage (root): python bench/lab.py [--hosts 4 --jobs 1000 --limit 2 --rate 1 --cut-seconds 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import docker  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402

from _cpu import MACHINE, cgroup_cpu, machine_cpu, print_split, proc_cpu, services_cpu  # noqa: E402
from _table import HEADER, pct, row  # noqa: E402
from core import containers  # noqa: E402
from deployments.lab_net import host_cgroups  # noqa: E402
from lab_load import FINAL, job, run_load, status  # noqa: E402


def until(predicate, timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until ``predicate`` holds, or None when it did not within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


def host_info(api: httpx.Client, host: str) -> dict:
    try:
        return api.get("/hosts").json()["hosts"][host]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def cpu_split(platform, lab) -> dict[str, float]:
    """CPU seconds so far: each platform service (a lab worker's reaped children are nothing: its flow
    runs are containers), every lab engine (dockerd and what it reaped) and the containers it ran (its
    cgroup parent), and the whole machine."""
    out = services_cpu(platform)
    for name in lab.spec.names:
        try:
            pid = int((lab.spec.host_dir(name) / "docker.pid").read_text())
        except (OSError, ValueError):
            continue
        out[f"{name} dockerd"] = sum(proc_cpu(pid))
        out[f"{name} containers"] = sum(cgroup_cpu(d) for d in host_cgroups(lab.spec, name))
    out[MACHINE] = machine_cpu()
    return out


def load(api: httpx.Client, platform, lab, args) -> list[str]:
    before = cpu_split(platform, lab)
    r = run_load(api, platform, lab, args.jobs, args.rate, limit=args.limit)
    print_split(f"CPU seconds during the load ({r.elapsed:.0f} s of wall time, {os.cpu_count()} cores, {len(r.ids)} jobs)", before, cpu_split(platform, lab))
    states = list(r.states.values())
    worst = max(r.max_prefect.values())
    if r.over:
        print("\nsamples with a pool above its limit (first 20):\n" + "\n".join(r.over))
    quarter = max(1, len(r.post_seconds) // 4)
    first, last = r.post_seconds[:quarter], r.post_seconds[-quarter:]
    return [
        f"| jobs submitted (rate {args.rate}/s, over {r.submit_seconds:.0f} s)        | {len(r.ids)} of {args.jobs} |",
        f"| POST /run-simulation answer p50 / p95, first quarter | {pct(first, .5):.2f} / {pct(first, .95):.2f} s |",
        f"| POST /run-simulation answer p50 / p95, last quarter  | {pct(last, .5):.2f} / {pct(last, .95):.2f} s |",
        f"| jobs final / finished / lost                   | {len(r.final)} / {states.count('finished')} / {len(r.lost)} (target lost 0) |",
        f"| jobs run twice                                 | {len(r.twice)} (target 0) |",
        f"| max Pending+Running per pool, Prefect's count (1 s, {r.samples} samples) | {r.max_prefect} (limit {args.limit}: {'ok' if worst <= args.limit else 'ABOVE'}) |",
        f"| max simulators running per host (1 s)           | {r.max_simulators} |",
        f"| max runs with a container running (1 s)         | {r.max_containers} (a supervisor still exiting counts) |",
        f"| sustained jobs/s (first submit -> last final)  | {r.jobs_per_second:.2f} (target >= 0.5) |",
    ]


def to_running(api: httpx.Client, host: str, tag: str) -> float | None:
    t0 = time.monotonic()
    job_id = api.post("/run-simulation", json=job(host, "sleep 2", tag)).json()["job_id"]
    reached = until(lambda: status(api, job_id) in ("running", *FINAL), 120, 0.1)
    took = None if reached is None else time.monotonic() - t0
    until(lambda: status(api, job_id) in FINAL, 120, 0.5)
    return took


def latency(api: httpx.Client, rounds: int = 5) -> tuple[list[str], dict[str, list[float]]]:
    out: dict[str, list[float]] = {"lab-1": [], "local": []}
    for i in range(rounds):
        for host in out:
            took = to_running(api, host, f"lat-{host}-{i}")
            if took is not None:
                out[host].append(took)
    if not out["lab-1"] or not out["local"]:
        return [f"| submit -> running | not reached: {out} |"], out
    ratio = pct(out["lab-1"], .5) / pct(out["local"], .5)
    return [f"| submit -> running p50, lab-1 / local             | {ratio:.2f}x (target <= 1.5x) |"], out


def orphans_gone(platform, lab, job_ids: list[str]) -> tuple[int, float | None]:
    """make up's reconcilers (one per engine) ticked until lab-2's engine has no container of ``job_ids``."""
    from deployments.up import _reconcile_at_start

    engine = docker.DockerClient(base_url=lab.spec.docker_url("lab-2"), timeout=20)

    def left() -> int:
        return sum(len(engine.containers.list(all=True, filters={"label": f"{containers.FLOW_RUN_ID}={j}"}, ignore_removed=True)) for j in job_ids)

    at_heal = left()
    t0 = time.monotonic()
    reconcilers = _reconcile_at_start(platform)  # its start-up pass counts in the time

    def gone() -> bool:
        for each in reconcilers:
            each.next_pass = 0.0
            each.tick()
        return not left()

    try:
        took = until(gone, 120, 1.0)
        return at_heal, None if took is None else time.monotonic() - t0
    finally:
        engine.close()
        for each in reconcilers:
            each.engine.close()
            each.prefect.close()


def fmt(value: float | None, target: float) -> str:
    return f"not within the wait (target <= {target:.0f} s)" if value is None else f"{value:.1f} s (target <= {target:.0f} s)"


def cut(api: httpx.Client, platform, lab, args) -> list[str]:
    from deployments.supervisor import RestartPolicy, check_children

    policy = RestartPolicy(first=0.5)
    loop = f"i=0; while [ $i -lt {args.cut_seconds + 40} ]; do echo busy; sleep 1; i=$((i+1)); done"
    by_host = {n: [api.post("/run-simulation", json=job(n, loop, f"busy-{n}-{k}")).json()["job_id"] for k in range(args.limit)]
               for n in lab.spec.names}
    by_host["local"] = [api.post("/run-simulation", json=job("local", loop, f"busy-local-{k}")).json()["job_id"] for k in range(args.limit)]
    every = [j for ids in by_host.values() for j in ids]
    if until(lambda: all(status(api, j) == "running" for j in every), 240, 1.0) is None:
        return [f"| busy cut | not every busy job running: {[status(api, j) for j in every]} |"]
    automatic = queue_automatic(api, 2 * len(by_host))  # every slot busy: they spread, some wait on lab-2
    victims = by_host["lab-2"]
    others = [j for n, ids in by_host.items() if n != "lab-2" for j in ids]

    def online(want: bool) -> bool:
        check_children(platform, policy)  # as make lab's supervisor: a worker that gives up is started again
        return bool(host_info(api, "lab-2").get("online")) is want

    lab.cut("lab-2")
    t_cut = time.monotonic()
    try:
        offline = until(lambda: online(False), args.cut_seconds, 1.0)
        left = args.cut_seconds - (time.monotonic() - t_cut)
        failed_in = until(lambda: all(status(api, j) == "failed" for j in victims), max(left, 0.0), 1.0)
        failed = None if failed_in is None else time.monotonic() - t_cut
        time.sleep(max(0.0, args.cut_seconds - (time.monotonic() - t_cut)))
    finally:
        lab.heal("lab-2")
    back = until(lambda: online(True), 120, 1.0)
    victim_states = [status(api, j) for j in victims]
    at_heal, orphans = orphans_gone(platform, lab, victims)
    until(lambda: all(status(api, j) in FINAL for j in others), 180, 2.0)
    other_states = [status(api, j) for j in others]
    moved = moved_elsewhere(api, automatic)
    for j in victims:  # a victim that outlived the cut: stopped, so the teardown finds nothing running
        if status(api, j) not in FINAL:
            api.post(f"/stop/{j}")
    return [
        f"| busy cut: cut -> lab-2 offline in /hosts       | {fmt(offline, 35)} |",
        f"| busy cut: cut -> lab-2's {len(victims)} jobs failed          | {fmt(failed, 120)}; states at heal {victim_states} |",
        f"| busy cut: other hosts' {len(others)} jobs finished        | {other_states.count('finished')} of {len(others)} ({sorted(set(other_states))}) |",
        f"| heal -> lab-2 online in /hosts                 | {fmt(back, 15)} |",
        f"| heal -> orphans gone from lab-2's engine       | {fmt(orphans, 30)}; {at_heal} container(s) of its jobs at heal (make up's reconcilers ticked here) |",
        moved,
    ]


def queue_automatic(api: httpx.Client, n: int) -> dict[str, str]:
    """``n`` short jobs with no target_host while every slot is busy: job id -> the host it waits on."""
    out = {}
    for k in range(n):
        body = job("local", "echo automatic", f"auto-{k}")
        del body["target_host"]
        r = api.post("/run-simulation", json=body)
        if r.status_code == 200:
            out[r.json()["job_id"]] = r.json().get("host", "?")
    return out


def moved_elsewhere(api: httpx.Client, automatic: dict[str, str]) -> str:
    """lab-2's automatic queued jobs: each should end Cancelled "moved to host X as job <id>" (the lost-host
    automation, flows/move_lost_host_jobs.py) and its new run finish on another host."""
    waiting = [j for j, host in automatic.items() if host == "lab-2"]
    new_ids, hosts = [], []
    for j in waiting:
        message = (api.get(f"/status/{j}").json().get("prefect_state") or {}).get("message") or ""
        if "as job " in message:
            new_ids.append(message.rsplit("as job ", 1)[1].strip())
            hosts.append(message.split("moved to host ", 1)[-1].split(" ", 1)[0])
    until(lambda: all(status(api, j) in FINAL for j in new_ids), 240, 2.0)
    finished = [status(api, j) for j in new_ids].count("finished")
    return (f"| busy cut: lab-2's automatic queued jobs moved   | {len(new_ids)} of {len(waiting)} moved (to {sorted(set(hosts))}), "
            f"{finished} finished there; {len(automatic)} automatic jobs queued in all |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1.0, help="submissions per second")
    parser.add_argument("--cut-seconds", type=int, default=120)
    parser.add_argument("--load-only", action="store_true", help="only part 1 (the load), with its CPU split")
    parser.add_argument("--prefect-servers", type=int, default=1, help="2 or more: the scaled control plane (make up's OPEVA_PREFECT_SERVERS)")
    parser.add_argument("--idle-seconds", type=int, default=0, help="first, the idle platform's CPU split over this many seconds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    from core.settings import PlatformSettings
    from deployments.lab import Lab
    from deployments.lab_net import LabSpec, free_subnet
    from helpers import lab_started, new_platform

    home = Path(tempfile.mkdtemp(prefix="opeva-lab-bench-"))
    platform = new_platform(home)
    spec = LabSpec(tag=f"ob{os.getpid() % 100000}", hosts=args.hosts, subnet=free_subnet(150 + os.getpid() % 50), state_dir=home / "lab")
    lab = None
    rows: list[str] = []
    lat_rows: list[str] = []
    lat: dict[str, list[float]] = {}
    try:
        t0 = time.monotonic()
        lab = Lab.create(spec, [PlatformSettings().runtime_image])
        rows.append(f"| lab start ({args.hosts} hosts, image copy)          | {time.monotonic() - t0:.1f} s |")
        entries = [{**e, "concurrency_limit": args.limit} for e in lab.host_entries(platform.data_dir)]
        entries.append({"name": "local", "concurrency_limit": args.limit, "volumes": [f"{platform.data_dir}:{platform.data_dir}"]})
        hosts_file = home / "hosts.yaml"
        hosts_file.write_text(yaml.safe_dump({"hosts": entries}))
        with lab_started(platform, lab, hosts_file, control=True, local=True, prefect_servers=args.prefect_servers):
            with httpx.Client(base_url=platform.api_url, timeout=60) as api:
                if args.idle_seconds:
                    before = cpu_split(platform, lab)
                    time.sleep(args.idle_seconds)
                    print_split(f"CPU seconds of the idle platform over {args.idle_seconds} s (workers polling, no job)", before, cpu_split(platform, lab))
                rows += load(api, platform, lab, args)
                if not args.load_only:
                    lat_rows, lat = latency(api)
                    rows += cut(api, platform, lab, args)
    finally:
        platform.stop()
        left = lab.close() if lab is not None else []
        shutil.rmtree(home, ignore_errors=True)
        print(f"\n## bench/lab.py --hosts {args.hosts} --jobs {args.jobs} --limit {args.limit} --rate {args.rate} --cut-seconds {args.cut_seconds}"
              f" --prefect-servers {args.prefect_servers}")
        print("| measure | value |\n|---|---|")
        print("\n".join(rows + lat_rows))
        if lat and all(lat.values()):
            print("\n" + HEADER)
            for host, values in lat.items():
                print(row(f"submit -> running on {host}", values))
        print(f"\nteardown left behind: {left or 'nothing'}")


if __name__ == "__main__":
    main()
