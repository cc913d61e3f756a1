"""A container's whole output from the engine, even when Docker's follow stream ends early.

Why: with Debian 12's engine (Docker 20.10) a ``logs --follow`` stream can end when the container
stops while the engine is still writing its last output to the json-file log: what comes after
that point never reaches the follower, although it is in the log file. CI saw it: a job printing
200,000 lines exited 0 and its stream ended after 21,665 (tests/e2e/test_attacks.py, 7b). So the
stream is read with the engine's timestamps, the last message seen is marked, and once the
container has ended (its output is then all in the engine's log) the rest is read once more without
follow, from the mark's second on, skipping every message already seen.

Each frame of the engine's log API is one message (a line, or a piece of a long one) prefixed by
the engine with its fixed-width RFC 3339 timestamp and a space. The prefix is the engine's, the
rest is the job's: only the first space is looked at. No Prefect import here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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
    """The last message a reader passed on: its timestamp and how many messages carried exactly it."""

    stamp: bytes = b""
    at_stamp: int = 0

    def passed(self, frame: bytes) -> bytes:
        """Mark a frame of the follow stream as passed on; its payload."""
        stamp, payload = split_frame(frame)
        if stamp and stamp == self.stamp:
            self.at_stamp += 1
        elif stamp:
            self.stamp, self.at_stamp = stamp, 1
        return payload

    def since_seconds(self) -> int | None:
        """The whole second to read again from (the engine's ``since`` is inclusive); None: from the start."""
        if not self.stamp:
            return None
        when = datetime.strptime(self.stamp[:19].decode("ascii"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        return int(when.timestamp())

    def after(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        """The payloads of ``frames`` (a re-read from :meth:`since_seconds`) that come after the mark."""
        seen_stamp, skip_at_stamp = self.stamp, self.at_stamp
        for frame in frames:
            stamp, payload = split_frame(frame)
            if stamp and seen_stamp and stamp < seen_stamp:
                continue
            if stamp and stamp == seen_stamp and skip_at_stamp > 0:
                skip_at_stamp -= 1
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
