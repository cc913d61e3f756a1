"""Adversarial suite (issue 21, the job side): each attack runs from inside a real job
container (a ``command`` job on the runtime image, as uid 65534), through the real API,
against the real Prefect server, worker and supervisor. Each test asserts that the attack
fails AND that a normal job submitted during it still finishes (the platform keeps serving).

Both modes (issue 21, "Done when"): auth off + SQLite (the e2e session's platform) and
bearer tokens + PostgreSQL (a platform of this module's own, tests/e2e/attack_modes.py).
The attacks whose outcome depends on the mode run in both: the secrets a job hunts (with
PostgreSQL its password, with tokens the API tokens), the services it probes (PostgreSQL's
port), the log's completeness (records go through Prefect's database) and the refusal of
limits (a runner's token). The attacks on the engine and the supervisor alone (process,
memory, disk and open-file limits, FIFO and flood files, the retry through a linked
platform.log) run in the first mode: the second costs about 3.7 minutes (its platform
starts in ~80 s on a loaded 2-core machine, then four tests).
With tokens the attacker is alice (a runner, not an admin) and the normal job is bob's.

docs/security.md lists each promise and the test here that keeps it.
"""

from __future__ import annotations

import re
import threading
import time

import docker
import pytest

from core.settings import PlatformSettings
from flows.sandbox import oom_event_logged

from attack_modes import MODES, Target, open_sqlite, tokens_postgres
from helpers import wait_for
from test_sim_images import wait_status

pytestmark = pytest.mark.usefixtures("needs_docker")
FINAL = {"finished", "failed", "stopped", "canceled"}
FIRST_MODE_ONLY = pytest.mark.parametrize("target", MODES[:1], indirect=True)


@pytest.fixture(scope="module", params=MODES)
def target(request, docker_ready) -> Target:
    if request.param == "open-sqlite":
        yield open_sqlite(request.getfixturevalue("platform"))
    else:
        with tokens_postgres() as started:
            yield started


@pytest.fixture
def api(target: Target):
    """The attacker's client in this mode (tests/conftest.py's ``api`` is the session platform's)."""
    with target.client() as client:
        yield client


@pytest.fixture
def storage(target: Target):
    return target.storage


def run_job(api, script: str, *, resources: dict | None = None, retries: int = 0, name: str = "attack") -> str:
    """A ``command`` job: a Python script run by the runtime image's python, as the job's uid."""
    body = {"config": {"experiment": {"name": "attack", "run_name": name}}, "command": ["python3", "-c", script],
            "target_host": "local", "job_name": name, "retries": retries}
    if resources:
        body["resources"] = resources
    r = api.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def final_state(api, job_id: str, timeout: float = 420) -> dict:
    return wait_status(api, job_id, FINAL, timeout=timeout)


def normal_job(target: Target) -> str:
    """A normal job submitted while the attack runs (the host runs 4 at once); with tokens, bob's."""
    with target.client("bob" if target.token else None) as other:
        return run_job(other, "print('[INFO] a normal job beside an attack')", name="normal")


def a_normal_job_still_finishes(api, job_id: str) -> None:
    final = final_state(api, job_id)
    assert final["status"] == "finished", final
    assert api.get("/health").status_code == 200


def logs_text(api, job_id: str) -> str:
    return api.get(f"/logs/{job_id}", params={"follow": "false"}).text


class SupervisorMemory(threading.Thread):
    """Peak memory of the job's supervisor container while it runs (the engine's stats)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(daemon=True)
        self.job_id, self.peak, self.samples = job_id, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = docker.from_env()
        while not self.stop.is_set():
            sims = client.containers.list(ignore_removed=True, filters={"label": [f"opeva.job_id={self.job_id}", "opeva.role=simulator"]})
            if sims:
                try:
                    stats = client.api.stats(sims[0].labels["opeva.supervisor"], stream=False, one_shot=True)
                    mem = stats["memory_stats"]  # as `docker stats` shows it: usage less the inactive page cache
                    self.peak = max(self.peak, int(mem.get("usage", 0)) - int((mem.get("stats") or {}).get("inactive_file", 0)))
                    self.samples += 1
                except Exception:
                    pass
            time.sleep(0.3)


# -- 1. links to the supervisor's secrets ------------------------------------------------

STEAL = r"""
import glob, os, sys, time
secrets = [s[::-1] for s in __SECRETS__]  # given reversed: the command itself is logged
log, prog = os.environ["OPEVA_LOG_FILE"], os.environ["OPEVA_PROGRESS_FILE"]
for p in (log, prog):
    if os.path.lexists(p): os.unlink(p)
os.symlink("/proc/1/environ", log)                     # the supervisor's environment, as its log
os.symlink("/proc/1/environ", prog)                    # and as its progress
read = []
for path in glob.glob("/proc/[0-9]*/environ"):         # every process it can see (shared PID namespace)
    try: open(path, "rb").read(); read.append(path)
    except OSError: pass
found = []
for root, dirs, files in os.walk("/data"):             # every file of its mounts
    for f in files:
        try:
            with open(os.path.join(root, f), "rb") as fh:
                head = fh.read(1 << 20)
                if any(s.encode() in head for s in secrets): found.append(os.path.join(root, f))
        except OSError: pass
print("READABLE_ENVIRON", [p for p in read if not p.startswith(f"/proc/{os.getpid()}/")])
print("FILES_WITH_SECRET", found)
time.sleep(3)
"""


def test_a_link_to_the_supervisors_environment_leaks_nothing(api, storage, target):
    """Attack 1 (and 2's secrets: with PostgreSQL its password, with tokens every API token)."""
    job_id = run_job(api, STEAL.replace("__SECRETS__", repr([s[::-1] for s in target.secrets])), name="steal")
    normal = normal_job(target)
    final = final_state(api, job_id)
    assert final["status"] == "finished", final
    text = logs_text(api, job_id)
    assert "READABLE_ENVIRON []" in text and "FILES_WITH_SECRET []" in text, text[-2000:]
    assert "did not read" in text  # the link is reported, not followed
    for where in (text, api.get(f"/file-logs/{job_id}", params={"follow": "false"}).text,
                  (storage.job(job_id).log_file).read_text(errors="replace"), str(api.get(f"/progress/{job_id}").json())):
        assert not [s for s in target.secrets if s in where] and "PREFECT_API" not in where
    a_normal_job_still_finishes(api, normal)


# -- 4. a symlinked platform.log on a retry ----------------------------------------------

RETRY = r"""
import os, sys
job = os.environ["OPEVA_JOB_DIR"]
if os.path.exists(f"{job}/.tried"):
    print("[INFO] second attempt"); sys.exit(0)
open(f"{job}/.tried", "w").close()
plat = f"{job}/logs/platform.log"
os.unlink(plat)
os.symlink(VICTIM, plat)                                # the merged log, now a link to another user's file
os.mkfifo(f"{job}/results/result.json")                 # and a FIFO as its result
sys.exit(3)
"""


@FIRST_MODE_ONLY  # the supervisor's file handling alone: the same in both modes
def test_a_symlinked_platform_log_is_not_written_through_on_retry(api, storage, target):
    victim = storage.configs_dir / "victim-of-a-job.yaml"
    victim.write_text("owner: bob\n")
    job_id = run_job(api, RETRY.replace("VICTIM", repr(str(victim))), retries=1, name="retry-link")
    normal = normal_job(target)
    final = final_state(api, job_id)
    assert final["status"] == "finished", final
    assert victim.read_text() == "owner: bob\n"
    log = storage.job(job_id).log_file
    assert not log.is_symlink() and log.stat().st_uid == 0 and "second attempt" in log.read_text()
    assert api.get(f"/result/{job_id}").status_code == 403  # a FIFO result is refused at once, not a hang
    a_normal_job_still_finishes(api, normal)


# -- 7. huge, endless and blocking logs -----------------------------------------------------

FLOOD = r"""
import os, sys, time
log = os.environ["OPEVA_LOG_FILE"]
os.mkfifo(log); time.sleep(2.5); os.unlink(log)          # a FIFO: a reader that opens it hangs
os.symlink("/dev/zero", log); time.sleep(2.5); os.unlink(log)   # endless
with open(log, "wb") as f:                               # 1 GiB, sparse: one line of NULs
    f.truncate(1 << 30); f.seek(0, 2); f.write(b"\n[INFO] after the sparse " + b"gigabyte\n")  # markers made at run time:
sys.stdout.write("y" * (64 << 20) + "\n"); sys.stdout.flush()   # one 64 MiB line on stdout
print("[INFO] flood %s" % "done", flush=True)                  # the command itself is logged
time.sleep(3)
"""


@FIRST_MODE_ONLY
def test_fifo_dev_zero_sparse_gigabyte_and_a_64_mib_line_keep_the_supervisor_small(api, storage, target):
    job_id = run_job(api, FLOOD, name="flood", resources={"log_bytes": 64 << 20})
    normal = normal_job(target)
    memory = SupervisorMemory(job_id)
    memory.start()
    final = final_state(api, job_id)
    memory.stop.set()
    assert final["status"] == "finished", final
    text = logs_text(api, job_id)
    assert "flood done" in text and "line cut by the platform" in text and "did not read" in text
    assert "over the log cap" in text and "after the sparse gigabyte" not in text  # the file is read up to the cap only
    assert memory.samples > 3 and memory.peak < 200 << 20, (memory.samples, memory.peak >> 20)
    r = api.get(f"/file-logs/{job_id}", params={"follow": "false"})
    assert r.status_code == 200 and len(r.content) < 20 << 20
    a_normal_job_still_finishes(api, normal)


# -- 6. processes, memory, disk, open files -----------------------------------------------

FORK_BOMB = r"""
import os, time
while True:
    try:
        if os.fork() == 0:
            time.sleep(300); os._exit(0)
    except OSError:
        time.sleep(0.05)
"""
MEMORY_HOG = "x = []\nwhile True: x.append(bytearray(8 << 20))"
DISK_FILLER = r"""
import os, time
with open(os.path.join(os.environ["OPEVA_JOB_DIR"], "fill.bin"), "wb") as f:
    while True:
        f.write(os.urandom(1 << 20)); f.flush(); time.sleep(0.02)
"""
FD_HOG = r"""
import os
fds = []
try:
    while True: fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    print("[INFO] %s %d files, then %s" % ("opened", len(fds), exc.strerror))
"""


@pytest.mark.parametrize(
    "script,resources,code",
    [
        (FORK_BOMB, {"pids": 64}, "pids_limit"),
        (MEMORY_HOG, {"memory": "96m"}, "out_of_memory"),
        (DISK_FILLER, {"disk_bytes": 32 << 20}, "disk_limit"),
    ],
    ids=["fork-bomb", "memory-hog", "disk-filler"],
)
@FIRST_MODE_ONLY
def test_a_job_at_its_limit_fails_with_its_error_code(api, target, script, resources, code):
    job_id = run_job(api, script, resources=resources, name=code)
    normal = normal_job(target)
    final = final_state(api, job_id)
    message = final["prefect_state"]["message"] or ""
    assert final["status"] == "failed" and f"error_code={code}" in message, final
    assert api.get(f"/job-info/{job_id}").json().get("error_code") == code
    assert not docker.from_env().containers.list(ignore_removed=True, filters={"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]})
    a_normal_job_still_finishes(api, normal)
    # the host stays up: its worker process, its engine, and the API's view of it
    assert all(s.proc.poll() is None for s in target.platform.services), [s.name for s in target.platform.services if s.proc.poll() is not None]
    assert docker.from_env().ping()
    assert api.get("/hosts").json()["hosts"]["local"]["online"] is True


@pytest.mark.usefixtures("needs_docker")
def test_an_oom_kill_is_told_from_a_kill_even_without_the_engines_mark():
    """Docker 20.10 may leave State.OOMKilled false when containerd's OOM event comes after the exit
    (CI saw it once); the supervisor then reads the engine's ``oom`` event. A container killed with
    SIGKILL ends with the same 137 and must not be called out of memory."""
    client = docker.from_env()
    image = PlatformSettings().runtime_image
    runs = {"hog": ["python3", "-c", MEMORY_HOG], "killed": ["sleep", "60"]}
    try:
        for name, command in runs.items():
            c = client.containers.run(image, command, detach=True, network_mode="none", mem_limit="96m", memswap_limit="96m",
                                      labels={"opeva.test": "oom-event"})
            if name == "killed":
                c.kill()
            assert c.wait(timeout=60)["StatusCode"] == 137, name
            runs[name] = oom_event_logged(client, c.id, client.api.inspect_container(c.id)["State"]["StartedAt"], grace=0.5)
    finally:
        for c in client.containers.list(ignore_removed=True, all=True, filters={"label": "opeva.test=oom-event"}):
            c.remove(force=True)
    assert runs == {"hog": True, "killed": False}


@FIRST_MODE_ONLY
def test_open_files_stop_at_the_jobs_limit(api, target):
    job_id = run_job(api, FD_HOG, resources={"nofile": 256}, name="fd-hog")
    normal = normal_job(target)
    assert final_state(api, job_id)["status"] == "finished"
    opened = [int(m.group(1)) for m in re.finditer(r"opened (\d+) files", logs_text(api, job_id))]
    assert len(opened) == 1 and 200 < opened[0] < 256, opened
    a_normal_job_still_finishes(api, normal)


def test_limits_over_the_hosts_and_absurd_values_are_refused(api):
    body = {"config": {"experiment": {"name": "x", "run_name": "y"}}, "command": ["true"]}
    for resources in ({"memory": "1" + "0" * 28}, {"memory": "64g"}, {"pids": 10**6}, {"disk_bytes": 1 << 50}):
        r = api.post("/run-simulation", json={**body, "resources": resources})
        assert r.status_code == 422 and "detail" in r.json(), (resources, r.status_code, r.text)


# -- 7b. every line at the final state --------------------------------------------------------

def test_a_200k_line_log_is_complete_when_the_job_is_final(api, target):
    job_id = run_job(api, "import sys\nw = sys.stdout.write\nfor i in range(200000): w(f'line {i}\\n')", name="lines")
    normal = normal_job(target)
    final = final_state(api, job_id)
    assert final["status"] == "finished", final
    # what a client reads at the final state: /logs (records of up to 256 lines, flows/supervise.py)
    lines = [m for m in logs_text(api, job_id).splitlines() if m.startswith("line ")]
    assert len(lines) == 200_000 and lines[-1] == "line 199999", len(lines)
    a_normal_job_still_finishes(api, normal)


# -- 3 and 5. the platform's loopback services (passes once job containers leave the host network) -------

NETWORK = r"""
import socket, time
reached = []
for name, port in PORTS.items():                         # Prefect, MongoDB, the API on the host's loopback
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close(); reached.append(name)
    except OSError:
        pass
print("[INFO] %s %s" % ("reached:", sorted(reached)), flush=True)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", BIND)); srv.listen(8)             # a fake Prefect waiting for clients' credentials
time.sleep(8)
"""


def test_a_job_reaches_no_platform_service_and_its_listeners_are_not_on_the_hosts_loopback(api, target):
    """Attacks 3 (bind Prefect's port after a restart), 5 (MongoDB open to jobs) and, with
    PostgreSQL, 2 from inside a job (its port). Kept by the job containers' own network (an
    internal Docker network, flows/job_network.py); on the host network this test fails."""
    import socket

    from deployments.platform import free_port

    bind = free_port()
    ports = target.ports
    job_id = run_job(api, NETWORK.replace("PORTS", repr(ports)).replace("BIND", str(bind)), name="network")
    normal = normal_job(target)
    wait_for(lambda: "reached:" in logs_text(api, job_id).replace("\"reached:\"", ""), 420, what="the job's probe")
    time.sleep(1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", bind), timeout=2).close()
    assert final_state(api, job_id)["status"] == "finished"
    assert re.search(r"reached: \[\]", logs_text(api, job_id)), logs_text(api, job_id)[-1500:]
    a_normal_job_still_finishes(api, normal)
