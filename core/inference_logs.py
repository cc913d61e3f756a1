"""A platform inference target's log: its container's output, read from the Docker engine.

Why the engine: the target writes only to stdout (inference/service.py: one line per start and per
load), the engine keeps it with timestamps for as long as the container lives, and ``docker logs``
answers both the live follow (``logs/stream``) and a time window (``logs/history/chunk``) without
the platform storing a copy. External targets' logs are theirs: ``available: false``. No Prefect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_WINDOW_LINES = 200_000  # lines read from the engine for one history window
STREAM_CHUNK = 64 * 1024


class LogError(ValueError):
    """A bad query (400)."""


def utc(value: str | None, what: str) -> datetime | None:
    """An ISO-8601 timestamp that says it is UTC (``Z`` or ``+00:00``), as upstream requires."""
    if value is None or value == "":
        return None
    try:
        ts = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise LogError(f"{what} {value[:40]!r} is not an ISO-8601 timestamp") from None
    if ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        raise LogError(f"{what} {value[:40]!r} must be UTC (end it with Z or +00:00)")
    return ts.astimezone(UTC)


def _docker_ts(stamp: str) -> datetime | None:
    """Docker's RFC 3339 nano timestamp (trailing zeros of the fraction trimmed) as a UTC datetime."""
    if not stamp.endswith("Z"):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    try:
        return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
    except ValueError:
        return None


def _stamp(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def stream(container: str, tail: int) -> AsyncIterator[bytes]:
    """``docker logs --follow --tail N``: the last lines, then each new one, until the client goes
    (the generator is closed: the ``docker logs`` process is killed) or the container ends."""
    proc = await asyncio.create_subprocess_exec("docker", "logs", "--follow", "--tail", str(tail), container,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(STREAM_CHUNK):
            yield chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def exists(container: str) -> bool:
    proc = await asyncio.create_subprocess_exec("docker", "container", "inspect", "--format", "{{.State.Running}}", container,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return proc.returncode == 0 and out.strip() == b"true"


async def window(container: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Every line the container wrote in [since, until], oldest first: ``{ts, text, source}``."""
    proc = await asyncio.create_subprocess_exec(
        "docker", "logs", "--timestamps", "--since", _stamp(since), "--until", _stamp(until), container,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    lines = []
    for raw in (out + err).decode(errors="replace").splitlines()[-MAX_WINDOW_LINES:]:
        stamp, _, text = raw.partition(" ")
        ts = _docker_ts(stamp)
        if ts is None:
            continue  # docker's own message (no such container...): not a log line
        lines.append({"ts": _stamp(ts), "text": text, "source": f"docker:{container}"})
    lines.sort(key=lambda line: line["ts"])
    return lines


def page(lines: list[dict[str, Any]], cursor: str | None, limit: int) -> dict[str, Any]:
    """Upstream's paging of a window: without a cursor the newest ``limit`` lines; ``next_cursor``
    the page before (older), ``prev_cursor`` the page after (newer); a cursor is a start index."""
    total = len(lines)
    if cursor:
        try:
            start = int(cursor)
        except ValueError:
            raise LogError(f"cursor {cursor[:20]!r} is not one this route returned") from None
        start = max(0, min(start, max(total - 1, 0)))
    else:
        start = max(0, total - limit)
    end = min(total, start + limit)
    return {"lines": lines[start:end], "next_cursor": str(max(0, start - limit)) if start > 0 else None,
            "prev_cursor": str(end) if end < total else None, "has_more_before": start > 0, "has_more_after": end < total}
