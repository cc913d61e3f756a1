"""The maintainers' scripts' request sequence (tests/algorithms_replay.py) against the real API.

No worker here: the job goes to the host whose engine is out of reach (``offline``: only its
allow-list is checked at submit, as for a remote host), so it stays queued, and the simulation data a finished job would have
is written where the simulator writes it, so the collector's reads are checked on our
answers (the e2e test does it with a job that ran)."""

from __future__ import annotations

import json
import uuid

from algorithms_replay import collect, preflight, submit, watch_once

KPIS = "KPI,Building_1,District\ndistrict_cost_total_control_eur,1.5,1.5\ndistrict_cost_total_business_as_usual_eur,2,2\n"


def test_scripts_sequence_reads_what_it_needs(api, storage):
    name = f"alg-{uuid.uuid4().hex[:6]}.yaml"
    assert api.post("/experiment-config/create", json={"file_name": name, "yaml_content": "experiment: {name: alg, run_name: r1}\n"}).status_code == 200
    flags = preflight(api, "offline", None)
    assert flags["target_host_found"] is True and flags["target_host_online"] is not None, flags["answers"]["hosts"]
    response = submit(api, {"config_path": f"configs/{name}", "target_host": "offline", "job_name": "alg-r1", "submitted_by": "maintainer",
                            "image_tag": "v1"})
    job_id = response["job_id"]
    assert response["status"] == "queued" and response.get("host") == "offline"
    snap = watch_once(api, job_id)
    assert snap["status"] not in ("unknown", "") and isinstance(snap["job_info"], dict) and isinstance(snap["logs_chunk"]["text"], str)

    row = collect(api, job_id)  # nothing exported yet: the index is a 404 the script records and passes over
    assert row["index_status"] == 404 and row["job_name"] == "alg-r1" and row["config_path"] == f"configs/{name}"

    session = storage.job(job_id).dir / "results" / "simulation_data" / "20260101T000000Z"
    session.mkdir(parents=True)
    (session / "exported_kpis.csv").write_text(KPIS)
    (session / "exported_data_community_ep0.csv").write_text("timestamp,Net Electricity Consumption-kWh\n2024-01-01T00:00:00,1.0\n")
    (session / "exported_data_community_ep2.csv").write_text("timestamp,Net Electricity Consumption-kWh\n2024-01-01T00:00:00,2.0\n")
    (session / "exported_data_pricing_ep2.csv").write_text("timestamp,electricity_pricing-$/kWh\n2024-01-01T00:00:00,0.2\n")
    storage.job(job_id).result_file.write_text(json.dumps({"status": "completed", "simulation_data_session_default": "20260101T000000Z",
                                                           "simulation_data_available": True, "kpi_source": "simulation_data_csv"}))
    row = collect(api, job_id)
    assert row["index_status"] == 200 and row["simulation_data_session"] == "20260101T000000Z"
    assert all(isinstance(f, str) for f in row["files"]) and "exported_kpis.csv" in row["files"]
    assert row["kpis"]["district_cost_total_control_eur"]["District"] == "1.5"
    assert row["community"].endswith("2.0\n") and row["pricing"].startswith("timestamp,electricity_pricing-$/kWh")  # the latest episode's
    assert row["simulation_data_available"] is True and row["kpi_source"] == "simulation_data_csv"
    api.post(f"/stop/{job_id}")
