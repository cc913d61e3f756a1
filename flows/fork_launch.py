"""A process-pool run's command: the flow run's engine, forked from the worker's warm fork server.

Why: a process worker starts each flow run as a new Python that imports Prefect and the flow's
module again (about 1.7 CPU-seconds here before any work; Prefect's default command adds a second
such interpreter, its workspace supervisor). On a Slurm submit node that is also a compute node,
that import was most of the platform's cost per job (docs/slurm.md, "Many short jobs"). The worker
(deployments/process_worker.py) keeps one fork server with Prefect's engine and our flows already
imported (deployments/forkserver.py); this launcher, plain Python without Prefect, asks it for a
child, hands over its stdin/stdout/stderr, environment and folder, and stands in for that child:

- Prefect's runner sees this process (its pid, its output, its exit code) as the flow run's;
- a signal to this process (the runner's SIGTERM on cancel) is passed on to the child; if this
  process is killed, the fork server kills the child's process group;
- the child's exit status becomes this process's (a signal is raised again on itself).

When the fork server cannot be reached, the run starts as Prefect's own ``python -m prefect.engine``
in this process (exec): never a lost run, only a slower start.

    command: <python> -m flows.fork_launch          (set by deployments/process_worker.py)
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys

SOCKET_ENV = "OPEVA_FORKSERVER_SOCKET"
MAX_LINE = 64


def _fallback(why: str) -> None:
    print(f"fork server not used ({why}): starting the flow engine in a new Python", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine"])


def _request(conn: socket.socket) -> None:
    body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
    fds = array.array("i", [0, 1, 2])
    conn.sendmsg([len(body).to_bytes(4, "big"), body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])


def _read_line(conn: socket.socket, buffer: bytearray) -> str | None:
    """One line from the fork server (``pid N`` or ``exit STATUS``); None when it closed."""
    while b"\n" not in buffer:
        if len(buffer) > MAX_LINE:
            return None
        try:
            chunk = conn.recv(MAX_LINE)
        except InterruptedError:
            continue
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode(errors="replace")


def _exit_like(status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: end the same way, as Prefect's runner would have seen the engine end
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def main() -> None:
    path = os.environ.get(SOCKET_ENV)
    if not path:
        _fallback(f"{SOCKET_ENV} is not set")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        _request(conn)
    except OSError as exc:
        conn.close()
        _fallback(f"{path}: {exc}")
    buffer = bytearray()
    first = _read_line(conn, buffer)
    if not first or not first.startswith("pid "):
        _fallback(f"no child from {path}")  # nothing was started: the engine runs here instead
    child = int(first.split()[1])

    def forward(signum: int, _frame: object) -> None:
        """To the engine alone, as Prefect's runner signals its engine (an ssh copy it runs is not cut
        short by a stop); SIGKILL to its whole group."""
        try:
            (os.killpg if signum == signal.SIGKILL else os.kill)(child, signum)
        except (ProcessLookupError, PermissionError):
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    done = _read_line(conn, buffer)
    if done is None or not done.startswith("exit "):
        print(f"the fork server went away while flow engine {child} ran: it is stopped with it", file=sys.stderr, flush=True)
        forward(signal.SIGKILL, None)
        sys.exit(1)
    _exit_like(int(done.split()[1]))


if __name__ == "__main__":
    main()
