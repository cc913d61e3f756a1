"""Serve energaize_ui's production build from its own origin, as upstream deploys it (nginx,
``try_files $uri /index.html``), and put a recording relay on the API's side.

Two listeners:

- the UI (``--port``): the files of ``dist/``, index.html for any other path (the UI's routes
  are client-side). The bundle carries a sentinel API origin (energaize_build.sh); we replace it
  in every served text file with the origin the UI must call.
- the API relay (``--api-port``, cross-origin mode): a second origin that forwards every
  request, OPTIONS preflights included, byte for byte to ``--backend`` and appends what the
  browser sent (method, path, the headers that matter to CORS, the body's shape) and what came
  back to ``--record``. It changes nothing: the browser's CORS verdict is the API's.

``--proxy`` (same-origin mode) instead points the UI at ``<ui origin>/__opeva_api`` and
forwards that prefix to the backend without the browser's ``Origin``/``Referer`` (what a
reverse proxy in front of both would do), so the journeys show what works beyond CORS.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
from ui_serve import HOP, Handler

# Must stay in step with SENTINEL in energaize_build.sh.
SENTINEL = b"http://opeva-api-sentinel.invalid:18011"
PROXY_PREFIX = "/__opeva_api"
TEXT = (".js", ".html", ".css", ".json", ".map")
RECORD_HEADERS = ("origin", "content-type", "access-control-request-method", "access-control-request-headers", "accept")
_record_lock = threading.Lock()
RECORD_MAX = 4 << 20  # bytes of an answer kept to record its shape


def body_shape(data: bytes | None, content_type: str) -> object:
    """Field names and JSON types of a body, never its values (multipart: the part names)."""
    if not data:
        return None
    if "json" in content_type:
        try:
            return _shape(json.loads(data))
        except ValueError:
            return "unparsable json"
    if content_type.startswith("multipart/form-data"):
        return {"multipart": sorted({m.decode(errors="replace") for m in re.findall(rb'Content-Disposition: form-data; name="([^"]+)"', data)})}
    return f"{len(data)} bytes {content_type or 'no content-type'}"


def _shape(v: object) -> object:
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(v[0])] if v else []
    return {bool: "bool", int: "number", float: "number", str: "string", type(None): "null"}.get(type(v), type(v).__name__)


class UIHandler(Handler):
    api_origin: bytes = b""
    proxy: bool = False
    reshape_hosts: bool = False

    def _hosts_as_names(self, bpath: str) -> None:
        """Diagnostic (--reshape-hosts): answer GET /hosts with ``available_hosts`` as names, the
        shape energaize_ui reads, to see which journeys work past that one difference."""
        resp = self.client.get(self.backend + bpath)
        data = resp.content
        if resp.status_code == 200:
            body = resp.json()
            body["available_hosts"] = [h.get("name") if isinstance(h, dict) else h for h in body.get("available_hosts", [])]
            data = json.dumps(body).encode()
        self.send_response(resp.status_code)
        self.send_header("Content-Type", resp.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_file(self, path: Path) -> None:
        data = path.read_bytes()
        if path.suffix in TEXT:
            data = data.replace(SENTINEL, self.api_origin)
        ctype = {".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".svg": "image/svg+xml",
                 ".json": "application/json", ".wasm": "application/wasm"}.get(path.suffix, "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.proxy and (path == PROXY_PREFIX or path.startswith(PROXY_PREFIX + "/")):
            for h in ("Origin", "Referer"):
                del self.headers[h]
            if self.reshape_hosts and self.command == "GET" and path == PROXY_PREFIX + "/hosts":
                return self._hosts_as_names("/hosts")
            return self._proxy(path[len(PROXY_PREFIX):] or "/")
        return self._static()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class RelayHandler(Handler):
    """Forward everything to the backend; record what the browser sent and the answer."""

    record: Path | None = None

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        sent = {k.lower(): v for k, v in self.headers.items() if k.lower() in RECORD_HEADERS}
        query = "?" + self.path.split("?", 1)[1] if "?" in self.path else ""
        path = self.path.split("?", 1)[0]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            resp = self.client.send(self.client.build_request(self.command, self.backend + path + query, headers=headers, content=body), stream=True)
        except httpx.HTTPError as exc:
            msg = f"relay: backend unreachable: {exc}".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        # Streamed through as it comes (chunked): a followed log (GET .../logs/stream) never ends
        # while the page reads it, and the browser must see its lines as they come.
        data = b""
        recorded = False
        bodiless = self.command == "HEAD" or resp.status_code in (204, 304)
        try:
            self.send_response(resp.status_code)
            for k, v in resp.headers.multi_items():
                if k.lower() not in HOP and k.lower() != "content-encoding":
                    self.send_header(k, v)
            if bodiless:
                self.end_headers()
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if "json" not in resp.headers.get("content-type", ""):
                recorded = self._record(resp, path, query, sent, body, b"")  # a followed log may never end
            for chunk in resp.iter_bytes():
                if chunk:
                    if len(data) < RECORD_MAX:
                        data += chunk
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went (a log stream closed): stop reading the backend
        finally:
            resp.close()
            if not recorded:
                self._record(resp, path, query, sent, body, data)

    def _record(self, resp: httpx.Response, path: str, query: str, sent: dict, body: bytes | None, data: bytes) -> bool:
        if self.record:
            ctype = resp.headers.get("content-type", "")
            answer: object = None
            if "json" in ctype:
                try:
                    answer = _shape(json.loads(data))
                except ValueError:
                    answer = "unparsable json"
            row = {"t": time.time(), "method": self.command, "path": path, "query": query[1:], "headers": sent,
                   "body": body_shape(body, self.headers.get("Content-Type", "")), "status": resp.status_code,
                   "answer_type": ctype.split(";")[0], "answer": answer,
                   "cors": {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}}
            with _record_lock, self.record.open("a") as f:
                f.write(json.dumps(row) + "\n")
        return True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _serve(handler: type, port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=False).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path, help="energaize_ui dist/")
    ap.add_argument("--backend", required=True, help="our API, e.g. http://127.0.0.1:8000")
    ap.add_argument("--port", type=int, required=True, help="the UI's port (its origin)")
    ap.add_argument("--api-port", type=int, help="cross-origin mode: the relay's port, the origin the UI calls")
    ap.add_argument("--proxy", action="store_true", help="same-origin mode: the UI calls <ui>/__opeva_api")
    ap.add_argument("--reshape-hosts", action="store_true", help="with --proxy: answer /hosts with available_hosts as names (diagnostic)")
    ap.add_argument("--record", type=Path, help="append each relayed request as a JSON line")
    a = ap.parse_args()
    if a.proxy == bool(a.api_port):
        ap.error("give exactly one of --api-port (cross-origin) or --proxy (same-origin)")
    # No keep-alive: a pooled connection uvicorn has closed answers "disconnected" (a 502 that
    # is ours, not the API's).
    client = httpx.Client(timeout=httpx.Timeout(60.0, read=None), limits=httpx.Limits(max_keepalive_connections=0))
    backend = a.backend.rstrip("/")
    UIHandler.build, UIHandler.backend, UIHandler.client, UIHandler.proxy = a.build.resolve(), backend, client, a.proxy
    UIHandler.reshape_hosts = a.reshape_hosts
    ui_origin = f"http://127.0.0.1:{a.port}"
    UIHandler.api_origin = (ui_origin + PROXY_PREFIX if a.proxy else f"http://127.0.0.1:{a.api_port}").encode()
    _serve(UIHandler, a.port)
    if a.api_port:
        RelayHandler.build, RelayHandler.backend, RelayHandler.client, RelayHandler.record = a.build.resolve(), backend, client, a.record
        _serve(RelayHandler, a.api_port)
    print(f"energaize_ui on {ui_origin}, calling {UIHandler.api_origin.decode()} -> {backend}", flush=True)


if __name__ == "__main__":
    main()
