"""Raw HTTP for hostile requests: the target and headers go on the wire exactly as written.

httpx normalises paths (``..`` segments, percent-encoding) and refuses bytes such as
``\\xff`` in headers, so the traversal encodings would never reach the API's handlers.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return f"{self.status} {self.body[:300]!r}"


def raw_request(base_url: str, method: str, target: bytes | str, *, headers: dict[str, bytes | str] | None = None,
                body: bytes = b"", host: bytes | str | None = None, timeout: float = 30) -> RawAnswer:
    url = urlsplit(base_url)
    port = url.port or 80
    target = target.encode("latin-1") if isinstance(target, str) else target
    host = (host if host is not None else f"127.0.0.1:{port}")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + (host.encode("latin-1") if isinstance(host, str) else host)]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value.encode("latin-1") if isinstance(value, str) else value))
    if body or method in ("POST", "PUT"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        return RawAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def assert_clean_4xx(answer: RawAnswer, *secrets: str) -> None:
    """A 4xx whose body is JSON with a string ``detail``, and that quotes none of ``secrets``."""
    assert 400 <= answer.status < 500, answer.describe()
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.describe()
    detail = answer.json().get("detail")
    assert isinstance(detail, (str, list)) and detail, answer.describe()
    for secret in secrets:
        assert secret.encode() not in answer.body, answer.describe()


def snapshot(paths: list[Path]) -> dict[str, tuple[str, int] | None]:
    """Content hash and mtime of each canary (links are not followed: a link is its own canary)."""
    out: dict[str, tuple[str, int] | None] = {}
    for p in paths:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            out[str(p)] = None
            continue
        if p.is_symlink():
            out[str(p)] = (os.readlink(p), st.st_mtime_ns)
        elif p.is_dir():
            out[str(p)] = ("dir:" + ",".join(sorted(os.listdir(p))), st.st_mtime_ns)
        else:
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
    return out
