"""``data: local`` hosts (docs/data-local.md): what hosts.yaml accepts, the bounded read-back of a
docker archive, what is packed for the host, and the run's first state. The copies through a real
lab engine are tested in tests/e2e/test_data_local.py."""

from __future__ import annotations

import io
import os
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import core.bounded_tar as bounded
from core.bounded_tar import SyncFailed, extract_bounded
from core.host_data import SKIP, _pack
from core.hosts import Host, load_hosts


def _hosts(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n" + entry)
    return path


def test_a_host_shares_the_data_root_unless_it_says_local(tmp_path):
    loaded = load_hosts(_hosts(tmp_path, "  - name: a\n  - name: lap\n    data: local\n    docker_url: unix:///run/lap.sock\n"))
    assert loaded.get("a").data == "shared" and loaded.get("lap").data == "local"


@pytest.mark.parametrize("entry,says", [
    ("  - name: lap\n    data: local\n", r"host 'lap': data: local needs docker_url"),
    ("  - name: hpc\n    kind: slurm\n    data: local\n    slurm: {partitions: [p]}\n", r"host 'hpc': data: local is for Docker hosts"),
    ("  - name: lap\n    data: elsewhere\n    docker_url: unix:///run/lap.sock\n", r"hosts\.0\.data\n.*'shared' or 'local'"),
])
def test_a_bad_data_setting_is_refused_naming_the_key(tmp_path, entry, says):
    with pytest.raises(ValidationError, match=says):
        load_hosts(_hosts(tmp_path, entry))


def _archive(members: list[tuple[str, bytes | None, bytes]]) -> io.BytesIO:
    """As docker's get_archive of jobs/<id> sends it: every name under the folder's own name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind or tarfile.REGTYPE
            info.mode = 0o4755
            info.linkname = "/etc/passwd" if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    buf.seek(0)
    return buf


def test_a_docker_archive_comes_back_without_links_fifos_or_the_platforms_log(tmp_path):
    job = tmp_path / "jobs" / "j1"
    (job / "logs").mkdir(parents=True)
    (job / "logs" / "platform.log").write_text("server's\n")
    stream = _archive([("j1", tarfile.DIRTYPE, b""), ("j1/results", tarfile.DIRTYPE, b""), ("j1/results/out.txt", None, b"out\n"),
                       ("j1/results/link", tarfile.SYMTYPE, b""), ("j1/results/hard", tarfile.LNKTYPE, b""),
                       ("j1/results/fifo", tarfile.FIFOTYPE, b""), ("j1/logs/platform.log", None, b"forged\n"),
                       ("j1/job_info.json", None, b'{"job_id": "j1"}'), ("other/x", None, b"x"), ("j1/../escape", None, b"x")])
    dropped = extract_bounded(stream, job, "copying back", skip=SKIP, strip="j1")
    assert sorted(p.name for p in (job / "results").iterdir()) == ["out.txt"]
    assert not (job / "results" / "out.txt").stat().st_mode & 0o7000
    assert sorted(dropped) == ["results/fifo", "results/hard", "results/link"]
    assert (job / "logs" / "platform.log").read_text() == "server's\n"
    assert (job / "job_info.json").read_text() == '{"job_id": "j1"}'
    assert not (job / "other").exists() and not (tmp_path / "jobs" / "escape").exists()


def test_an_oversized_file_is_left_out_and_a_folder_over_its_bounds_fails_the_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(bounded, "MAX_FILE_BYTES", 4)
    dropped = extract_bounded(_archive([("big", None, b"0123456789"), ("small", None, b"ok")]), tmp_path, "copying back")
    assert dropped == ["big"] and (tmp_path / "small").read_text() == "ok" and not (tmp_path / "big").exists()
    monkeypatch.setattr(bounded, "MAX_FILES", 3)
    with pytest.raises(SyncFailed, match="copying back: the folder is over its bounds"):
        extract_bounded(_archive([(f"f{i}", None, b"x") for i in range(5)]), tmp_path, "copying back")
    assert extract_bounded(io.BytesIO(b"not a tar at all" * 64), tmp_path, "logs", tolerant=True) == []


def test_the_inputs_go_with_their_parent_folders_owned_by_root_and_never_a_link(tmp_path):
    root = tmp_path / "data"
    (root / "jobs" / "j1").mkdir(parents=True)
    (root / "jobs" / "j1" / "config.yaml").write_text("a: 1\n")
    (root / "jobs" / "j1" / "link").symlink_to("/etc/passwd")
    os.mkfifo(root / "jobs" / "j1" / "fifo")
    (root / "datasets" / "d1").mkdir(parents=True)
    (root / "datasets" / "d1" / "schema.json").write_text("{}")
    out = io.BytesIO()
    _pack(out, root, [root / "jobs" / "j1", root / "datasets" / "d1"])
    out.seek(0)
    members = {m.name: m for m in tarfile.open(fileobj=out)}
    assert sorted(members) == ["datasets", "datasets/d1", "datasets/d1/schema.json", "jobs", "jobs/j1", "jobs/j1/config.yaml"]
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


def test_a_data_local_jobs_run_waits_scheduled_far_ahead_in_awaiting_inputs():
    from api.runs import RunRequest
    from core.states import AWAITING_INPUTS, awaiting_inputs

    now = datetime(2026, 12, 5, tzinfo=timezone.utc)
    body = RunRequest(parameters={}, state=awaiting_inputs(now)).body()
    assert body["state"]["type"] == "SCHEDULED" and body["state"]["name"] == AWAITING_INPUTS
    assert datetime.fromisoformat(body["state"]["state_details"]["scheduled_time"]).year >= 2036
    assert "state" not in RunRequest(parameters={}).body()


def test_a_shared_host_starts_no_staging_and_keeps_prefects_first_state():
    from api.usecases.host_data import first_state

    assert first_state(Host(name="a")) is None
    assert first_state(Host(name="lap", data="local", docker_url="unix:///run/lap.sock"))["name"] == "AwaitingInputs"


def test_a_sweep_never_sends_its_trials_to_a_data_local_host(tmp_path, monkeypatch):
    """Trials are made by the sweep's flow, not the API's submit, so no one would stage their inputs."""
    import asyncio

    from api.errors import ApiError
    from api.usecases.sweeps import _check_hosts
    from core.hosts import HostsFile
    from flows.sweep import _data_local

    hosts = HostsFile(hosts=[Host(name="a"), Host(name="lap", data="local", docker_url="unix:///run/lap.sock")])
    with pytest.raises(ApiError, match="host 'lap' has data: local") as refused:
        asyncio.run(_check_hosts(None, hosts, ["lap"]))  # refused before any Prefect call
    assert refused.value.status_code == 400
    monkeypatch.setenv("OPEVA_HOSTS_FILE", str(_hosts(tmp_path, "  - name: a\n  - name: lap\n    data: local\n    docker_url: unix:///run/lap.sock\n")))
    assert _data_local() == {"lap"}


def test_a_dataset_build_is_refused_on_a_data_local_host():
    """A build writes datasets/<name> where it runs, and nothing copies it back: 400 naming the host."""
    from api.errors import ApiError
    from api.usecases.host_data import shared_only

    shared_only(Host(name="a"), "dataset builds")
    with pytest.raises(ApiError, match="host 'lap' has data: local: dataset builds run on hosts that share the data root"):
        shared_only(Host(name="lap", data="local", docker_url="unix:///run/lap.sock"), "dataset builds")
