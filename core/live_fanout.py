"""One live feed, many readers: in-memory fan-out with a bounded backlog per reader (``WS /ws/data``).

Why it exists: relaying a RabbitMQ exchange to 100 WebSocket clients through one AMQP queue
per client made the broker deliver, and the API decode, 100 copies of every message (5,000
deliveries a second at 50 msg/s, about one core of Python on this machine: p99 12-37 s,
docs/live-data.md). Here the API consumes an exchange **once** and hands the same rendered
frame (one ``str`` object, shared) to every client's backlog.

The rule for a slow client: a client never delays the others and never sees a gap. Each has
its own backlog (a deque of shared frames) drained by its own sender. A client whose backlog
passes :data:`MAX_BACKLOG` frames or :data:`MAX_BACKLOG_CHARS` characters, or whose oldest
undelivered frame has waited :data:`MAX_LAG` seconds (a socket that takes nothing), is **ended**:
its backlog is dropped at once and it is told why (:class:`FellBehind`, whose text becomes the
WebSocket close reason). What it received before is an unbroken, in-order prefix of the feed;
it can reconnect for the newest. Memory: the backlogs hold references to the same frames, so
all of them together retain at most one client's worth of distinct frames.

Broker-free and Prefect-free (asyncio only), so it is the same code whatever feeds it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

MAX_BACKLOG = 1000  # frames waiting for one client (20 s of a 50 msg/s feed)
MAX_BACKLOG_CHARS = 4 * 1024 * 1024  # ... or this much text
MAX_LAG = 30.0  # seconds the oldest frame may wait for a client's socket

Entry = tuple[float, str]  # (when it was queued, the frame): made once per message, shared by every backlog


class FellBehind(Exception):
    """The client could not keep up with its feed; the message is the close reason (<= 123 bytes)."""


class Reader:
    """One client's backlog. The feed calls :meth:`offer`; the client's sender awaits :meth:`next`."""

    __slots__ = ("_chars", "_entries", "_inflight", "_wake", "ended")

    def __init__(self) -> None:
        self._entries: deque[Entry] = deque()
        self._chars = 0
        self._wake = asyncio.Event()
        self._inflight: float | None = None  # when the frame being sent now was queued
        self.ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def offer(self, entry: Entry) -> bool:
        """Queue a frame; False (and the reader ended) when that would pass a bound."""
        if self.ended.done():
            return False
        if len(self._entries) >= MAX_BACKLOG:
            self.end(FellBehind(f"fell behind the live feed: {MAX_BACKLOG} messages waited for this client; reconnect for the newest"))
            return False
        if self._chars + len(entry[1]) > MAX_BACKLOG_CHARS:
            self.end(FellBehind(f"fell behind the live feed: {MAX_BACKLOG_CHARS >> 20} MB waited for this client; reconnect for the newest"))
            return False
        self._entries.append(entry)
        self._chars += len(entry[1])
        self._wake.set()
        return True

    def lag(self, now: float) -> float:
        """How long the oldest frame not yet taken by the socket has waited (0 when none)."""
        if self._inflight is not None:
            return now - self._inflight
        return now - self._entries[0][0] if self._entries else 0.0

    def end(self, reason: BaseException) -> None:
        """Stop this reader: its backlog is freed now, its sender raises ``reason`` at its next frame."""
        if self.ended.done():
            return
        self._entries.clear()
        self._chars = 0
        self.ended.set_result(reason)
        self._wake.set()

    async def next(self) -> str:
        """The next frame, in feed order (the previous one was handed to the socket); raises the end reason."""
        self._inflight = None
        while not self._entries:
            if self.ended.done():
                raise self.ended.result()
            self._wake.clear()
            await self._wake.wait()
        if self.ended.done():
            raise self.ended.result()
        queued, frame = self._entries.popleft()
        self._chars -= len(frame)
        self._inflight = queued
        return frame


class Fanout:
    """The readers of one feed. ``publish`` never waits: a reader that cannot take a frame is ended."""

    def __init__(self) -> None:
        self.readers: set[Reader] = set()

    def join(self) -> Reader:
        reader = Reader()
        self.readers.add(reader)
        return reader

    def leave(self, reader: Reader) -> None:
        self.readers.discard(reader)

    def publish(self, frame: str) -> None:
        entry = (time.monotonic(), frame)
        dropped = [r for r in self.readers if not r.offer(entry)]
        for reader in dropped:
            self.readers.discard(reader)

    def check_lag(self, now: float | None = None) -> None:
        """End the readers whose socket has taken nothing for MAX_LAG seconds (called about once a second)."""
        now = time.monotonic() if now is None else now
        for reader in [r for r in self.readers if r.lag(now) > MAX_LAG]:
            reader.end(FellBehind(f"fell behind the live feed: its socket took nothing for {MAX_LAG:.0f} s; reconnect for the newest"))
            self.readers.discard(reader)

    def end_all(self, reason: BaseException) -> None:
        for reader in list(self.readers):
            reader.end(reason)
        self.readers.clear()
