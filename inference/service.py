"""``python -m inference.service``: the inference service a target runs (GET /health,
POST /admin/load, POST /act), on a TCP port or a Unix socket.

Why a threaded standard-library server: a load reads and checks a bundle in its own request
thread while the other threads keep answering ``/act`` with the policy already loaded; the new
policy replaces the old one by one reference assignment when it is whole, so no request ever sees
half a bundle or no bundle (a switch drops nothing). Standard library only: the image needs no
web framework and the process starts fast. ``/admin/load`` only reads under ``--bundle-root``
(the bundle store, mounted read-only), whatever path it is given.

``--remember FILE``: each successful load is written there (manifest, artifacts folder, bundle
id; atomically), and a service started with that file present loads that bundle again before it
answers. Why: a target that dies is restarted by ``make up``'s supervisor with the same command;
without this it came back serving nothing until someone switched it again. The file lives in the
target's own socket folder, which ``make up`` empties at its start, so a fresh platform still
starts with no bundle loaded (docs/inference.md). What the file names goes through the same
checks as a ``POST /admin/load`` (under the bundle root, digests): a forged file loads nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from inference.policy import Policy, PolicyError, load_policy

MAX_BODY = 4 << 20  # 4 MiB: thousands of agents' observations
MAX_REMEMBERED = 64 << 10  # the remembered load is three short fields


class Serving:
    """What the service holds: the current policy (one reference, swapped whole) and the last load."""

    def __init__(self, bundle_root: Path, remember: Path | None = None) -> None:
        self.bundle_root = bundle_root.resolve()
        self.remember = remember
        self.policy: Policy | None = None
        self.loaded_at: str | None = None
        self.last_load: dict[str, Any] | None = None
        self.loading: str | None = None
        self.load_lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        p = self.policy
        return {
            "status": "ok", "configured": p is not None, "manifest_path": p.manifest_path if p else None,
            "bundle_id": p.bundle_id if p else None, "agents": len(p.agents) if p else 0,
            "observation_dimensions": [a.n_obs for a in p.agents] if p else [],
            "action_dimensions": [a.n_act for a in p.agents] if p else [],
            "loaded_at": self.loaded_at, "loading": self.loading, "last_load": self.last_load,
        }

    def _under_root(self, value: Any, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} must be a path under {self.bundle_root}")
        path = Path(value)
        if not path.is_absolute():
            path = self.bundle_root / path
        resolved = path.resolve()
        if resolved != self.bundle_root and self.bundle_root not in resolved.parents:
            raise ValueError(f"{what} {value!r} is outside the bundle root {self.bundle_root}")
        return resolved

    def load(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Load, check and swap in a bundle; the old one serves until then and stays on error."""
        try:
            manifest = self._under_root(body.get("manifest_path"), "manifest_path")
            artifacts = self._under_root(body.get("artifacts_dir") or str(manifest.parent), "artifacts_dir")
        except ValueError as exc:
            return 400, {"detail": str(exc)}
        bundle_id = body.get("bundle_id") or artifacts.name
        if not isinstance(bundle_id, str) or len(bundle_id) > 128:
            return 400, {"detail": "bundle_id must be a short string"}
        if not self.load_lock.acquire(blocking=False):
            return 409, {"detail": f"a load of {self.loading} is under way; try again when it is done"}
        started = time.monotonic()
        try:
            self.loading = bundle_id
            try:
                policy = load_policy(manifest, artifacts, bundle_id)
            except (PolicyError, OSError) as exc:
                self.last_load = {"status": "failed", "bundle_id": bundle_id, "manifest_path": str(manifest), "error": str(exc)}
                log(f"load of {bundle_id} failed: {exc}; still serving {self.policy.bundle_id if self.policy else 'nothing'}")
                return 422, {"detail": f"bundle {bundle_id} cannot be loaded: {exc}"}
            previous = self.policy.bundle_id if self.policy else None
            self.policy, self.loaded_at = policy, datetime.now(UTC).isoformat()  # the swap: one assignment
            self.last_load = {"status": "loaded", "bundle_id": bundle_id, "previous_bundle_id": previous,
                              "manifest_path": str(manifest), "artifacts_dir": str(artifacts), "agents": len(policy.agents),
                              "load_seconds": round(time.monotonic() - started, 4), "loaded_at": self.loaded_at}
            log(f"serving bundle {bundle_id} ({len(policy.agents)} agents) instead of {previous or 'nothing'}")
            self._write_remembered({"manifest_path": str(manifest), "artifacts_dir": str(artifacts), "bundle_id": bundle_id})
            return 200, self.last_load
        finally:
            self.loading = None
            self.load_lock.release()

    def _write_remembered(self, load: dict[str, str]) -> None:
        if self.remember is None:
            return
        tmp = self.remember.with_name(f".{self.remember.name}.tmp")
        try:
            tmp.write_text(json.dumps(load))
            os.replace(tmp, self.remember)
        except OSError as exc:  # serving goes on; only a restart would come back empty
            log(f"could not remember the load in {self.remember}: {exc}")

    def reload_remembered(self) -> None:
        """Load the bundle of the last successful load before a restart, if the file names one."""
        if self.remember is None:
            return
        try:
            fd = os.open(self.remember, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            log(f"not reloading: {self.remember} cannot be opened ({exc})")
            return
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_REMEMBERED + 1) if os.fstat(f.fileno()).st_mode & 0o170000 == 0o100000 else b""
        try:
            body = json.loads(raw) if 0 < len(raw) <= MAX_REMEMBERED else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log(f"not reloading: {self.remember} is not a remembered load")
            return
        log(f"restarted: loading bundle {str(body.get('bundle_id'))[:128]} again")
        status, answer = self.load({k: body.get(k) for k in ("manifest_path", "artifacts_dir", "bundle_id")})
        if status != 200:
            log(f"reload failed ({status}): {answer.get('detail')}")

    def act(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        policy = self.policy  # one read: the whole request uses one bundle
        if policy is None:
            return 409, {"detail": "no bundle is loaded; POST /admin/load first"}
        try:
            observations = policy.check(body.get("observations"))
        except ValueError as exc:
            return 422, {"detail": str(exc)}
        return 200, {"actions": policy.act(observations), "bundle_id": policy.bundle_id}


def log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat()} inference: {message}", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests reuse one connection
    serving: Serving

    def address_string(self) -> str:  # a Unix socket's peer has no address
        return self.client_address[0] if isinstance(self.client_address, tuple) and self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would flood the target's log; loads are logged

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(413 if length > MAX_BODY else 400, {"detail": f"the body must have a Content-Length of at most {MAX_BODY} bytes"})
            self.close_connection = True
            return None
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"detail": "the body is not JSON"})
            return None
        if not isinstance(body, dict):
            self._send(400, {"detail": "the body must be a JSON object"})
            return None
        return body

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/health":
            self._send(200, self.serving.health())
        else:
            self._send(404, {"detail": f"no route GET {self.path[:100]}"})

    def do_POST(self) -> None:
        route = {"/act": self.serving.act, "/admin/load": self.serving.load}.get(self.path.split("?")[0])
        if route is None:
            self.rfile.read(min(int(self.headers.get("Content-Length") or 0), MAX_BODY))
            self._send(404, {"detail": f"no route POST {self.path[:100]}"})
            return
        body = self._body()
        if body is not None:
            self._send(*route(body))


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def server_bind(self) -> None:
        Path(self.server_address).unlink(missing_ok=True)  # a socket left by a killed service
        super().server_bind()
        os.chmod(self.server_address, 0o666)  # the platform connects as another uid; its folder guards it
        self.server_name, self.server_port = "localhost", 0


class TcpServer(ThreadingHTTPServer):
    daemon_threads = True


def make_server(listen: str, serving: Serving) -> socketserver.BaseServer:
    """``unix:<path>`` or ``<host>:<port>``."""
    handler = type("BoundHandler", (Handler,), {"serving": serving})
    if listen.startswith("unix:"):
        return UnixServer(listen[5:], handler)
    host, _, port = listen.rpartition(":")
    return TcpServer((host or "127.0.0.1", int(port)), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OPEVA inference service (GET /health, POST /admin/load, POST /act)")
    parser.add_argument("--listen", default=os.environ.get("OPEVA_INFERENCE_LISTEN", "unix:/run/opeva-inference/inference.sock"))
    parser.add_argument("--bundle-root", default=os.environ.get("OPEVA_INFERENCE_BUNDLE_ROOT", "/bundles"))
    parser.add_argument("--remember", default=None, help="a file where each load is kept and read back at start (a restart reloads)")
    args = parser.parse_args(argv)
    serving = Serving(Path(args.bundle_root), Path(args.remember) if args.remember else None)
    serving.reload_remembered()  # before the socket exists: a caller never sees the empty service of a restart
    server = make_server(args.listen, serving)
    loaded = serving.policy.bundle_id if serving.policy else None
    log(f"listening on {args.listen}; bundles under {serving.bundle_root}; {f'serving bundle {loaded}' if loaded else 'no bundle loaded'}")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
