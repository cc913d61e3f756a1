"""The Prefect-free arithmetic and rules behind ETAs, start estimates, failure codes, storage
measures and job folders (core/eta.py, core/queue_estimate.py, core/failures.py,
core/job_storage.py, core/job_folders.py)."""

from __future__ import annotations

import os
import threading

import pytest

from core.eta import Reading, Sample, SampleBook, estimate, read_progress
from core.failures import RULES, classify, result_error_text
from core.job_folders import FolderNotFound, FolderRefused, OrganizationStore
from core.job_storage import measure
from core.queue_estimate import HostQueue, RunningJob, estimate_starts, usual_duration

T0 = 1_800_000_000.0


# -- reading progress files ------------------------------------------------------------------

def test_reading_takes_any_percent_key_and_counters():
    assert read_progress({"progress_pct": 40}).percent == 40
    assert read_progress({"percent": "12.5"}).percent == 12.5
    assert read_progress({"completion": 0.25}).percent == 25
    assert read_progress({"progress_percent": 150}).percent == 100  # clamped
    r = read_progress({"global_step": 300, "total_global_steps": 1200})
    assert (r.percent, r.current, r.total, r.unit) == (25, 300, 1200, "steps")
    r = read_progress({"percent": 60, "episode": 3, "episodes": 5})
    assert (r.percent, r.current, r.total, r.unit) == (60, 3, 5, "episodes")
    assert read_progress({"status": "running", "progress": "episode 2/5"}) is None
    assert read_progress(["not", "a", "dict"]) is None
    assert read_progress({"percent": True}) is None


def test_reading_is_dated_by_its_timestamp_else_the_file():
    assert read_progress({"percent": 1, "timestamp": "2027-01-15T08:00:00Z"}).updated_at == 1800000000.0
    assert read_progress({"percent": 1, "timestamp": 1_800_000_000_000}).updated_at == T0  # milliseconds
    assert read_progress({"percent": 1}, modified_at=T0 + 5).updated_at == T0 + 5


# -- the ETA ------------------------------------------------------------------------------

def _steady_samples(n: int, pct_per_s: float = 0.5, gap: float = 10.0) -> list[Sample]:
    return [Sample(T0 + i * gap, i * gap * pct_per_s) for i in range(n)]


def test_eta_from_a_steady_rate_is_highly_confident():
    samples = _steady_samples(9)  # 0..40 % in 80 s: 0.5 %/s
    last = samples[-1]
    eta = estimate(Reading(last.percent, updated_at=last.at), samples, status="running", started_at=T0, now=last.at)
    assert eta.available and eta.source == "progress_rate" and eta.state == "running"
    assert eta.eta_seconds == pytest.approx(120.0)  # 60 % left at 0.5 %/s
    assert eta.estimated_finish_at == pytest.approx(last.at + 120)
    assert eta.elapsed_seconds == 80 and eta.confidence == "high"
    body = eta.as_dict()
    assert body["estimated_finish_at"].startswith("2027-01-15T08:03:20") and body["available"] is True


def test_eta_confidence_is_low_with_few_samples_or_little_done():
    two = [Sample(T0, 0), Sample(T0 + 10, 20)]
    assert estimate(Reading(20, updated_at=T0 + 10), two, status="running", started_at=T0, now=T0 + 10).confidence == "low"
    early = [Sample(T0 + i, i * 0.5) for i in range(6)]  # 2.5 % done
    assert estimate(Reading(2.5, updated_at=T0 + 5), early, status="running", started_at=T0, now=T0 + 5).confidence == "low"
    three = [Sample(T0, 0), Sample(T0 + 10, 10), Sample(T0 + 20, 20)]
    assert estimate(Reading(20, updated_at=T0 + 20), three, status="running", started_at=T0, now=T0 + 20).confidence == "medium"


def test_an_unsteady_rate_is_not_high_confidence():
    samples = [Sample(T0 + t, p) for t, p in [(0, 0), (10, 20), (20, 40), (30, 42), (40, 44), (50, 46)]]
    eta = estimate(Reading(46, updated_at=T0 + 50), samples, status="running", started_at=T0, now=T0 + 50)
    assert eta.available and eta.confidence == "medium"


def test_eta_stalls_and_says_so():
    samples = _steady_samples(6)
    eta = estimate(Reading(25, updated_at=samples[-1].at), samples, status="running", started_at=T0, now=samples[-1].at + 3600)
    assert eta.state == "stalled" and eta.confidence == "low" and eta.eta_seconds == 0


def test_eta_unavailable_reasons():
    assert estimate(None, [], status="queued", started_at=None, now=T0).as_dict() == {"available": False, "reason": "no estimate while the job is queued"}
    assert "no progress" in estimate(None, [Sample(T0, 0)], status="running", started_at=T0, now=T0 + 1).reason
    assert "one progress reading" in estimate(Reading(0, updated_at=T0), [], status="running", started_at=None, now=T0).reason
    assert "not advanced" in estimate(Reading(0, updated_at=T0 + 9), [Sample(T0, 0)], status="running", started_at=T0, now=T0 + 9).reason
    done = estimate(Reading(100, updated_at=T0 + 9), [], status="finished", started_at=T0, now=T0 + 20)
    assert done.available and done.eta_seconds == 0 and done.state == "finished"


def test_a_restarted_series_uses_only_the_new_readings():
    samples = [Sample(T0, 0), Sample(T0 + 10, 50), Sample(T0 + 20, 5), Sample(T0 + 30, 10)]
    eta = estimate(Reading(10, updated_at=T0 + 30), samples, status="running", started_at=T0, now=T0 + 30)
    assert eta.eta_seconds == pytest.approx(180.0)  # 0.5 %/s over the new series


def test_sample_book_keeps_start_and_latest_and_forgets_old_jobs():
    book = SampleBook(max_jobs=2, per_job=3)
    for i in range(1, 6):
        samples = book.record("a", T0, Reading(i * 10, updated_at=T0 + i), now=T0 + i)
    assert [s.percent for s in samples] == [0, 30, 40, 50]
    assert book.record("a", T0, Reading(50, updated_at=T0 + 5), now=T0 + 9) == samples  # same reading: no new sample
    book.record("b", T0, None, now=T0)
    book.record("c", T0, None, now=T0)
    assert book.record("a", T0, None, now=T0) == [Sample(T0, 0)]  # "a" was the oldest: forgotten


# -- start estimates -----------------------------------------------------------------------

def test_queued_jobs_take_free_slots_then_running_etas_then_history():
    q = HostQueue("h", limit=2, online=True, running=[RunningJob("r1", 50, eta_seconds=30)], queued=["q1", "q2", "q3"],
                  usual_seconds=100, profiles={"q1": "cpu"})
    out = estimate_starts(q, T0)
    assert out["q1"].estimated_start_seconds == 0 and out["q1"].source == "free_slot" and out["q1"].profile == "cpu"
    assert out["q2"].estimated_start_seconds == 30 and out["q2"].blocking_job_id == "r1" and out["q2"].source == "running_eta"
    assert out["q3"].estimated_start_seconds == 100 and out["q3"].blocking_job_id == "q1" and out["q3"].source == "host_history"
    assert [out[j].queue_position for j in ("q1", "q2", "q3")] == [1, 2, 3]
    body = out["q2"].as_dict()
    assert body["kind"] == "estimated_start" and body["available"] and body["target_host"] == "h"
    assert body["estimated_start_at"].startswith("2027-01-15T08:00:30")


def test_running_job_without_eta_uses_the_usual_run_time_minus_elapsed():
    q = HostQueue("h", limit=1, online=True, running=[RunningJob("r1", 70)], queued=["q1"], usual_seconds=100)
    est = estimate_starts(q, T0)["q1"]
    assert est.estimated_start_seconds == 30 and est.source == "host_history"


def test_no_estimate_without_worker_or_without_any_duration():
    offline = estimate_starts(HostQueue("h", 1, online=False, queued=["q1"]), T0)["q1"]
    assert not offline.available and "no worker online" in offline.reason and offline.queue_position == 1
    blind = estimate_starts(HostQueue("h", 1, online=True, running=[RunningJob("r1", 5)], queued=["q1", "q2"]), T0)
    assert not blind["q1"].available and blind["q1"].blocking_job_id == "r1"
    assert not blind["q2"].available


def test_unlimited_host_starts_everything_now():
    out = estimate_starts(HostQueue("h", None, online=True, queued=["a", "b"]), T0)
    assert all(e.available and e.estimated_start_seconds == 0 for e in out.values())


def test_usual_duration_is_the_median():
    assert usual_duration([]) is None
    assert usual_duration([30, 10, 20]) == 20
    assert usual_duration([10, 20, 30, 40]) == 25


# -- failure codes -------------------------------------------------------------------------

CASES = {
    "image_missing": dict(state_message="Flow run encountered an exception: SimulatorImageMissing: image 'calof/opeva_simulator:v9' is not present on host 'local'"),
    "image_refused": dict(state_message="ExperimentConfigError: image: repository 'evil/x' is not allowed on host 'local' (allowed: [])"),
    "config_invalid": dict(state_message="ExperimentConfigError: algorithm.name: unknown algorithm 'nope'"),
    "dataset_missing": dict(result_error="ConfigError: dataset: no dataset 'gone': datasets/gone/schema.json does not exist under /data"),
    "out_of_memory": dict(state_message="SimulatorFailed: simulator exited with code 137 (OOMKilled: the container ran out of memory)"),
    "killed": dict(state_message="SimulatorFailed: simulator exited with code 137; last log lines:\nepoch 3"),
    "pids_limit": dict(state_message="SimulatorFailed: error_code=pids_limit: the job stayed at its process limit (64) for 3 checks"),
    "disk_limit": dict(state_message="SimulatorFailed: error_code=disk_limit: the job's folder uses 40 MiB, over its disk limit of 32 MiB"),
    "timed_out": dict(log_tail="2026-01-01 10:00:00 | ERROR | TimeoutError: mongo did not answer"),
    "host_lost": dict(state_type="CRASHED", state_message="No heartbeat for 90 s: the worker or host died."),
    "stopped": dict(status="stopped", state_message="Stop requested through the OPEVA API"),
    "marked_failed": dict(state_message="Marked failed: stuck after a host reboot"),
    "node_fail": dict(state_message="SimulatorFailed: error_code=node_fail: Slurm job 7 NODE_FAIL: the compute node failed while the job ran"),
    "slurm_cancelled": dict(state_message="SimulatorFailed: error_code=slurm_cancelled: Slurm job 7 CANCELLED: cancelled by someone else"),
    "slurm_job_lost": dict(state_message="SimulatorFailed: error_code=slurm_job_lost: Slurm job 7 forgotten: Slurm no longer knows the job"),
    "preempted": dict(state_message="SimulatorFailed: error_code=preempted: Slurm job 7 PREEMPTED: Slurm preempted the job"),
    "artifact_sync_failed": dict(state_message="SyncFailedError: error_code=artifact_sync_failed: uploading the job's inputs to "
                                 "alice@login:/scratch/jobs/j: sh: 1: cd: can't cd to /scratch"),
    "simulator_error": dict(result_error="ValueError: boom", log_tail="Traceback ...\nValueError: boom"),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_rule_names_its_failure(code):
    args = {"status": "failed", "state_type": "FAILED", **CASES[code]}
    failure = classify(**args)
    assert failure is not None and failure.error_code == code
    assert failure.error_hint and failure.error_category


def test_every_rule_has_a_case():
    assert {r.code for r in RULES} | {"simulator_error"} == set(CASES)


def test_failures_trust_the_state_message_first_and_skip_running_jobs():
    both = classify(status="failed", state_type="FAILED", state_message="SimulatorImageMissing: x is not present on host 'h'",
                    log_tail="MemoryError")
    assert both.error_code == "image_missing"
    assert classify(status="running", state_type="RUNNING", state_message="OOMKilled") is None
    crashed = classify(status="failed", state_type="CRASHED", state_message="something odd")
    assert crashed.error_code == "host_lost"
    assert classify(status="canceled", state_type="CANCELLED").error_code == "stopped"


def test_result_error_text_reads_upstreams_failed_result():
    assert result_error_text({"status": "failed", "error": "boom", "traceback": "Trace"}) == "boom\nTrace"
    assert result_error_text({"status": "completed", "kpis": {}}) is None
    assert result_error_text("nope") is None


# -- result storage ------------------------------------------------------------------------

def test_storage_is_measured_by_category_without_following_links(tmp_path):
    job = tmp_path / "job"
    for rel, size in {"logs/platform.log": 10, "results/result.json": 20, "results/simulation_data/s/a.csv": 30,
                      "progress/progress.json": 5, "bundle/artifact_manifest.json": 7, "checkpoints/c.pt": 100,
                      "job_info.json": 3, "weird/x": 1}.items():
        (job / rel).parent.mkdir(parents=True, exist_ok=True)
        (job / rel).write_bytes(b"x" * size)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"y" * 10_000)
    os.symlink(outside, job / "results" / "escape")
    out = measure(job)
    cats = out["installed"]["categories"]
    assert cats["logs"] == {"bytes": 10, "file_count": 1} and cats["checkpoints"] == {"bytes": 100, "file_count": 1}
    assert cats["results"]["file_count"] == 3 and cats["results"]["bytes"] < 1000  # the link, not what it points at
    assert cats["other"] == {"bytes": 4, "file_count": 2}
    assert out["installed"]["file_count"] == 9 and out["schema_version"] == 1
    assert measure(tmp_path / "absent")["installed"]["bytes"] == 0


# -- folders -------------------------------------------------------------------------------

def test_folders_are_their_owners_alone(tmp_path):
    store = OrganizationStore(tmp_path / "platform")
    a = store.create_folder("alice", "Q1 runs")
    assert store.folders("alice") == [a] and store.folders("bob") == []
    with pytest.raises(FolderNotFound):
        store.rename_folder("bob", a["folder_id"], "mine")
    with pytest.raises(FolderNotFound):
        store.move("bob", "job-1", a["folder_id"])
    with pytest.raises(FolderRefused) as dup:
        store.create_folder("alice", "Q1 runs")
    assert dup.value.status == 409
    for bad in ("", " ", "../x", "a/b", "x" * 101, "\x00"):
        with pytest.raises(FolderRefused):
            store.create_folder("alice", bad)
    renamed = store.rename_folder("alice", a["folder_id"], "Q1 final")
    assert renamed["name"] == "Q1 final" and renamed["updated_at"] >= a["created_at"]


def test_jobs_move_archive_restore_and_folder_delete(tmp_path):
    store = OrganizationStore(tmp_path / "platform")
    f = store.create_folder("alice", "A")
    assert store.organization("j1") == {"folder_id": None, "archived": False, "archived_at": None, "archived_by": None, "owner": None, "updated_at": None}
    assert store.move("alice", "j1", f["folder_id"])["folder_id"] == f["folder_id"]
    archived = store.archive("alice", "j1")
    assert archived["archived"] and archived["archived_by"] == "alice" and archived["folder_id"] == f["folder_id"]
    assert store.restore("alice", "j1")["archived"] is False
    assert store.delete_folder("alice", f["folder_id"]) == ["j1"]
    assert store.organization("j1")["folder_id"] is None
    store.forget("j1")
    assert store.organizations() == {}


def test_concurrent_creates_lose_nothing(tmp_path):
    store_dir = tmp_path / "platform"

    def make(i: int) -> None:
        OrganizationStore(store_dir).create_folder("alice", f"folder {i}")

    threads = [threading.Thread(target=make, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(OrganizationStore(store_dir).folders("alice")) == 20
