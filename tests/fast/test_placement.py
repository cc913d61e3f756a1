"""Automatic host selection (core/placement.py): the first host with a free slot, else the
shortest wait per slot; the hosts file's order breaks ties."""

from core.placement import HostLoad, pick


def test_the_first_host_with_a_free_slot_takes_the_job():
    assert pick([HostLoad("local", 4, 3), HostLoad("second", 2, 0)]) == "local"
    assert pick([HostLoad("local", 4, 4), HostLoad("second", 2, 1)]) == "second", "a full host is passed over"
    assert pick([HostLoad("local", 1, 5), HostLoad("second", None, 50)]) == "second", "no limit: always a free slot"


def test_when_every_host_is_full_the_shortest_wait_per_slot_wins():
    assert pick([HostLoad("local", 4, 6), HostLoad("second", 2, 2)]) == "second"  # 1.5 vs 1.0 runs per slot
    assert pick([HostLoad("local", 2, 4), HostLoad("second", 4, 8)]) == "local", "a tie goes to the first in the file"
    assert pick([HostLoad("only", 1, 9)]) == "only"
