"""Reading a container's output again after Docker's follow stream ended early (flows/engine_log.py):
which of the engine's stamped frames are passed on, so that no line is lost and none repeated.
The frames here are written the way the engine writes them; tests/e2e/test_engine_log.py reads a real
container's log."""

from __future__ import annotations

from flows.engine_log import LogMark, split_frame

A, B, C, D = (f"2026-12-06T07:33:0{s}.{n:09d}Z".encode() for s, n in ((4, 1), (4, 500_000_000), (5, 0), (5, 1)))


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
    assert followed == [b"1\n", b"2\n", b"3\n"]
    assert mark.since_seconds() == 1796542384  # 2026-12-06T07:33:04Z: the re-read starts at that whole second
    assert list(mark.after(iter(stream))) == [b"4\n", b"5\n"]
    assert list(mark.after(iter(stream))) == []  # read again: nothing new, nothing twice


def test_a_message_stamped_before_the_last_one_seen_but_written_after_it_is_not_lost():
    """stdout and stderr are stamped by two copiers: in the file, a stderr line can follow a newer stdout line."""
    stream = [frame(A, "out 1\n"), frame(C, "out 2\n"), frame(B, "err 1\n"), frame(D, "out 3\n")]
    mark = LogMark()
    [mark.passed(f) for f in stream[:2]]  # the follow stream ended after "out 2"
    assert list(mark.after(iter(stream))) == [b"err 1\n", b"out 3\n"]


def test_nothing_followed_means_everything_is_read_again():
    mark = LogMark()
    assert mark.since_seconds() is None
    assert list(mark.after(iter([frame(A, "1\n"), frame(C, "2\n")]))) == [b"1\n", b"2\n"]


def test_memory_is_bounded_and_what_was_forgotten_counts_as_passed_on():
    mark = LogMark(keep=2)
    for f in (frame(A, "1\n"), frame(B, "2\n"), frame(C, "3\n")):
        mark.passed(f)
    assert len(mark.recent) == 2 and mark.floor == A
    assert mark.since_seconds() == 1796542384  # from the forgotten stamp's second
    assert list(mark.after(iter([frame(A, "1\n"), frame(B, "2\n"), frame(C, "3\n"), frame(D, "4\n")]))) == [b"4\n"]
