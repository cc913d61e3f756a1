"""The Slurm watcher's checkpoint (core/slurm_watch.py): a new attempt follows the job an earlier
one submitted only when the file is sound and Slurm names that job after this run; and the
output offset it records covers exactly the lines the mirror took (flows/slurm_run.py)."""

from __future__ import annotations

import json
import os
import time

from core.layout import DataRoot
from core.slurm_watch import WATCH_FILE, Watch, read_watch, resumable, write_watch
from flows.slurm_run import SlurmSource

JOB = "6d1f0c9e-0000-4000-8000-000000000001"


def test_a_sound_checkpoint_of_this_runs_job_is_resumed(tmp_path):
    write_watch(tmp_path, Watch(slurm_job_id="42", output_offset=10, log_offset=3))
    watch = read_watch(tmp_path)
    assert watch == Watch(slurm_job_id="42", output_offset=10, log_offset=3)
    assert resumable(watch, {"JobState": "RUNNING", "JobName": f"opeva-{JOB}"}, JOB)


def test_a_checkpoint_is_not_resumed_when_ended_forgotten_or_someone_elses(tmp_path):
    watch = Watch(slurm_job_id="42")
    assert not resumable(watch.model_copy(update={"ended": True}), {"JobName": f"opeva-{JOB}"}, JOB)
    assert not resumable(watch, None, JOB)  # Slurm forgot it
    assert not resumable(watch, {"JobState": "RUNNING", "JobName": "opeva-another-job"}, JOB)  # a forged id
    assert not resumable(watch, {"JobState": "RUNNING"}, JOB)


def test_a_forged_or_linked_checkpoint_reads_as_nothing(tmp_path):
    for text in ('{"slurm_job_id": "1; rm -rf /"}', '{"slurm_job_id": "7", "output_offset": -5}', "[]", "not json", "x" * 10000):
        (tmp_path / WATCH_FILE).write_text(text)
        assert read_watch(tmp_path) is None, text
    (tmp_path / WATCH_FILE).unlink()
    (tmp_path / "elsewhere.json").write_text(json.dumps({"slurm_job_id": "7"}))
    os.symlink(tmp_path / "elsewhere.json", tmp_path / WATCH_FILE)
    assert read_watch(tmp_path) is None


def test_the_mirrored_offset_covers_exactly_the_lines_taken(tmp_path):
    job = DataRoot(tmp_path).job(JOB).create()
    out = job.dir / "logs" / "slurm.out"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"one\ntwo\nthr")  # an unfinished third line
    src = SlurmSource("5", job, start_offset=0)
    deadline = time.monotonic() + 5
    while src.lines.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert src.mirrored_offset() == 0  # nothing taken yet
    assert src.lines.get(timeout=1) == "one"
    assert src.mirrored_offset() == 0  # half a batch taken: not past it
    assert src.lines.get(timeout=1) == "two"
    assert src.mirrored_offset() == len(b"one\ntwo\n")  # the unfinished line is read again on resume
    resumed = SlurmSource("5", job, start_offset=src.mirrored_offset())
    with out.open("ab") as f:
        f.write(b"ee\n")
    assert resumed.lines.get(timeout=2) == "three"
