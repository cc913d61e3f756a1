"""The process worker's fork server and launcher (deployments/forkserver.py, flows/fork_launch.py),
as real processes over a real unix socket: a run's output, exit code and signals pass through the
launcher as if it were the run; a killed launcher or server takes the run with it; no server means
Prefect's own engine command. The child here runs a small module instead of Prefect's engine
(``--run-module``); the worker's runs are exercised by the Slurm and process-pool e2e tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.fork_launch import SOCKET_ENV
from helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
RUN = '''
import os, signal, sys, time
print("hello", os.environ.get("WHO"), os.getcwd(), os.getpid(), os.getppid(), flush=True)
mode = os.environ.get("MODE")
if mode == "exit3":
    sys.exit(3)
if mode == "term":
    def stop(*_):
        print("got TERM", flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


@pytest.fixture
def server(tmp_path):
    (tmp_path / "runme.py").write_text(RUN)
    sock = tmp_path / "srv" / "sock"
    sock.parent.mkdir(mode=0o700)
    proc = subprocess.Popen([sys.executable, "-m", "deployments.forkserver", "--socket", str(sock), "--preload", "json", "--run-module", "runme"],
                            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    wait_for(lambda: sock.exists() or proc.poll() is not None, 30, 0.05, what="the fork server's socket")
    assert proc.poll() is None, "the fork server did not start"
    yield proc, sock, tmp_path
    proc.kill()
    proc.wait()


def launch(sock: Path, cwd: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), SOCKET_ENV: str(sock), "WHO": "alice", "MODE": mode}
    return subprocess.Popen([sys.executable, "-m", "flows.fork_launch"], cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(launcher: subprocess.Popen) -> list[str]:
    return launcher.stdout.readline().split()


def test_the_run_gets_the_launchers_output_environment_and_folder_and_its_exit_code_is_the_launchers(server):
    proc, sock, folder = server
    launcher = launch(sock, folder, "exit3")
    out, _ = launcher.communicate(timeout=30)
    word, who, cwd, pid, ppid = out.split()[:5]
    assert (word, who, cwd) == ("hello", "alice", str(folder))
    assert int(ppid) == proc.pid and int(pid) != launcher.pid  # forked by the server, not started by the launcher
    assert launcher.returncode == 3


def test_a_term_to_the_launcher_reaches_the_run_which_ends_its_own_way(server):
    _proc, sock, folder = server
    launcher = launch(sock, folder, "term")
    child = int(first_line(launcher)[3])
    assert launcher.stdout.readline().strip() == "ready"
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=30)
    assert "got TERM" in out and launcher.returncode == 7
    wait_for(lambda: not _alive(child), 10, 0.05, what="the run's process to end")


@pytest.mark.parametrize("killed", ["launcher", "server"])
def test_a_killed_launcher_or_server_takes_the_run_with_it(server, killed):
    proc, sock, folder = server
    launcher = launch(sock, folder, "hang")
    child = int(first_line(launcher)[3])
    (launcher if killed == "launcher" else proc).kill()
    _out, err = launcher.communicate(timeout=30)
    if killed == "server":
        assert launcher.returncode == 1 and "fork server went away" in err
    wait_for(lambda: not _alive(child), 10, 0.05, what=f"the run to die with its {killed}")


def test_without_a_server_the_run_starts_as_prefects_engine(tmp_path):
    launcher = launch(tmp_path / "none" / "sock", tmp_path, "exit3")
    _out, err = launcher.communicate(timeout=120)
    assert "fork server not used" in err and "No such file" in err
    assert launcher.returncode != 0 and "flow run" in err.lower()  # Prefect's engine itself: it has no flow run id to run
