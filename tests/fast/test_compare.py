"""GET /compare: jobs' district KPIs side by side, read from each job's newest exported table as
untrusted job output (links, oversized tables and non-numbers are not believed)."""

from __future__ import annotations

import os

from helpers import experiment

HEADER = "KPI,R-H-01,District\n"


def _job(api) -> str:
    r = api.post("/run-simulation", json={"config": experiment("compare", "q"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def _session(storage, job_id: str, name: str, text: str | None = None, mtime: float | None = None):
    folder = storage.job(job_id).dir / "results" / "simulation_data" / name
    folder.mkdir(parents=True, exist_ok=True)
    if text is not None:
        (folder / "exported_kpis.csv").write_text(text)
    if mtime is not None:
        os.utime(folder, (mtime, mtime))
    return folder


def test_kpis_side_by_side_from_each_job_s_newest_session(api, storage):
    a, b, c = _job(api), _job(api), _job(api)
    _session(storage, a, "old", HEADER + "district_cost_total_control_eur,1,99\n", mtime=1_000)
    _session(storage, a, "new", HEADER + "district_cost_total_control_eur,1,6.5\nco2_kg,1,3\n", mtime=2_000)
    _session(storage, b, "s1", HEADER + "district_cost_total_control_eur,1,5.9\nco2_kg,1,nan\nextra,1,\n")
    r = api.get("/compare", params={"jobs": f"{a},{b},{c},{a}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [j["job_id"] for j in body["jobs"]] == [a, b, c]  # each once, in the order asked
    assert [j["session"] for j in body["jobs"]] == ["new", "s1", None]
    rows = {row["kpi"]: row for row in body["kpis"]}
    assert list(rows) == ["district_cost_total_control_eur", "co2_kg", "extra"]
    assert rows["district_cost_total_control_eur"]["values"] == {a: 6.5, b: 5.9, c: None}
    assert rows["district_cost_total_control_eur"]["best_job_id"] == b
    assert rows["co2_kg"]["values"][b] is None and rows["co2_kg"]["best_job_id"] is None  # nan is not a number here


def test_a_linked_or_oversized_table_is_not_read_and_says_why(api, storage, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER + "stolen,1,42\n")
    linked, big, session_link = _job(api), _job(api), _job(api)
    os.symlink(secret, _session(storage, linked, "s") / "exported_kpis.csv")
    _session(storage, big, "s", HEADER + "x,1,1\n" * 200_000)
    (storage.job(session_link).dir / "results").mkdir(parents=True)
    os.symlink(secret.parent, storage.job(session_link).dir / "results" / "simulation_data")
    body = api.get("/compare", params={"jobs": f"{linked},{big},{session_link}"}).json()
    notes = {j["job_id"]: j["note"] for j in body["jobs"]}
    assert "link" in notes[linked] and "bytes" in notes[big]
    assert body["jobs"][2]["session"] is None  # a linked simulation_data folder is not listed
    assert body["kpis"] == []


def test_bad_requests_say_what_is_wrong(api):
    one = _job(api)
    r = api.get("/compare", params={"jobs": one})
    assert r.status_code == 400 and "2 to 10" in r.json()["detail"]
    r = api.get("/compare", params={"jobs": f"{one},00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 404 and "00000000-0000-0000-0000-000000000000" in r.json()["detail"]
    assert api.get("/compare", params={"jobs": f"{one},../../etc"}).status_code == 404
    assert api.get("/compare").status_code == 422
