"""Serve the OPEVA UI's production build with its dev-proxy rules, pointed at our API.

The UI calls the backend with relative URLs from pages under /admin/... (``fetch("jobs")``
from /admin/run-simulations is /admin/jobs) and with /real-time-data/... from the Use Cases
page. Its src/setupProxy.js (http-proxy-middleware 3, mounted with ``app.use(prefix)``,
so the prefix is stripped before pathRewrite) sends:

- ``/admin/<rest>``          -> ``<backend>/<rest>``                 (rewrite '/admin' -> '/')
- ``/real-time-data/<rest>`` -> ``<backend>/real-time-data/<rest>``  (rewrite '/' -> '/real-time-data/')

We apply the same two rules, with ``<backend>`` the API's ai-manager-ui mount
(``<api>/ai-manager-ui``: the 2025 shapes this UI reads; the API's root serves today's contract,
see docs/api.md). ``--backend`` is the API's address; the prefix is added here. One difference: a browser navigation to /admin/<page> (a
reload or a deep link) gets index.html here, where the dev server would proxy it to the
backend; the UI's pages are client-side routes, and a person opening a bookmarked page
expects the page. Everything else is a file of build/, or index.html.
"""

from __future__ import annotations

import argparse
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

AI_MANAGER_UI_PREFIX = "/ai-manager-ui"
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate", "host", "content-length"}


def backend_path(path: str) -> str | None:
    """The backend path for a UI request path, or None when it is not proxied."""
    if path.startswith("/admin/"):
        return "/" + path[len("/admin/"):]
    if path.startswith("/real-time-data/") or path == "/real-time-data":
        return path
    return None


class Handler(BaseHTTPRequestHandler):
    build: Path
    backend: str
    client: httpx.Client
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the journeys record failed requests themselves
        pass

    def _navigation(self) -> bool:
        mode = self.headers.get("Sec-Fetch-Mode")
        return self.command == "GET" and (mode == "navigate" or (mode is None and "text/html" in self.headers.get("Accept", "")))

    def _send_file(self, path: Path) -> None:
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _static(self) -> None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        target = (self.build / rel).resolve()
        if rel and target.is_file() and self.build in target.parents:
            return self._send_file(target)
        return self._send_file(self.build / "index.html")

    def _proxy(self, bpath: str) -> None:
        query = "?" + self.path.split("?", 1)[1] if "?" in self.path else ""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            req = self.client.build_request(self.command, self.backend + bpath + query, headers=headers, content=body)
            resp = self.client.send(req, stream=True)
        except httpx.HTTPError as exc:
            msg = f"proxy: backend unreachable: {exc}".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        try:
            self.send_response(resp.status_code)
            for k, v in resp.headers.multi_items():
                if k.lower() not in HOP and k.lower() != "content-encoding":
                    self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in resp.iter_bytes():
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            resp.close()

    def _handle(self) -> None:
        path = self.path.split("?", 1)[0]
        bpath = backend_path(path)
        if bpath is None or self._navigation():
            return self._static()
        return self._proxy(bpath)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", default=AI_MANAGER_UI_PREFIX, help="The API mount the UI talks to (default %(default)s).")
    a = ap.parse_args()
    Handler.build = a.build.resolve()
    Handler.backend = a.backend.rstrip("/") + a.prefix.rstrip("/")
    Handler.client = httpx.Client(timeout=httpx.Timeout(30.0, read=None))
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"UI on http://127.0.0.1:{a.port} -> {Handler.backend}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=False).start()


if __name__ == "__main__":
    main()
