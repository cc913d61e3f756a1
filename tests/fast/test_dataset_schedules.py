"""Scheduled dataset builds (issue 25 §2): the window maths, the digest that says "unchanged",
and ``/dataset/schedules`` over real HTTP against a real Prefect server (no worker in this tier:
runs stay queued, which is what these checks read)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from helpers import gateway_call, wait_for
from test_datasets_build import DAY, fill_site

from core.dataset_build import BuildRequest, build
from core.dataset_window import scheduled_name, window_bounds
from core.datasets import files_digest
from core.datasets import DatasetError

ANCHOR = datetime(2025, 1, 7, 2, 0, tzinfo=timezone.utc)


def test_relative_window_ends_at_the_anchor():
    assert window_bounds("last_24h", ANCHOR) == (ANCHOR - timedelta(hours=24), ANCHOR)
    assert window_bounds("last_2d", ANCHOR) == (ANCHOR - timedelta(days=2), ANCHOR)
    naive = datetime(2025, 1, 7, 2, 0)
    assert window_bounds("last_1h", naive)[1] == ANCHOR  # naive anchors are UTC


def test_explicit_window_ignores_the_anchor_and_bad_windows_say_why():
    fixed = {"start": "2025-01-06T00:00:00Z", "end": "2025-01-06 12:00:00"}
    assert window_bounds(fixed, ANCHOR) == (DAY, DAY + timedelta(hours=12))
    for bad, words in (("yesterday", "last_<N>h"), ({"start": "2025-01-06"}, "exactly start and end"),
                       ({"start": "2025-01-06", "end": "2025-01-05"}, "must be after"), ("last_999d", "366-day")):
        with pytest.raises(DatasetError, match=words):
            window_bounds(bad, ANCHOR)


def test_scheduled_names_are_the_window_end_in_utc():
    lisbon_summer = datetime(2025, 7, 1, 3, 30, tzinfo=timezone(timedelta(hours=1)))
    assert scheduled_name("living_lab", lisbon_summer) == "living_lab-20250701T0230Z"


def test_digest_ignores_the_metadata_file_and_sees_any_other_byte(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "dataset.json").write_text('{"created": 1}')
    first = files_digest(tmp_path)
    (tmp_path / "dataset.json").write_text('{"created": 2}')
    assert files_digest(tmp_path) == first
    (tmp_path / "a.csv").write_text("x\n2\n")
    assert files_digest(tmp_path) != first


def test_a_slot_built_twice_is_unchanged_and_new_data_rebuilds_it(mongo, storage):
    site = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, site)
    request = BuildRequest(name=f"{site}-slot", site_id=site, from_ts=DAY.isoformat(), until_ts=(DAY + timedelta(days=1)).isoformat())
    first = build(mongo, storage, request, smoke=False, replace=True)
    assert first["status"] == "built" and len(first["digest"]) == 64
    with pytest.raises(DatasetError, match="already exists"):  # without replace, as POST /dataset has always answered
        build(mongo, storage, request, smoke=False)
    again = build(mongo, storage, request, smoke=False, replace=True)
    assert again["status"] == "unchanged" and again["digest"] == first["digest"] and again["created"] == first["created"]
    mongo[site].building_B1.update_many({}, {"$set": {"observations.non_shiftable_load": 5.0}})
    rebuilt = build(mongo, storage, request, smoke=False, replace=True)
    assert rebuilt["status"] == "rebuilt" and rebuilt["digest"] != first["digest"]
    assert files_digest(storage.dataset_dir(f"{site}-slot")) == rebuilt["digest"]
    assert not [p for p in storage.datasets_dir.iterdir() if p.name.startswith(".tmp-") and site in p.name]


@pytest.fixture
def schedule_site(mongo):
    site = f"sched_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, site)
    return site


def _create(api, site: str, **extra):
    r = api.post("/dataset/schedules", json={"site_id": site, "cron": "0 2 * * *", "timezone": "UTC", "window": "last_24h", **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _prefect_view(schedule_id: str, site: str):
    """(the schedule as Prefect holds it, the runs Prefect has scheduled for this site)."""

    async def read(gateway):
        client = gateway.client
        dep = await client.read_deployment_by_name("build-dataset/local")
        runs = await client.read_flow_runs(limit=200)
        mine = [r for r in runs if r.deployment_id == dep.id and r.parameters.get("site_id") == site and r.state_type.value == "SCHEDULED"]
        return [s for s in await client.read_deployment_schedules(dep.id) if str(s.id) == schedule_id], mine

    return gateway_call(read)


def test_a_schedule_lists_its_next_three_runs_and_lives_on_the_deployment(api, platform, schedule_site):
    made = _create(api, schedule_site, name_prefix=f"p-{schedule_site}")
    runs = [datetime.fromisoformat(t) for t in made["next_runs"]]
    assert len(runs) == 3 and all(t.hour == 2 and t.minute == 0 for t in runs) and runs == sorted(runs)
    assert runs[0] > datetime.now(timezone.utc) and runs[1] - runs[0] == timedelta(days=1)
    listed = {s["schedule_id"]: s for s in api.get("/dataset/schedules").json()}
    mine = listed[made["schedule_id"]]
    assert mine["site_id"] == schedule_site and mine["deployment"] == "build-dataset/local" and mine["active"] is True
    [schedule], _ = _prefect_view(made["schedule_id"], schedule_site)  # Prefect holds it, with the run parameters
    assert schedule.parameters["window"] == "last_24h" and schedule.parameters["site_id"] == schedule_site


def test_pause_drops_the_runs_made_ahead_and_resume_brings_them_back(api, platform, schedule_site):
    made = _create(api, schedule_site, cron="*/5 * * * *", name_prefix=f"pz-{schedule_site}")
    wait_for(lambda: _prefect_view(made["schedule_id"], schedule_site)[1], timeout=30, what="Prefect's scheduler making runs of the new schedule")
    paused = api.post(f"/dataset/schedules/{made['schedule_id']}/pause").json()
    assert paused["active"] is False and paused["next_runs"] == []
    assert not _prefect_view(made["schedule_id"], schedule_site)[1]
    assert api.post(f"/dataset/schedules/{made['schedule_id']}/resume").json()["active"] is True
    [schedule], _ = _prefect_view(made["schedule_id"], schedule_site)
    assert schedule.active and schedule.parameters["site_id"] == schedule_site  # pause/resume kept its parameters
    wait_for(lambda: _prefect_view(made["schedule_id"], schedule_site)[1], timeout=30, what="runs made again after resume")
    assert api.delete(f"/dataset/schedules/{made['schedule_id']}").status_code == 200
    assert made["schedule_id"] not in {s["schedule_id"] for s in api.get("/dataset/schedules").json()}


def test_backfill_makes_one_run_per_occurrence_once(api, schedule_site):
    made = _create(api, schedule_site, cron="0 */6 * * *", name_prefix=f"bf-{schedule_site}")
    body = {"from": "2025-01-06T00:00:00Z", "until": "2025-01-06T12:00:00Z"}
    first = api.post(f"/dataset/schedules/{made['schedule_id']}/backfill", json=body)
    assert first.status_code == 200, first.text
    runs = first.json()["runs"]
    assert [r["anchor"][:16] for r in runs] == ["2025-01-06T00:00", "2025-01-06T06:00", "2025-01-06T12:00"]
    assert [r["dataset"] for r in runs] == [f"bf-{schedule_site}-20250106T{h}00Z" for h in ("00", "06", "12")]
    again = api.post(f"/dataset/schedules/{made['schedule_id']}/backfill", json=body).json()["runs"]
    assert [r["job_id"] for r in again] == [r["job_id"] for r in runs]  # asked twice, started once
    api.delete(f"/dataset/schedules/{made['schedule_id']}")


@pytest.mark.parametrize("body, status, words", [
    ({"site_id": "nowhere_site", "cron": "0 2 * * *"}, 404, "does not exist"),
    ({"site_id": "x", "cron": "every day"}, 422, "not a valid cron"),
    ({"site_id": "x", "cron": "0 2 * * *", "timezone": "Mars/Olympus"}, 422, "IANA"),
    ({"site_id": "x", "cron": "0 2 * * *", "window": "since_monday"}, 422, "last_<N>h"),
    ({"site_id": "x", "cron": "0 2 * * *", "name_prefix": "../up"}, 422, "name_prefix"),
    ({"site_id": "x", "cron": "0 2 * * *", "target_host": "nohost"}, 404, "nohost"),
])
def test_bad_schedules_say_what_was_wrong_and_make_nothing(api, body, status, words):
    before = len(api.get("/dataset/schedules").json())
    r = api.post("/dataset/schedules", json=body)
    assert r.status_code == status and words in r.text, r.text
    assert len(api.get("/dataset/schedules").json()) == before


def test_unknown_schedules_and_oversized_backfills_are_refused(api, schedule_site):
    assert api.post("/dataset/schedules/not-an-id/pause").status_code == 404
    assert api.delete(f"/dataset/schedules/{uuid.uuid4()}").status_code == 404
    made = _create(api, schedule_site, cron="* * * * *", name_prefix=f"big-{schedule_site}")
    r = api.post(f"/dataset/schedules/{made['schedule_id']}/backfill", json={"from": "2025-01-06T00:00:00Z", "until": "2025-01-07T00:00:00Z"})
    assert r.status_code == 400 and "more than 100" in r.text
    r = api.post(f"/dataset/schedules/{made['schedule_id']}/backfill", json={"from": "2025-01-07T00:00:00Z", "until": "2025-01-06T00:00:00Z"})
    assert r.status_code == 422 and "before from" in r.text
    api.delete(f"/dataset/schedules/{made['schedule_id']}")
