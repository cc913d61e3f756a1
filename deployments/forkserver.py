"""A process worker's fork server: Prefect's engine and our flows imported once, a child per run.

The worker (deployments/process_worker.py) starts it; each run's launcher (flows/fork_launch.py)
connects to its unix socket and sends its environment, folder and stdin/stdout/stderr. The server
forks; the child takes them over and becomes ``python -m prefect.engine`` with Prefect's settings
read again from that environment. The server answers ``pid N``, later ``exit STATUS``.

Rules that keep a run's process tree what Prefect's own command would give:
- the child leads its own process group: the launcher passes signals to it;
- a child whose launcher is gone (killed by Prefect's runner) is killed, group and all;
- a child dies with this server (PR_SET_PDEATHSIG), so a worker killed with its group (``make up``
  stopped) takes its runs' engines with it, as before;
- SIGTERM and SIGINT to this server are ignored: the launchers pass them to their own children,
  and the worker's stop ends this server by closing the socket (or by SIGKILL).

Single-threaded, by design: a fork copies only the calling thread, so nothing here may start a
thread before forking (importing Prefect starts none; the engine starts its own in the child).

    python -m deployments.forkserver --socket /path/to/sock [--preload MODULE ...]
"""

from __future__ import annotations

import argparse
import array
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
from dataclasses import dataclass

MAX_REQUEST = 4 * 1024 * 1024  # an environment and a path: far below this
PR_SET_PDEATHSIG = 1
# Prefect's modules only: our own are imported by each run, so a module-level setting read from the
# run's environment (core/, flows/) is the run's, never the server's
# (not prefect.engine itself: the child runs it as __main__, and runpy warns about a module imported twice)
PRELOAD = ("prefect.flow_engine", "prefect._internal.control_listener", "prefect.artifacts", "prefect.runtime", "prefect.logging.handlers",
           "prefect.client.orchestration")


@dataclass
class Run:
    conn: socket.socket
    pid: int


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """The launcher's request: a 4-byte length, its JSON, and three file descriptors."""
    conn.settimeout(10)
    fds = array.array("i")
    head, ancillary, _flags, _addr = conn.recvmsg(4, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(head) != 4 or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request is a length, a body and three file descriptors")
    size = int.from_bytes(head, "big")
    if size > MAX_REQUEST:
        raise ValueError(f"request of {size} bytes")
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("request cut short")
        body.extend(chunk)
    conn.settimeout(None)
    return json.loads(body), list(fds)


def _become_engine(request: dict, fds: list[int], parent: int, module: str) -> None:
    """In the child: take the launcher's stdio, environment and folder, then run ``module`` (Prefect's engine)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the server died before the line above
            os._exit(1)
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        os.chdir(request["cwd"])
        if "prefect.context" in sys.modules:
            sys.modules["prefect.context"].refresh_global_settings_context()  # this run's settings, not the server's
        sys.argv = [sys.argv[0]]
        sys.path.insert(0, request["cwd"])
    except BaseException as exc:  # noqa: BLE001 — the child must never return into the server's loop
        print(f"fork server: could not prepare the run's process: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    import runpy

    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    else:
        code = 0
    sys.exit(code)  # a normal interpreter exit, so Prefect's log shipper flushes


class Server:
    def __init__(self, path: str, module: str = "prefect.engine") -> None:
        self.path = path
        self.module = module
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            if os.path.exists(path):
                os.unlink(path)
            self.listener.bind(path)
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        self.runs: dict[int, Run] = {}  # pid -> run
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        parent = os.getppid()
        print(f"fork server ready on {self.path} (pid {os.getpid()})", flush=True)
        while self.listener is not None or self.runs:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept" and self.listener is not None:
                    self._accept()
                elif key.data == "wake":
                    self._drain_wake()
                elif isinstance(key.data, int):
                    self._launcher_readable(key.data)
            self._reap()
            if self.listener is not None and os.getppid() != parent:  # the worker is gone: serve no one new
                self._close_listener()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError) as exc:
            print(f"fork server: bad request: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            for run in self.runs.values():
                run.conn.close()
            conn.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            _become_engine(request, fds, me, self.module)
        for fd in fds:
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # here too, so the launcher can signal the group at once
        except (PermissionError, ProcessLookupError):
            pass
        self.runs[pid] = Run(conn, pid)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        self._send(conn, f"pid {pid}\n")

    def _send(self, conn: socket.socket, line: str) -> None:
        try:
            conn.sendall(line.encode())
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _launcher_readable(self, pid: int) -> None:
        """A launcher never writes after its request: readable means it is gone; its child goes too."""
        run = self.runs.get(pid)
        if run is None:
            return
        try:
            data = run.conn.recv(64)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(run.conn)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            try:
                self.selector.unregister(run.conn)
            except (KeyError, ValueError):
                pass
            self._send(run.conn, f"exit {status}\n")
            run.conn.close()

    def _close_listener(self) -> None:
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        for remove in (os.unlink, os.rmdir):  # the socket, then its private folder (deployments/process_worker.py)
            try:
                remove(self.path if remove is os.unlink else os.path.dirname(self.path))
            except OSError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--preload", action="append", default=None, help=f"modules to import first (default: {', '.join(PRELOAD)})")
    parser.add_argument("--run-module", default="prefect.engine", help="what each child runs as __main__ (tests: a small module)")
    args = parser.parse_args()
    import importlib

    for module in args.preload or PRELOAD:
        importlib.import_module(module)
    if not args.preload:  # Prefect's engine runs here: its clients share one TLS context (flows/client_tls.py)
        from flows.client_tls import install

        install()
    Server(args.socket, args.run_module).serve()


if __name__ == "__main__":
    main()
