"""Reading a container's output again after Docker's follow stream ended early (flows/engine_log.py):
which of the engine's stamped frames are passed on, so that no line is lost and none repeated.
The frames here are written the way the engine writes them; tests/e2e/test_engine_log.py reads a real
container's log."""

from __future__ import annotations

from flows.engine_log import LogMark, split_frame

A, B, C = b"2026-12-06T07:33:04.000000001Z", b"2026-12-06T07:33:04.500000000Z", b"2026-12-06T07:33:05.000000000Z"


def frame(stamp: bytes, text: str) -> bytes:
    return stamp + b" " + text.encode()


def test_the_engines_stamp_is_split_off_and_the_jobs_bytes_are_kept_as_they_are():
    assert split_frame(frame(A, "line 1 with spaces\n")) == (A, b"line 1 with spaces\n")
    assert split_frame(b"no stamp here\n") == (b"", b"no stamp here\n")  # not the engine's prefix: all payload
    assert split_frame(frame(A, "")) == (A, b"")


def test_a_re_read_passes_on_only_what_follows_the_mark_even_at_the_same_nanosecond():
    stream = [frame(A, "1\n"), frame(B, "2\n"), frame(B, "3\n"), frame(B, "4\n"), frame(C, "5\n")]
    mark = LogMark()
    followed = [mark.passed(f) for f in stream[:3]]  # the follow stream ended after "3"
    assert followed == [b"1\n", b"2\n", b"3\n"] and (mark.stamp, mark.at_stamp) == (B, 2)
    assert mark.since_seconds() == 1796542384  # 2026-12-06T07:33:04Z: the re-read starts at that whole second
    assert list(mark.after(iter(stream))) == [b"4\n", b"5\n"]
    assert (mark.stamp, mark.at_stamp) == (C, 1)
    assert list(mark.after(iter(stream))) == []  # read again: nothing new, nothing twice


def test_nothing_followed_means_everything_is_read_again():
    mark = LogMark()
    assert mark.since_seconds() is None
    assert list(mark.after(iter([frame(A, "1\n"), frame(C, "2\n")]))) == [b"1\n", b"2\n"]


def test_a_newer_message_at_a_new_stamp_is_not_skipped_for_the_old_stamps_count():
    mark = LogMark()
    mark.passed(frame(A, "1\n"))
    mark.passed(frame(A, "2\n"))  # two seen at A, and the re-read lost them (rotated away)
    assert list(mark.after(iter([frame(C, "3\n"), frame(C, "4\n")]))) == [b"3\n", b"4\n"]
