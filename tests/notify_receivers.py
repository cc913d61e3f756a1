"""A local SMTP server and a local webhook receiver, on loopback in the test process.

Nothing leaves the machine: notifications of the platform under test are delivered here and
the tests read what arrived (with the time it arrived, for the delay tables in docs/notifications.md).
"""

from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aiosmtpd.controller import Controller

from deployments.platform import free_port


class Mailbox:
    """aiosmtpd's handler: every message, parsed, with its arrival time."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        with self.lock:
            self.messages.append({"at": time.time(), "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                  "subject": str(parsed["Subject"]), "text": body.get_content() if body else ""})
        return "250 Message accepted for delivery"

    def about(self, needle: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if needle in m["subject"] + m["text"]]


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()


class Hooks:
    """A webhook receiver: records every request; answers ``status`` (200 unless a test changes it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                hooks.calls.append({"at": time.time(), "path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(hooks.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def about(self, needle: str) -> list[dict[str, Any]]:
        return [c for c in list(self.calls) if needle in json.dumps(c["body"])]

    def __enter__(self) -> "Hooks":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()



def notify_api(platform: Any, smtp: SmtpServer, ui_base_url: str = "http://opeva-ui.test:5173", **env: str) -> Any:
    """A second API process of ``platform`` (as tests/conftest.py's secured API) whose environment
    names the local SMTP server and the UI's address; the caller stops it (``.stop()``)."""
    from deployments.platform import Platform

    extra = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                     api_port=free_port(), data_dir=platform.data_dir)
    extra.start_api(OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"), OPEVA_SMTP_HOST="127.0.0.1", OPEVA_SMTP_PORT=str(smtp.port),
                    OPEVA_SMTP_FROM="opeva@test.invalid", OPEVA_UI_BASE_URL=ui_base_url, **env)
    return extra


UI = "http://opeva-ui.test:5173"


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[SmtpServer, Hooks]]:
    """A loopback SMTP server and webhook receiver for one test module."""
    with SmtpServer() as smtp, Hooks() as hooks:
        yield smtp, hooks


@pytest.fixture(scope="module")
def napi(platform, receivers) -> Iterator[httpx.Client]:
    """An extra API process of the module's platform, with SMTP pointed at ``receivers``."""
    extra = notify_api(platform, receivers[0], UI)
    try:
        with httpx.Client(base_url=extra.api_url, timeout=30) as client:
            yield client
    finally:
        extra.stop()
