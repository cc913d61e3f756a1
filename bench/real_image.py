"""OPEVA's own simulator image through the platform against the `docker run` floor, in one run.

The image is built with ../shared/real-simulator/ (calof/opeva_simulator:<tag>); this bench
does not build it and exits 0 with a message when it is absent (a bench is not a test).
Both sides run upstream's smoke config unchanged (MLflow on):

- floor: ``docker run --rm -v <root>:/data <image> --config /data/configs/rbc_smoke.yaml
  --job_id direct`` on a fresh data root (MLflow's file store under <root>/mlflow, as upstream);
- platform: a throw-away platform with MLflow and its relay (the same code as `make up`), the
  job submitted to ``run-simulation/local`` with ``image_tag``; wall time = submit -> Completed
  (Prefect's state history), the run logging to the platform's MLflow server.

Target (issue 20): platform p50 <= floor p50 + 4 s.
Usage: python bench/real_image.py [--runs 5] [--tag 0bc57d9] [--dataset DIR] [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._platform import HEADER, pct, row  # noqa: E402

REPOSITORY = "calof/opeva_simulator"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "real-simulator"
DATASET = "citylearn_challenge_2022_phase_all_plus_evs"


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def fill_root(root: Path, dataset: Path, config: Path) -> None:
    (root / "configs").mkdir(parents=True, exist_ok=True)
    shutil.copy(config, root / "configs" / "rbc_smoke.yaml")
    if not (root / "datasets" / DATASET).exists():
        shutil.copytree(dataset, root / "datasets" / DATASET)


def floor(image: str, dataset: Path, config: Path) -> float:
    root = Path(tempfile.mkdtemp(prefix="opeva-floor-"))
    fill_root(root, dataset, config)
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "-v", f"{root}:/data", image, "--config", "/data/configs/rbc_smoke.yaml", "--job_id", "direct"],
                   check=True, capture_output=True)
    took = time.time() - t0
    subprocess.run(["docker", "run", "--rm", "-v", f"{root}:/data", "--entrypoint", "rm", image, "-rf", "/data/jobs", "/data/mlflow"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    return took


@asynccontextmanager
async def running(dataset: Path, config: Path):
    """The bench's platform (bench/_platform.py's ports and home) plus MLflow and its relay."""
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway
    from bench._platform import HOSTS_FILE, PLATFORM as p
    from core.settings import PlatformSettings
    from deployments.mlflow_server import start_mlflow, start_relay
    from deployments.platform import free_port
    from flows.job_network import network_name, remove_network

    p.mlflow_port = free_port()
    os.environ.update(OPEVA_MLFLOW_PORT=str(p.mlflow_port), OPEVA_JOBS_NETWORK=f"opeva-jobs-bench-{p.mlflow_port}")
    HOSTS_FILE.write_text(f"hosts:\n  - name: local\n    concurrency_limit: 1\n    volumes: ['{p.data_dir}:{p.data_dir}']\n"
                          f"    simulator_image: {REPOSITORY}\n")
    fill_root(p.data_dir, dataset, config)
    try:
        server = start_mlflow(p)
        p.start_prefect_server()
        p.start_mongo()
        p.wait_ready(server)
        start_relay(p, PlatformSettings().runtime_image)
        p.start_worker("local", p.setup_pools(HOSTS_FILE, docker=True)["local"])
        async with get_client() as client:
            yield PrefectGateway(client), client
    finally:
        p.stop()
        import docker

        remove_network(docker.from_env(), network_name())


async def platform_runs(image_tag: str, dataset: Path, config: Path, runs: int) -> list[float]:
    async with running(dataset, config) as (gateway, client):
        async def one() -> float:
            t0 = time.time()
            run = await gateway.submit("run-simulation", "local", {"config_path": "configs/rbc_smoke.yaml", "image_tag": image_tag})
            while not ((fr := await client.read_flow_run(run.id)).state and fr.state.is_final()):
                await asyncio.sleep(0.2)
            assert fr.state.is_completed(), fr.state
            states = {s.type.value: s.timestamp.timestamp() for s in await client.read_flow_run_states(run.id)}
            return states["COMPLETED"] - t0

        return [await one() for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tag", default="0bc57d9")
    parser.add_argument("--dataset", type=Path, default=Path(os.environ.get("OPEVA_REAL_DATASET", f"/var/tmp/realsim/data/datasets/{DATASET}")))
    parser.add_argument("--config", type=Path, default=SHARED / "rbc_smoke.yaml")
    args = parser.parse_args()
    image = f"{REPOSITORY}:{args.tag}"
    if not image_present(image):
        print(f"SKIPPED: image {image} is not on this engine; build it with ../shared/real-simulator/README.md (benches are not tests)")
        return 0
    if not args.dataset.is_dir() or not args.config.is_file():
        print(f"SKIPPED: dataset {args.dataset} or config {args.config} missing (see ../shared/real-simulator/README.md)")
        return 0
    platform = asyncio.run(platform_runs(args.tag, args.dataset, args.config, args.runs))
    floors = [floor(image, args.dataset, args.config) for _ in range(args.runs)]
    print(f"\n{image}, upstream smoke config unchanged (MLflow on), {args.runs} sequential runs each\n")
    print(HEADER)
    print(row("docker run floor (file store in <root>/mlflow)", floors))
    print(row("platform submit->Completed (MLflow server)", platform))
    over = pct(platform, .5) - pct(floors, .5)
    print(f"\np50 overhead {over:+.2f} s (target <= +4 s): {'met' if over <= 4 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
