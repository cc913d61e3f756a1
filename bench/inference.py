"""Inference: ``/act`` latency of the inference image's service, and switch-bundle under load.

1. ``POST /act`` on a real target container (the inference image, over its Unix socket, a
   keep-alive client), for the reference policies of 5 and 100 buildings, against the same
   service's ``GET /health`` (the transport's floor) in the same run. Target: p50 <= 10 ms.
2. ``POST /deploy/inferences/local/switch-bundle`` through the API (a deploy-bundle flow run on
   the control pool, waited for) while a client calls ``/act`` at 20 req/s: failed calls (target 0)
   and switch duration (target <= 5 s), against a direct ``POST /admin/load`` on the target (the
   floor without Prefect).

    OPEVA_IMAGE=opeva-runtime:<tag> python3 bench/inference.py [requests] [switches]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]  # the project's simulator/, not bench/simulator.py

from _platform import running_platform  # first: it points Prefect at the bench platform
from _table import pct

import httpx

from core import bundle_store
from core.inference_targets import socket_path
from core.settings import PlatformSettings
from simulator.agents import make_controller, run_episode
from simulator.bundle import export_bundle
from simulator.config import validate_config
from simulator.environment import DistrictEnv
from simulator.sample import sample_dataset

TARGET_HOSTS = "    inference_targets: [{id: local}]\n"


def store_bundle(root: Path, algorithm: str, buildings: int) -> str:
    """A reference policy exported as a job would, then imported into the bundle store."""
    config = validate_config({"experiment": {"name": "bench", "run_name": f"{algorithm}-{buildings}"}, "algorithm": algorithm,
                              "episodes": 1, "simulation": {"buildings": buildings, "days": 2}})
    data = sample_dataset(buildings, 2, 0)
    controller = make_controller(algorithm, data, config.params, 0)
    if controller.learns:
        run_episode(DistrictEnv(data), controller, train=True)
    job_dir = root / "jobs" / f"bench-{algorithm}-{buildings}"
    export_bundle(job_dir, config, data, controller)
    entry, _ = bundle_store.import_job_bundle(root, job_dir, job_dir.name, job_dir.name)
    return entry["bundle_id"]


def observations(client: httpx.Client) -> list[list[float]]:
    dims = client.get("/health").json()["observation_dimensions"]
    return [[18, 0.3, 2.0, 0.5, 1.0, *([5.0, 2.0, 3.0] * ((n - 5) // 3))] for n in dims]


def timed(fn, n: int) -> list[float]:
    for _ in range(20):
        fn()  # warm-up: connection, first JSON encoding
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def table_row(name: str, values: list[float], target: str, ok: bool | None, unit: str = "ms", scale: float = 1000) -> str:
    verdict = "" if ok is None else ("yes" if ok else "NO")
    return (f"| {name:<52} | {len(values):>4} | {pct(values, .5) * scale:>8.2f} | {pct(values, .99) * scale:>8.2f} | "
            f"{max(values) * scale:>8.2f} | {unit:<4} | {target:<10} | {verdict:<3} |")


HEADER = (f"| {'measure':<52} | {'n':>4} | {'p50':>8} | {'p99':>8} | {'max':>8} | unit | {'target':<10} | ok  |\n"
          f"|{'-' * 54}|{'-' * 6}|{'-' * 10}|{'-' * 10}|{'-' * 10}|------|{'-' * 12}|-----|")


def switch_under_load(api: httpx.Client, target: httpx.Client, sock: str, bundles: list[str], switches: int) -> tuple[list[float], list[float], int, int]:
    """Alternate the target between bundles through the API while a client calls /act at 20 req/s."""
    obs = observations(target)
    calls, failures = [0], [0]
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://inference", timeout=10) as c:
            next_at = time.monotonic()
            while not stop.is_set():
                try:
                    ok = c.post("/act", json={"observations": obs}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                calls[0] += 1
                failures[0] += 0 if ok else 1
                next_at += 0.05
                time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=client)
    thread.start()
    durations, direct = [], []
    try:
        for i in range(switches):
            bundle = bundles[(i + 1) % len(bundles)]
            start = time.perf_counter()
            r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": bundle}, timeout=150)
            durations.append(time.perf_counter() - start)
            if r.status_code != 200:
                raise SystemExit(f"switch failed: {r.status_code} {r.text}")
            other = bundles[i % len(bundles)]
            start = time.perf_counter()
            r = target.post("/admin/load", json={"manifest_path": f"/bundles/{other}/artifact_manifest.json", "bundle_id": other})
            direct.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            target.post("/admin/load", json={"manifest_path": f"/bundles/{bundle}/artifact_manifest.json", "bundle_id": bundle})
    finally:
        stop.set()
        thread.join()
    return durations, direct, calls[0], failures[0]


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    switches = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    from deployments.control_pool import start_control_worker
    from deployments.inference_targets import start_inference_targets

    with running_platform({"local": False}, api=True, host_extra=TARGET_HOSTS) as p:
        start_control_worker(p)
        start_inference_targets(p, PlatformSettings().runtime_image)
        small, big, q_small = (store_bundle(p.data_dir, "rule_based", 5), store_bundle(p.data_dir, "rule_based", 100),
                               store_bundle(p.data_dir, "q_learning", 5))
        sock = str(socket_path(p.home, "local"))
        print(HEADER)
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://inference", timeout=10) as target, \
                httpx.Client(base_url=p.api_url, timeout=30) as api:
            print(table_row("baseline: GET /health (same service, transport floor)", timed(lambda: target.get("/health"), requests), "", None))
            for bundle, label in ((small, "rule_based, 5 agents"), (q_small, "q_learning, 5 agents"), (big, "rule_based, 100 agents")):
                r = target.post("/admin/load", json={"manifest_path": f"/bundles/{bundle}/artifact_manifest.json", "bundle_id": bundle})
                assert r.status_code == 200, r.text
                obs = observations(target)
                values = timed(lambda obs=obs: target.post("/act", json={"observations": obs}), requests)
                print(table_row(f"POST /act, {label}", values, "p50 <= 10", pct(values, .5) <= 0.010))
            target.post("/admin/load", json={"manifest_path": f"/bundles/{small}/artifact_manifest.json", "bundle_id": small})
            durations, direct, calls, failures = switch_under_load(api, target, sock, [small, q_small], switches)
            print(table_row("baseline: POST /admin/load on the target (no Prefect)", direct, "", None, "s", 1))
            print(table_row("switch-bundle via the API (deploy-bundle run)", durations, "<= 5 s", max(durations) <= 5, "s", 1))
            print(f"\n/act calls at 20 req/s during {switches} switches: {calls}, failed: {failures} (target 0: {'yes' if failures == 0 else 'NO'})")


if __name__ == "__main__":
    main()
