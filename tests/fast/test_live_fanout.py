"""core/live_fanout.py: the slow-client rule of ``WS /ws/data`` on the fan-out itself (no broker,
no socket; the same code the API runs, tests/fast/test_live_data.py drives it end to end)."""

from __future__ import annotations

import asyncio

import pytest

from core import live_fanout
from core.live_fanout import Fanout, FellBehind


def test_every_reader_gets_every_frame_in_order_and_the_frame_is_shared():
    async def scenario() -> None:
        fanout = Fanout()
        readers = [fanout.join() for _ in range(5)]
        frames = [f'{{"seq": {i}}}' for i in range(300)]
        for frame in frames:
            fanout.publish(frame)
        for reader in readers:
            got = [await reader.next() for _ in frames]
            assert got == frames
            assert all(a is b for a, b in zip(got, frames, strict=True))  # one object for every client

    asyncio.run(scenario())


def test_a_reader_past_the_backlog_bound_is_ended_with_a_reason_and_the_others_carry_on():
    async def scenario() -> None:
        fanout = Fanout()
        slow, quick = fanout.join(), fanout.join()
        got_quick = []
        for i in range(live_fanout.MAX_BACKLOG + 5):
            fanout.publish(str(i))
            got_quick.append(await quick.next())  # the quick one keeps up
        assert got_quick == [str(i) for i in range(live_fanout.MAX_BACKLOG + 5)]
        assert slow.ended.done() and slow not in fanout.readers and quick in fanout.readers
        reason = slow.ended.result()
        assert isinstance(reason, FellBehind) and "fell behind" in str(reason) and len(str(reason).encode()) <= 123
        with pytest.raises(FellBehind):  # its backlog was dropped at once: no more frames, no gap
            await slow.next()
        assert slow.lag(0.0) == 0.0

    asyncio.run(scenario())


def test_the_character_bound_applies_too():
    async def scenario() -> None:
        fanout = Fanout()
        reader = fanout.join()
        big = "x" * (live_fanout.MAX_BACKLOG_CHARS // 3 + 1)
        for _ in range(3):
            fanout.publish(big)
        assert isinstance(reader.ended.result(), FellBehind) and "MB" in str(reader.ended.result())

    asyncio.run(scenario())


def test_a_reader_whose_socket_takes_nothing_for_max_lag_is_ended():
    async def scenario() -> None:
        fanout = Fanout()
        stuck, idle = fanout.join(), fanout.join()
        fanout.publish("a")
        assert await idle.next() == "a"
        waiting = asyncio.create_task(idle.next())  # its socket took "a": it waits for the next frame
        await asyncio.sleep(0)
        assert await stuck.next() == "a"  # handed to a socket that never takes it: in flight from now on
        t0 = stuck.lag(0.0) * -1  # when "a" was queued (monotonic)
        fanout.check_lag(t0 + live_fanout.MAX_LAG - 1)
        assert not stuck.ended.done()
        fanout.check_lag(t0 + live_fanout.MAX_LAG + 1)
        assert isinstance(stuck.ended.result(), FellBehind) and "took nothing" in str(stuck.ended.result())
        assert not idle.ended.done() and idle.lag(t0 + 1000) == 0.0  # waiting with nothing queued is not lagging
        fanout.publish("b")
        assert await waiting == "b"

    asyncio.run(scenario())
