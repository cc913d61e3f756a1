"""The platform's fixed overhead around a simulator, beside `docker run` of the same image (the floor),
in one run: the stand-in of OPEVA's image (tests/e2e/upstream_sim/) and the reference simulator
(`<simulator_image>:reference`), each submitted through the REST API with an `image_tag`.

- submit -> first simulator line: the POST to the first byte of the simulator's own log file
  (polled every 20 ms; the same for the floor, from the `docker run` call);
- submit -> Running: to Prefect's RUNNING state (server timestamp);
- last simulator line -> finished: the log file's last write to Prefect's COMPLETED state
  (for the floor: to the `docker run --rm` call returning).

Usage: python bench/overhead.py [--runs 5]   (a Docker engine and the runtime image are needed)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from _logwatch import LogWatch
from _platform import HEADER, pct, row, running_platform

from core.settings import PlatformSettings

STAND_IN = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "upstream_sim"
REPOSITORY = "opeva-bench/upstream-sim"
HOST_EXTRA = f"    start_worker: true\n    simulator_image: {REPOSITORY}\n"


def configs(data_dir: Path) -> dict[str, dict]:
    (data_dir / "configs").mkdir(parents=True, exist_ok=True)
    stand_in = {"metadata": {"experiment_name": "bench", "run_name": "s"}, "experiment": {"name": "bench", "run_name": "s"},
                "simulator": {"steps": 3, "sleep": 0.2}, "tracking": {"mlflow_enabled": True}}
    reference = {"experiment": {"name": "bench", "run_name": "r"}, "episodes": 1, "simulation": {"buildings": 2, "days": 2}}
    for name, body in (("stand-in", stand_in), ("reference", reference)):
        (data_dir / "configs" / f"bench-{name}.yaml").write_text(json.dumps(body))
    return {"stand-in": {"tag": "1.0"}, "reference": {"tag": "reference"}}


def platform_run(api: httpx.Client, client_states, data_dir: Path, kind: str, tag: str) -> dict[str, float]:
    t0 = time.time()
    r = api.post("/run-simulation", json={"config_path": f"configs/bench-{kind}.yaml", "image_tag": tag})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    watch = LogWatch(data_dir / "jobs" / job_id / "logs" / f"{job_id}.log")
    while api.get(f"/status/{job_id}").json()["status"] not in ("finished", "failed", "stopped"):
        time.sleep(0.1)
    watch.stop()
    states = client_states(job_id)
    assert "COMPLETED" in states, states
    return {"submit->Running": states["RUNNING"] - t0, "submit->first simulator line": watch.first - t0,
            "last simulator line->finished": states["COMPLETED"] - watch.last, "submit->finished": states["COMPLETED"] - t0}


def floor_run(image: str, data_dir: Path, kind: str) -> dict[str, float]:
    job_id = f"floor-{uuid.uuid4().hex[:8]}"
    job = data_dir / "jobs" / job_id
    (job / "logs").mkdir(parents=True)
    os.chmod(job, 0o777)
    os.chmod(job / "logs", 0o777)
    log = job / "logs" / f"{job_id}.log"
    env = ["-e", f"OPEVA_LOG_FILE=/data/jobs/{job_id}/logs/{job_id}.log", "-e", f"OPEVA_PROGRESS_FILE=/data/jobs/{job_id}/progress.json",
           "-e", f"OPEVA_RESULT_FILE=/data/jobs/{job_id}/result.json", "-e", "OPEVA_DATA_DIR=/data", "-e", f"OPEVA_JOB_ID={job_id}"]
    watch = LogWatch(log)
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "--network", "host", "--user", "65534:65534", "-v", f"{data_dir}:/data", *env, image,
                    "--config", f"/data/configs/bench-{kind}.yaml", "--job_id", job_id], check=True, capture_output=True)
    ended = time.time()
    watch.stop()
    return {"docker run->first simulator line": watch.first - t0, "last simulator line->exit": ended - watch.last, "docker run->exit": ended - t0}


def main(runs: int) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    subprocess.run(["docker", "build", "-q", "-t", f"{REPOSITORY}:1.0", str(STAND_IN)], check=True, capture_output=True)

    def states_of(job_id: str) -> dict[str, float]:
        async def read():
            async with get_client() as client:
                return {s.type.value: s.timestamp.timestamp() for s in await client.read_flow_run_states(uuid.UUID(job_id))}
        return asyncio.run(read())

    results: dict[str, list[dict[str, float]]] = {}
    with running_platform({"local": True}, api=True, concurrency=2, host_extra=HOST_EXTRA) as platform:
        data_dir = platform.data_dir
        kinds = configs(data_dir)
        os.chmod(data_dir, 0o755)
        (data_dir / "mlflow").mkdir(exist_ok=True)  # the floor's container writes <base>/mlflow as upstream does
        os.chmod(data_dir / "mlflow", 0o777)
        with httpx.Client(base_url=platform.api_url, timeout=60) as api:
            for kind, spec in kinds.items():
                image = f"{REPOSITORY}:{spec['tag']}"
                platform_run(api, states_of, data_dir, kind, spec["tag"])  # warm-up
                results[f"{kind}: platform"] = [platform_run(api, states_of, data_dir, kind, spec["tag"]) for _ in range(runs)]
                floor_run(image, data_dir, kind)
                results[f"{kind}: docker run"] = [floor_run(image, data_dir, kind) for _ in range(runs)]
    print(f"\nplatform overhead around a simulator, p50 of {runs} (image {PlatformSettings().runtime_image}, worker polls every "
          f"{os.environ.get('PREFECT_WORKER_QUERY_SECONDS', '0.5')} s)\n")
    print(HEADER)
    for name, rows in results.items():
        for key in rows[0]:
            print(row(f"{name}: {key}", [r[key] for r in rows]))
    for kind in kinds:
        plat, floor = results[f"{kind}: platform"], results[f"{kind}: docker run"]
        ratio = pct([r["submit->first simulator line"] for r in plat], .5) / pct([r["docker run->first simulator line"] for r in floor], .5)
        running = pct([r["submit->Running"] for r in plat], .5) / pct([r["docker run->exit"] for r in floor], .5)
        print(f"{kind}: submit->first line is {ratio:.2f}x the docker-run floor's first line; submit->Running is {running:.2f}x "
              f"the whole docker run (issue 20's target <= 1.5x); "
              f"last line->finished p50 {pct([r['last simulator line->finished'] for r in plat], .5):.2f} s (target <= 1 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
