"""core.job_io and core.job_limits: what the platform does with a job's hostile files and sizes.

The e2e attack suite (tests/e2e/test_attacks.py) runs the same attacks from inside a real
job container; these pin each rule on its own, in a temp folder.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import pytest

from core import job_io
from core.hosts import Host, job_limits
from core.job_limits import JobLimits, effective, parse_bytes
from core.limits import LimitExceeded


@pytest.fixture
def job(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path


def test_links_are_never_followed_anywhere_below_the_folder(job, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret"
    secret.write_text("PREFECT_API_AUTH_STRING=opeva:stolen\n")
    (job / "logs" / "a.log").symlink_to(secret)
    (job / "progress").symlink_to(secret.parent)  # a link in the middle of the path
    with pytest.raises(job_io.NotRegularFile):
        job_io.open_regular(job, "logs/a.log")
    with pytest.raises(job_io.NotRegularFile):
        job_io.open_regular(job, "progress/secret")
    assert job_io.read_json(job, "progress/secret") is None
    lines, _ = job_io.FileFollower(job, "logs/a.log").read_lines()
    assert len(lines) == 1 and "did not read" in lines[0] and "stolen" not in lines[0]


def test_fifos_and_devices_are_refused_without_blocking(job):
    os.mkfifo(job / "logs" / "fifo.log")
    (job / "logs" / "zero.log").symlink_to("/dev/zero")
    done = threading.Event()

    def read():
        for name in ("fifo.log", "zero.log"):
            with pytest.raises(job_io.NotRegularFile):
                job_io.open_regular(job, f"logs/{name}")
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "opening a FIFO blocked"


def test_one_huge_line_costs_one_chunk_of_memory(job):
    path = job / "logs" / "big.log"
    with open(path, "wb") as f:
        f.write(b"first\n")
        f.truncate(6 + (64 << 20))  # one 64 MiB line of NULs, sparse
        f.seek(0, os.SEEK_END)
        f.write(b"\nlast\n")
    follower = job_io.FileFollower(job, "logs/big.log")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lines, more = [], True
    while more:
        got, more = follower.read_lines(final=True)
        lines += got
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert lines[0] == "first" and lines[-1] == "last" and len(lines) == 3
    assert "line cut by the platform" in lines[1] and len(lines[1]) < job_io.MAX_LINE + 100
    assert "\x00" not in lines[1]  # control characters never reach Prefect's database
    assert grown_mib < 16, grown_mib


def test_platform_file_is_made_anew_over_a_link_a_fifo_or_a_job_file(job, tmp_path_factory):
    victim = tmp_path_factory.mktemp("other-user") / "config.yaml"
    victim.write_text("mine\n")
    target = job / "logs" / "platform.log"
    for plant in (lambda: target.symlink_to(victim), lambda: os.mkfifo(target)):
        plant()
        fd = job_io.open_platform_file(job, "logs/platform.log")
        os.write(fd, b"platform line\n")
        os.close(fd)
        assert victim.read_text() == "mine\n" and not target.is_symlink() and target.read_text() == "platform line\n"
        target.unlink()
    (job / "logs").rename(job / "logs.real")
    (job / "logs").symlink_to(victim.parent)  # the folder itself replaced by a link
    os.close(job_io.open_platform_file(job, "logs/platform.log"))
    assert not (victim.parent / "platform.log").exists() and (job / "logs").is_dir() and not (job / "logs").is_symlink()


def test_chown_tree_changes_links_not_their_targets(job, tmp_path_factory):
    assert os.geteuid() == 0, "runs as root, as CI does (the supervisor chowns as root)"
    victim = tmp_path_factory.mktemp("host") / "docker.sock"
    victim.write_text("")
    (job / "logs" / "sock").symlink_to(victim)
    job_io.chown_tree(job, 65534, 65534)
    assert victim.stat().st_uid == 0 and os.lstat(job / "logs" / "sock").st_uid == 65534


def test_folder_usage_counts_blocks_not_sparse_sizes_and_no_links(job):
    with open(job / "sparse", "wb") as f:
        f.truncate(1 << 30)
    (job / "full").write_bytes(b"x" * (1 << 20))
    (job / "root").symlink_to("/")
    used, entries = job_io.folder_usage(job)
    assert (1 << 20) <= used < (3 << 20) and entries == 4


def test_limits_a_job_may_only_lower_and_absurd_values_are_refused():
    host = Host(name="local", limits=JobLimits(pids=256, memory="1g"))
    assert job_limits(host, {"mem_limit": "256m", "limits": {"pids": 64}}).model_dump()["pids"] == 64
    for bad in ({"mem_limit": "10000000000000000000000000000"}, {"mem_limit": "2g"}, {"limits": {"pids": 100000}}):
        with pytest.raises(LimitExceeded):
            job_limits(host, bad, strict=True)
    assert job_limits(host, {"mem_limit": "2g"}).memory == 1 << 30  # a run made by hand: the ceiling
    with pytest.raises(LimitExceeded):
        parse_bytes("5p")
    assert effective(JobLimits(), None).wall_seconds is None, "no time limit unless the host or the job sets one"
    timed = Host(name="t", limits=JobLimits(wall_seconds=3600))
    assert job_limits(timed, {"limits": {"wall_seconds": 60}}).wall_seconds == 60
    with pytest.raises(LimitExceeded, match="wall_seconds"):
        job_limits(timed, {"limits": {"wall_seconds": 7200}}, strict=True)
    eff = effective(JobLimits(), None)
    kwargs = eff.create_kwargs()
    assert kwargs["pids_limit"] == 512 and kwargs["memswap_limit"] == kwargs["mem_limit"] and kwargs["ulimits"][0]["Soft"] == 4096


def test_each_child_gets_only_the_secrets_of_its_service():
    from core.child_env import child_env

    env = {"PATH": "/bin", "PREFECT_API_URL": "http://127.0.0.1:1/api", "PREFECT_API_AUTH_STRING": "opeva:pw",
           "PREFECT_SERVER_API_AUTH_STRING": "opeva:pw", "OPEVA_API_TOKENS": "alice:t", "MONGO_URI": "mongodb://u:p@h",
           "OPEVA_DATA_DIR": "/d", "AWS_SECRET_ACCESS_KEY": "x", "RANDOM_THING": "y", "OPEVA_API_TOKENS_FILE": "/etc/t"}
    mongo = child_env("mongo", env)
    assert set(mongo) == {"PATH", "PREFECT_API_URL", "OPEVA_DATA_DIR", "OPEVA_API_TOKENS_FILE"}
    worker = child_env("worker-local-host", env)
    assert worker["PREFECT_API_AUTH_STRING"] == "opeva:pw" and "OPEVA_API_TOKENS" not in worker and "MONGO_URI" not in worker
    api = child_env("api", env)
    assert {"OPEVA_API_TOKENS", "MONGO_URI", "PREFECT_API_AUTH_STRING"} <= set(api) and "PREFECT_SERVER_API_AUTH_STRING" not in api
    assert "PREFECT_SERVER_API_AUTH_STRING" in child_env("prefect-server", env) and "OPEVA_API_TOKENS" not in child_env("prefect-server", env)


def test_mirror_keeps_every_line_of_a_flood_caps_the_log_and_stops_a_disk_filler(tmp_path):
    """flows.supervise.mirror on a real thread-fed source (no Prefect): all 20k lines reach the
    logger (grouped) and platform.log; a log file linked out is reported; the cap holds."""
    import logging
    import queue

    from core.layout import DataRoot
    from flows.supervise import MirrorLimits, mirror

    class Source:
        def __init__(self, n: int) -> None:
            self.lines: queue.Queue = queue.Queue(maxsize=2000)
            self.exit_code, self._ended = None, threading.Event()
            threading.Thread(target=self._feed, args=(n,), daemon=True).start()

        def _feed(self, n: int) -> None:
            for i in range(n):
                self.lines.put(f"line {i}")
            self.lines.put(None)
            self.exit_code = 0
            self._ended.set()

        @property
        def ended(self) -> bool:
            return self._ended.is_set()

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    job = DataRoot(tmp_path).job("0189dbbd-f06a-4976-82f9-e79a884d9a28").create()
    job.simulator_log_file.symlink_to("/proc/self/environ")
    keep, logger = Keep(), logging.getLogger("test.mirror")
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    run = mirror(Source(20_000), job=job, logger=logger)
    lines = [m for msg in keep.messages for m in msg.splitlines() if m.startswith("line ")]
    assert lines == [f"line {i}" for i in range(20_000)] and len(keep.messages) < 2_000
    assert run.returncode == 0 and run.lines >= 20_000 and not run.log_capped
    assert job.log_file.read_text().count("\nline ") == 19_999 and "did not read" in job.log_file.read_text()

    keep.messages.clear()
    capped = mirror(Source(5_000), job=job, logger=logger, limits=MirrorLimits(log_bytes=10_000))
    assert capped.log_capped and capped.bytes < 10_500 and any("log cap reached" in m for m in keep.messages)

    (job.dir / "fill.bin").write_bytes(b"x" * (3 << 20))

    class Endless(Source):
        def _feed(self, n: int) -> None:
            pass

    filled = mirror(Endless(0), job=job, logger=logger, limits=MirrorLimits(disk_bytes=1 << 20))
    assert filled.error_code == "disk_limit" and "disk limit" in filled.error_detail

    started = time.monotonic()
    late = mirror(Endless(0), job=job, logger=logger, limits=MirrorLimits(wall_seconds=1))
    assert late.error_code == "timed_out" and "time limit of 1 s" in late.error_detail
    assert 1 <= time.monotonic() - started < 10, "stopped at its time limit, by the watchdog's next check"
