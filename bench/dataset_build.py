"""Dataset build throughput and peak memory, beside draining the same cursors raw
with pymongo (the floor), at two sizes, in one run against the MongoDB-wire server.

Documents are in the real OPEVA layout: measurements and weather under
``observations``, the price under ``energy_tariffs``, and on one building in four
keyed ``charging_sessions`` and ``electric_vehicles`` with flexibility estimates.

Each phase runs in a fresh process, so its time is not slowed by a memory tracer
and its peak resident memory (ru_maxrss) is its own: that peak must not grow
with the number of documents. Usage: python bench/dataset_build.py [--docs 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.dataset_build import BuildRequest, build  # noqa: E402
from core.dataset_read import projection  # noqa: E402
from core.layout import DataRoot  # noqa: E402
from deployments.platform import free_port, mongo_ok  # noqa: E402

BUILDINGS = 4
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
BATCH = 5000


def _doc(ts: datetime, load: float, pv: float, temp: float, ev: bool) -> dict:
    doc = {"timestamp": ts, "observations": {"non_shiftable_load": load, "solar_generation": pv, "indoor_dry_bulb_temperature": temp,
                                             "outdoor_dry_bulb_temperature": temp - 8, "outdoor_relative_humidity": 70.0, "carbon_intensity": 0.2},
           "energy_tariffs": {"tou": {"energy_price": {"values": [0.22, 0.22, 0.10]}}}, "batteries": {"battery_1": {"soc": 0.5}}}
    if ev and ts.hour >= 18:
        flex = {"estimated_time_at_departure": (ts.replace(hour=23, minute=0)).isoformat(), "estimated_soc_at_departure": 90, "charger": "c1"}
        doc["charging_sessions"] = {"c1": {"power": 7.4, "electric_vehicle": "EV_1"}}
        doc["electric_vehicles"] = {"EV_1": {"SoC": 0.4, "flexibility": flex}}
    return doc


def seed(client: pymongo.MongoClient, site: str, docs: int) -> None:
    per = docs // BUILDINGS
    rng = np.random.default_rng(1)
    db = client[site]
    for b in range(1, BUILDINGS + 1):
        for lo in range(0, per, BATCH):
            n = min(BATCH, per - lo)
            load, pv, temp = rng.random(n), rng.random(n), 18 + 5 * rng.random(n)
            db[f"building_B{b}"].insert_many([_doc(START + timedelta(minutes=15 * (lo + i)), float(load[i]), float(pv[i]), float(temp[i]), b == 1) for i in range(n)])
        db[f"building_B{b}"].create_index("timestamp")
    pv = {"type": "citylearn.energy_model.PV", "autosize": False, "attributes": {"nominal_power": 5.0}}
    buildings = {f"B{b}": {"include": True, "pv": pv} for b in range(1, BUILDINGS + 1)}
    buildings["B1"]["chargers"] = {"c1": {"type": "citylearn.electric_vehicle_charger.Charger", "attributes": {"nominal_power": 7.4}}}
    db.schema.insert_one({"_id": "schema", "schema": {"electric_vehicles_def": {}, "buildings": buildings}})


def run_phase(phase: str, uri: str, site: str, docs: int, data_dir: str) -> dict:
    """One phase in its own process: (seconds, documents, peak RSS)."""
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--uri", uri, "--site", site, "--docs", str(docs), "--data-dir", data_dir],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def phase_main(args: argparse.Namespace) -> None:
    client = pymongo.MongoClient(args.uri, tz_aware=True)
    t0 = time.perf_counter()
    if args.phase == "raw":
        n = raw_drain(client, args.site, end_of(args.docs))
    else:
        req = BuildRequest(name=f"bench-{args.docs}", site_id=args.site, period=60, from_ts=START.isoformat(), until_ts=end_of(args.docs).isoformat())
        n = build(client, DataRoot(args.data_dir), req, batch_size=BATCH, smoke=False)["documents"]
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "documents": n, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def end_of(docs: int) -> datetime:
    return START + timedelta(minutes=15 * (docs // BUILDINGS))


def raw_drain(client: pymongo.MongoClient, site: str, end: datetime) -> int:
    """The floor: the builder's queries (filter, projection, batch size), documents only read."""
    db, n = client[site], 0
    for b in range(1, BUILDINGS + 1):
        cursor = db[f"building_B{b}"].find({"timestamp": {"$gte": START, "$lt": end}}, projection("timestamp", {}), batch_size=BATCH)
        for _ in cursor:
            n += 1
    return n


def main(total: int) -> None:
    port = free_port()
    store = tempfile.mkdtemp(prefix="opeva-bench-mongo-")
    server = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port), "--storage-path", store, "--log-level", "WARNING"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        uri = f"mongodb://127.0.0.1:{port}"
        deadline = time.time() + 60
        while not mongo_ok(uri):
            if time.time() > deadline:
                raise SystemExit("the MongoDB-compatible server did not start")
            time.sleep(0.3)
        client = pymongo.MongoClient(uri, tz_aware=True)
        storage = DataRoot(tempfile.mkdtemp(prefix="opeva-bench-data-"))
        for docs in (total // 2, total):
            site = f"bench_{docs}"
            t0 = time.perf_counter()
            seed(client, site, docs)
            print(f"seeded {docs} documents in {time.perf_counter() - t0:.1f} s", flush=True)
            raw = run_phase("raw", uri, site, docs, str(storage.root))
            built = run_phase("build", uri, site, docs, str(storage.root))
            assert built["documents"] == raw["documents"], (built, raw)
            n = raw["documents"]
            rows.append((docs, "raw pymongo drain (floor)", raw["seconds"], n / raw["seconds"], 100.0, raw["peak_rss"]))
            rows.append((docs, "dataset build", built["seconds"], n / built["seconds"], 100 * raw["seconds"] / built["seconds"], built["peak_rss"]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\ndataset build vs raw cursor drain, {BUILDINGS} buildings of 15-minute documents (real OPEVA layout), hourly output\n")
    print(f"| {'documents':>9} | {'phase':<26} | {'seconds':>8} | {'docs/s':>9} | {'% of raw':>8} | {'peak RSS MiB':>8} |")
    print(f"|{'-' * 11}|{'-' * 28}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    for docs, phase, s, rate, share, peak in rows:
        print(f"| {docs:>9} | {phase:<26} | {s:>8.2f} | {rate:>9.0f} | {share:>7.1f}% | {peak / 2**20:>8.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--phase", choices=["raw", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--site", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    phase_main(args) if args.phase else main(args.docs)
