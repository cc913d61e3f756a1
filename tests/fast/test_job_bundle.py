"""``/job-info`` shows a job's policy bundle (core/job_bundle.py): the manifest the simulator
wrote, read as untrusted (no link followed, regular files only, bounded), never what the job
claims in job_info.json."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from helpers import experiment, gateway_call

from core import job_bundle
from core.job_bundle import bundle_summary
from simulator.agents import make_controller
from simulator.bundle import export_bundle
from simulator.config import validate_config
from simulator.sample import sample_dataset


def _export(job_dir: Path) -> dict:
    config = validate_config({"experiment": {"name": "x", "run_name": "y"}, "algorithm": "rule_based", "simulation": {"buildings": 2, "days": 1}})
    data = sample_dataset(2, 1, 0)
    return export_bundle(job_dir, config, data, make_controller("rule_based", data, config.params, 0))


def test_the_summary_is_the_manifest_the_simulator_wrote(tmp_path):
    exported = _export(tmp_path)
    summary = bundle_summary(tmp_path, "j1")
    assert summary == {"path": "jobs/j1/bundle", "manifest_sha256": exported["bundle_manifest_sha256"], "files": exported["bundle_files"]}
    assert summary["manifest_sha256"] == hashlib.sha256((tmp_path / "bundle" / "artifact_manifest.json").read_bytes()).hexdigest()
    assert summary["files"] == 3  # two policy files and the manifest


def test_a_job_without_a_readable_bundle_has_none(tmp_path, monkeypatch):
    assert bundle_summary(tmp_path, "j") is None  # nothing exported
    elsewhere = tmp_path / "elsewhere"
    _export(elsewhere)
    job = tmp_path / "job"
    job.mkdir()
    (job / "bundle").symlink_to(elsewhere / "bundle")  # a link out of the folder is not followed
    assert bundle_summary(job, "j") is None
    (job / "bundle").unlink()
    (job / "bundle").mkdir()
    manifest = job / "bundle" / "artifact_manifest.json"
    manifest.symlink_to(elsewhere / "bundle" / "artifact_manifest.json")
    assert bundle_summary(job, "j") is None
    manifest.unlink()
    os.mkfifo(manifest)  # a FIFO must not block the reader
    assert bundle_summary(job, "j") is None
    manifest.unlink()
    for content in (b"not json", b"[1, 2]", b'{"files": "many"}', b"[" * 100_000):
        manifest.write_bytes(content)
        assert bundle_summary(job, "j") is None, content[:20]
    monkeypatch.setattr(job_bundle, "MAX_MANIFEST", 64)
    manifest.write_text(json.dumps({"files": [], "pad": "x" * 100}))
    assert bundle_summary(job, "j") is None  # too big: not read whole


def test_job_info_carries_the_bundle_and_ignores_what_the_job_claims(api, storage):
    from prefect.states import Completed

    r = api.post("/run-simulation", json={"config": experiment("bundle", "t"), "command": ["true"], "target_host": "second"})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    paths = storage.job(job)
    paths.dir.mkdir(parents=True, exist_ok=True)
    forged = {"path": "/etc", "manifest_sha256": "0" * 64, "files": 1}
    paths.job_info_file.write_text(json.dumps({"bundle": forged}))

    async def done(gateway):
        await gateway.client.set_flow_run_state(uuid.UUID(job), Completed(), force=True)

    gateway_call(done)
    assert api.get(f"/job-info/{job}").json()["bundle"] is None  # no bundle yet: the job's claim is not shown
    exported = _export(paths.dir)
    info = api.get(f"/job-info/{job}").json()
    assert info["bundle"] == {"path": f"jobs/{job}/bundle", "manifest_sha256": exported["bundle_manifest_sha256"], "files": 3}
