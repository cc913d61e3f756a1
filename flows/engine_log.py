"""A container's whole output from the engine, even when Docker's follow stream ends early.

Why: with Debian 12's engine (Docker 20.10) a ``logs --follow`` stream can end when the container
stops while the engine is still writing its last output to the json-file log: what comes after
that point never reaches the follower, although it is in the log file. CI saw it: a job printing
200,000 lines exited 0 and its stream ended after 21,665 (tests/e2e/test_attacks.py, 7b). So the
stream is read with the engine's timestamps, the messages passed on are marked by their stamps
(:class:`LogMark`), and once the container has ended (its output is then all in the engine's log)
the log is read once more without follow, from the marked stamps' first second on, skipping every
message already passed on.

Each frame of the engine's log API is one message (a line, or a piece of a long one) prefixed by
the engine with its fixed-width RFC 3339 timestamp and a space. The prefix is the engine's, the
rest is the job's: only the first space is looked at. No Prefect import here.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

STAMP_WIDTH = 30  # "2006-01-02T15:04:05.000000000Z": fixed width, so comparing bytes compares times


def split_frame(frame: bytes) -> tuple[bytes, bytes]:
    """(the engine's timestamp, the job's bytes); an unstamped frame has an empty timestamp."""
    stamp, sep, payload = frame.partition(b" ")
    if sep and len(stamp) == STAMP_WIDTH and stamp.endswith(b"Z"):
        return stamp, payload
    return b"", frame


@dataclass
class LogMark:
    """The messages a reader passed on, by the engine's stamp: the last ``keep`` of them one by one,
    and a floor at or below which every message counts as passed on.

    Why not just the last stamp: the engine stamps stdout and stderr in two copiers and writes them
    to one file under a lock, so across the two streams the file's order is not the stamps' order
    (CI saw it: a stderr line stamped before the last stdout line seen came after it). A message the
    follow stream missed can carry an older stamp than one it passed on. So every recent stamp is
    kept (bounded: ``keep`` of them, a few MB at most), and a re-read skips exactly those."""

    keep: int = 20_000
    recent: deque[bytes] = field(default_factory=deque)  # stamps passed on, in the order they came
    counts: Counter[bytes] = field(default_factory=Counter)
    floor: bytes = b""  # the newest stamp forgotten: at or below it, a message counts as passed on

    def passed(self, frame: bytes) -> bytes:
        """Mark a frame as passed on; its payload."""
        stamp, payload = split_frame(frame)
        if stamp:
            self.recent.append(stamp)
            self.counts[stamp] += 1
            if len(self.recent) > self.keep:
                old = self.recent.popleft()
                self.counts[old] -= 1
                if not self.counts[old]:
                    del self.counts[old]
                self.floor = max(self.floor, old)
        return payload

    def since_seconds(self) -> int | None:
        """The whole second to read again from (the engine's ``since`` is inclusive); None: from the start."""
        start = self.floor or (min(self.recent) if self.recent else b"")
        if not start:
            return None
        when = datetime.strptime(start[:19].decode("ascii"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        return int(when.timestamp())

    def after(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        """The payloads of ``frames`` (a re-read from :meth:`since_seconds`) not yet passed on."""
        unseen_skips, floor = Counter(self.counts), self.floor
        for frame in frames:
            stamp, payload = split_frame(frame)
            if stamp and floor and stamp <= floor:
                continue
            if stamp and unseen_skips[stamp] > 0:
                unseen_skips[stamp] -= 1
                continue
            self.passed(frame)
            yield payload


def follow_frames(container: Any) -> Iterator[bytes]:
    """The container's stdout and stderr as the engine's stamped frames, followed until it stops."""
    return container.logs(stream=True, follow=True, stdout=True, stderr=True, timestamps=True)


def rest_of_log(client: Any, container_id: str, mark: LogMark) -> Iterator[bytes]:
    """What the ended container wrote after ``mark``: read again, without follow, from the mark's second."""
    since = mark.since_seconds()
    kwargs = {"since": since} if since else {}
    frames = client.api.logs(container_id, stream=True, follow=False, stdout=True, stderr=True, timestamps=True, **kwargs)
    return mark.after(frames)
