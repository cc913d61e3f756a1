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


def test_a_lost_hosts_automatic_jobs_spread_over_free_slots_and_pinned_ones_wait():
    from core.placement import Waiting, plan_moves

    waiting = [Waiting("a1", True, None, False), Waiting("p1", False, None, False), Waiting("a2", True, None, False),
               Waiting("r1", True, None, True), Waiting("g1", True, "gpu", False), Waiting("a3", True, "cpu", False)]
    moves, kept = plan_moves(waiting, [HostLoad("second", 2, 1), HostLoad("third", 2, 0)], gpu_hosts=set())
    assert moves == [("a1", "second"), ("a2", "third"), ("a3", "third")], "each move takes a slot"
    assert dict(kept).keys() == {"p1", "r1", "g1"}
    assert "waits" in dict(kept)["p1"] and "resources" in dict(kept)["r1"] and "gpu" in dict(kept)["g1"]
    assert plan_moves([Waiting("g1", True, "gpu", False)], [HostLoad("cpu-box", 2, 0), HostLoad("gpu-box", 1, 0)], {"gpu-box"})[0] == [("g1", "gpu-box")]
