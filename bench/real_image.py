"""OPEVA's own simulator image through a fresh `make up`, checked and timed against `docker run`.

The image is built with ../shared/real-simulator/ (``calof/opeva_simulator:<tag>``); this bench
does not build it and exits 0 with a message when it is absent (a bench is not a test; CI runs
the stand-in through the same paths, tests/e2e/test_images.py and test_mlflow.py).

One run, one fresh platform (bench/_up.py: ``python -m deployments.up`` with a new OPEVA_HOME,
a hosts file naming the image as docs/images.md says, private ports, MLflow on):

1. checks   dataset through POST /dataset/upload, upstream's smoke config created unchanged,
            one job through the REST API and one through ``prefect deployment run``; for each:
            finished, /progress 100, /result completed, /file-logs, /logs, /job-info, the MLflow
            run in the platform's server, the Prefect UI's view (name, state, logs, artifacts);
2. refusals refused repository, unknown tag, missing image, malformed tag: 4xx, no run made;
3. stop     POST /stop a few seconds into the simulation: time to `stopped` (target <= 3 s) and
            to no container of the job (target <= 5 s);
4. timing   ``--runs`` jobs through the REST API and as many ``docker run --rm -v <root>:/data``
            of the same image on a fresh root (the floor), interleaved so both see the same load:
            start -> first line of the simulator's log file, last line -> done, start -> done.
            Target (issue 20): platform p50 <= floor p50 + 4 s.

Usage: python bench/real_image.py [--runs 5] [--stops 3] [--parts checks,refusals,stop,timing]
       [--tag 0bc57d9] [--dataset DIR] [--config FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _logwatch import LogWatch  # noqa: E402
from _table import HEADER, pct, row  # noqa: E402
from _up import Up  # noqa: E402
from real_image_checks import REPOSITORY, Row, check_job, launch_cli, prefect_view, prepare, refusals, stop_once, submit  # noqa: E402

# ../shared/real-simulator beside the clone (or a worktree's clone, further up)
SHARED = next((p / "shared" / "real-simulator" for p in Path(__file__).resolve().parents if (p / "shared" / "real-simulator").is_dir()),
              Path(__file__).resolve().parents[2] / "shared" / "real-simulator")
DATASET = "citylearn_challenge_2022_phase_all_plus_evs"
HOSTS = """hosts:
  - name: local
    concurrency_limit: 2
    volumes:
      - ${OPEVA_DATA_DIR}:${OPEVA_DATA_DIR}
    start_worker: true
    simulator_image: calof/opeva_simulator
    allowed_images: [calof/opeva_simulator]
"""


def load() -> float:
    return os.getloadavg()[0]


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def floor_run(image: str, dataset: Path, config: Path) -> dict[str, float]:
    """The README's floor: ``docker run --rm -v <root>:/data`` on a fresh root (MLflow's file store in <root>/mlflow)."""
    root = Path(tempfile.mkdtemp(prefix="opeva-floor-"))
    (root / "configs").mkdir()
    shutil.copy(config, root / "configs" / config.name)
    shutil.copytree(dataset, root / "datasets" / dataset.name)
    watch = LogWatch(root / "jobs" / "direct" / "logs" / "direct.log")
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "-v", f"{root}:/data", image, "--config", f"/data/configs/{config.name}", "--job_id", "direct"],
                   check=True, capture_output=True)
    ended = time.time()
    watch.stop()
    lines = len((root / "jobs" / "direct" / "logs" / "direct.log").read_bytes().splitlines())
    # the container wrote as root: remove its files from inside the image
    subprocess.run(["docker", "run", "--rm", "-v", f"{root}:/data", "--entrypoint", "rm", image, "-rf", "/data/jobs", "/data/mlflow"],
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    return {"start->first line": watch.first - t0, "last line->done": ended - watch.last, "start->done": ended - t0,
            "log lines": lines, "load": load()}


def platform_run(up: Up, tag: str, config_name: str) -> dict[str, float]:
    """One job through the REST API: POST -> first line, last line -> Prefect's COMPLETED, POST -> COMPLETED."""
    t0 = time.time()
    job_id, _ = submit(up, tag, config_name)
    log = up.data_dir / "jobs" / job_id / "logs" / f"{job_id}.log"
    watch = LogWatch(log)
    status = up.wait_final(job_id, poll=0.5)
    watch.stop()
    states = up.states(job_id)
    if status != "finished" or "COMPLETED" not in states:
        raise RuntimeError(f"{job_id} ended {status}: {states}")
    return {"start->first line": watch.first - t0, "last line->done": states["COMPLETED"] - watch.last,
            "start->done": states["COMPLETED"] - t0, "submit->Running": states["RUNNING"] - t0,
            "log lines": len(log.read_bytes().splitlines()), "load": load()}


def print_rows(title: str, rows: list[Row]) -> int:
    print(f"\n### {title}\n\n| check | value | ok |\n|---|---|---|")
    for what, value, ok in rows:
        print(f"| {what} | {value} | {'yes' if ok else '**NO**'} |")
    return sum(not ok for _, _, ok in rows)


def print_timing(floors: list[dict], platform: list[dict]) -> None:
    print(f"\n### Timing, {len(platform)} + {len(floors)} interleaved runs (load average 1 min: mean "
          f"{sum(r['load'] for r in floors + platform) / len(floors + platform):.1f}, "
          f"max {max(r['load'] for r in floors + platform):.1f}; {os.cpu_count()} cores)\n")
    print(HEADER)
    for key in ("start->first line", "last line->done", "start->done"):
        print(row(f"docker run: {key}", [r[key] for r in floors]))
        print(row(f"platform (REST): {key}", [r[key] for r in platform]))
    print(row("platform: submit->Running", [r["submit->Running"] for r in platform]))
    over = pct([r["start->done"] for r in platform], .5) - pct([r["start->done"] for r in floors], .5)
    print(f"\nlog lines: floor {sorted({r['log lines'] for r in floors})}, platform {sorted({r['log lines'] for r in platform})}")
    print(f"p50 overhead {over:+.2f} s (target <= +4 s): {'met' if over <= 4 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stops", type=int, default=3)
    parser.add_argument("--parts", default="checks,refusals,stop,timing")
    parser.add_argument("--tag", default="0bc57d9")
    parser.add_argument("--dataset", type=Path, default=Path(os.environ.get("OPEVA_REAL_DATASET", f"/var/tmp/realsim/data/datasets/{DATASET}")))
    parser.add_argument("--config", type=Path, default=SHARED / "rbc_smoke.yaml")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    image = f"{REPOSITORY}:{args.tag}"
    if not image_present(image):
        print(f"SKIPPED: image {image} is not on this engine; build it with ../shared/real-simulator/README.md (benches are not tests)")
        return 0
    if not args.dataset.is_dir() or not args.config.is_file():
        print(f"SKIPPED: dataset {args.dataset} or config {args.config} missing (see ../shared/real-simulator/README.md)")
        return 0
    failures = 0
    print(f"{image} through a fresh `make up`; load average at start {os.getloadavg()}", flush=True)
    with Up(HOSTS) as up:
        print(f"platform up in {up.started_in:.1f} s (fresh OPEVA_HOME {up.home}); {up.log}", flush=True)
        failures += print_rows("Prepare (REST)", prepare(up, args.dataset, args.config))
        name = args.config.name
        if "checks" in parts:
            t0, load0 = time.time(), load()
            job_id, answer = submit(up, args.tag, name)
            rows: list[Row] = [("submit answer", f"{answer['status']}, image {answer.get('image')}", answer.get("image") == image)]
            rows += check_job(up, job_id, args.tag) + prefect_view(up, job_id)
            failures += print_rows(f"POST /run-simulation {job_id} ({time.time() - t0:.1f} s, load {load0:.1f}->{load():.1f})", rows)
            t0, load0 = time.time(), load()
            job_id = launch_cli(up, args.tag, name)
            rows = check_job(up, job_id, args.tag) + prefect_view(up, job_id)
            failures += print_rows(f"prefect deployment run {job_id} ({time.time() - t0:.1f} s, load {load0:.1f}->{load():.1f})", rows)
        if "refusals" in parts:
            failures += print_rows("Refused at submit", refusals(up, name))
        if "stop" in parts:
            stops = [stop_once(up, args.tag, name) | {"load": load()} for _ in range(args.stops)]
            print("\n### Stop mid-run (POST /stop 1 s after the simulator's progress left 0)\n")
            print(HEADER)
            for key in ("stop->stopped", "stop->simulator container gone", "stop->no container"):
                print(row(key, [s[key] if s[key] is not None else float("inf") for s in stops]))
            print("\n" + "\n".join(f"- {s['job_id']}: {s['message']!r}, progress {s['progress at stop']}, load {s['load']:.1f}" for s in stops))
            failures += sum(s["stop->stopped"] is None or s["stop->stopped"] > 3 or s["stop->no container"] is None
                            or s["stop->no container"] > 5 for s in stops)
        if "timing" in parts:
            floors, platform = [], []
            for _ in range(args.runs):
                floors.append(floor_run(image, args.dataset, args.config))
                platform.append(platform_run(up, args.tag, name))
            print_timing(floors, platform)
    print(f"\n{failures} check(s) not met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
