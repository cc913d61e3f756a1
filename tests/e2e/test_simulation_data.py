"""A dataset built as energaize_ui asks, then a reference-simulator job on it, collected as the
maintainers' collector does: simulation data listed as relative-path strings and downloadable,
KPIs in ``exported_kpis.csv`` (real Prefect server, Docker worker, containers)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone

import pandas as pd
import pytest

from algorithms_replay import collect, watch_once
from core.dataset_build import BUILDING_CSV_COLUMNS
from helpers import wait_for
from tools.seed_site import seed_site

pytestmark = pytest.mark.usefixtures("needs_docker")
END = datetime(2026, 3, 30, tzinfo=timezone.utc)
UI_CONFIGS = {"schema_overrides": {}, "building_overrides": {}, "defaults": {}, "validation": {"smoke_check": False}}


def test_ui_dataset_then_a_job_whose_simulation_data_the_collector_reads(api, mongo, storage):
    site = f"ll_{uuid.uuid4().hex[:8]}"
    seed_site(mongo, site=site, days=2, buildings=2, seed=7, end=END)
    name = f"ui-{site}"
    r = api.post("/dataset", json={"name": name, "site_id": site, "description": "UI form", "period": 60, "seconds_per_time_step": 1800,
                                   "from_ts": "2026-03-28 00:00:00", "until_ts": "2026-03-29 00:00:00", "citylearn_configs": UI_CONFIGS,
                                   "wait": 240}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Dataset created" and body["time_steps"] == 48 and body["seconds_per_time_step"] == 1800
    assert not [w for w in body["warnings"] if "validation" in w] and body["validation"]["citylearn"]["status"] == "skipped"
    assert body["format"] == "csv" and body["type"] == "citylearn" and body["format_counts"]["csv"] == sum(
        1 for p in storage.dataset_dir(name).rglob("*.csv"))
    assert list(pd.read_csv(storage.dataset_dir(name) / "Building_1.csv").columns) == BUILDING_CSV_COLUMNS

    config = f"sd-{uuid.uuid4().hex[:6]}.yaml"
    yaml_text = f"experiment: {{name: sd, run_name: r1}}\ndataset: {name}\nalgorithm: q_learning\nepisodes: 2\n"
    assert api.post("/experiment-config/create", json={"file_name": config, "yaml_content": yaml_text}).status_code == 200
    # no image_tag: on these test hosts a tag names the upstream stand-in image; the reference simulator runs without one
    r = api.post("/run-simulation", json={"config_path": f"configs/{config}", "target_host": "second", "job_name": "sd-r1", "submitted_by": "maintainer"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := watch_once(api, job_id)["status"]) in ("finished", "failed") and s, 240, what="the job")
    assert status == "finished", api.get(f"/logs/{job_id}").text[-2000:]

    # the trained policy, exported by the simulator in its container (docs/bundles.md)
    bundle = storage.job(job_id).dir / "bundle"
    manifest = json.loads((bundle / "artifact_manifest.json").read_bytes())
    assert manifest["topology"]["num_agents"] == 2 and manifest["agent"]["format"] == "q_table" and manifest["simulator"]["dataset_name"] == name
    assert all(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest() == f["sha256"] for f in manifest["files"])
    assert not [p.name for p in storage.job(job_id).dir.iterdir() if p.name.startswith(".bundle")]
    info_bundle = api.get(f"/job-info/{job_id}").json()["bundle"]
    assert info_bundle == {"path": f"jobs/{job_id}/bundle", "manifest_sha256": hashlib.sha256((bundle / "artifact_manifest.json").read_bytes()).hexdigest(),
                           "files": 3}

    row = collect(api, job_id)
    assert row["status"] == "finished" and row["index_status"] == 200 and row["simulation_data_available"] is True
    files = row["files"]
    assert all(isinstance(f, str) for f in files) and "exported_kpis.csv" in files
    assert {"exported_data_community_ep2.csv", "exported_data_pricing_ep2.csv"} <= set(files)
    assert any(f.endswith("_battery_ep2.csv") for f in files)
    cost = float(row["kpis"]["district_cost_total_control_eur"]["District"])
    assert cost == round(api.get(f"/result/{job_id}").json()["metrics"]["electricity_cost"], 3)
    community = row["community"].splitlines()
    assert community[0].startswith("timestamp,Net Electricity Consumption-kWh") and len(community) == 1 + 48

    # paths cannot leave the session folder, and a link a job leaves there is neither listed nor served
    session = storage.job(job_id).dir / "results" / "simulation_data" / row["simulation_data_session"]
    os.symlink("/etc/passwd", session / "leak.csv")
    assert "leak.csv" not in api.post("/simulation-data/index", json={"job_id": job_id}).json()["files"]
    for rel in ("leak.csv", "../result.json", "../../job_info.json", "/etc/passwd"):
        r = api.post("/simulation-data/file", json={"job_id": job_id, "session": row["simulation_data_session"], "relative_path": rel})
        assert r.status_code in (400, 403, 404) and "detail" in r.json(), (rel, r.status_code)
