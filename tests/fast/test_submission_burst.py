"""Bursts of submissions: the API's group commit and the SQLite server's write queue.

Why these matter to a user: 20 people (or one script) submitting at once must each
get their own job back, once, with no 5xx and no job lost or made twice; before the
fixes, concurrent creates on SQLite answered 503 ("database is locked") and Prefect's
client backed off for seconds (bench/submit_burst.py has the figures).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from api.group_commit import GroupCommit
from helpers import experiment, gateway_call


# -- the group commit on its own -------------------------------------------------


def test_group_commit_sends_what_gathered_meanwhile_in_one_call_and_answers_each_caller():
    calls: list[list[int]] = []

    async def flush(key: str, items: list[int]) -> list[int | Exception]:
        calls.append(list(items))
        await asyncio.sleep(0.05)  # a call in flight: the next submissions gather
        return [ValueError(f"odd {i}") if i % 7 == 3 else i * 10 for i in items]

    async def main() -> tuple[list, int]:
        batcher: GroupCommit[str, int, int] = GroupCommit(flush, max_batch=8)
        burst = await asyncio.gather(*(batcher.submit("dep", i) for i in range(30)), return_exceptions=True)
        return burst, await batcher.submit("dep", 99)

    results, lone = asyncio.run(main())
    for i, r in enumerate(results):
        if i % 7 == 3:
            assert isinstance(r, ValueError) and str(r) == f"odd {i}"
        else:
            assert r == i * 10
    assert sorted(i for call in calls[:-1] for i in call) == list(range(30)), "each item sent exactly once"
    assert [len(c) for c in calls[:-1]] == [8, 8, 8, 6], calls
    assert lone == 990 and calls[-1] == [99], "a lone submission goes out at once, alone"


def test_group_commit_gives_a_failed_call_to_every_caller_of_that_batch_only():
    async def flush(key: str, items: list[str]) -> list[str]:
        await asyncio.sleep(0.01)
        if key == "down":
            raise ConnectionError("server away")
        return [s.upper() for s in items]

    async def main() -> list:
        batcher: GroupCommit[str, str, str] = GroupCommit(flush)
        jobs = [batcher.submit("down" if i % 2 else "up", f"x{i}") for i in range(6)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0::2] == ["X0", "X2", "X4"]
    assert all(isinstance(r, ConnectionError) for r in results[1::2])


# -- through the REST API, against the real Prefect server --------------------------


async def _burst(api_url: str, headers: dict[str, str], bodies: list[tuple[dict, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
        return await asyncio.gather(*(client.post("/run-simulation", json=b, headers={"Idempotency-Key": k}) for b, k in bodies))


def test_concurrent_submissions_each_get_their_own_job_once(api, platform):
    tag = uuid.uuid4().hex[:8]
    repeated = f"same-{tag}"
    bodies = [({"config": experiment("burst", str(i)), "command": ["true"], "target_host": "offline", "job_name": f"burst-{tag}-{i}",
                "submitted_by": tag, "retries": i % 3, "resources": {"memory": f"{100 + i}m"}, "deucalion_options": {"partition": f"p{i}"}}, f"k-{tag}-{i}") for i in range(40)]
    bodies += [({"config": experiment("burst", "r"), "command": ["true"], "target_host": "offline", "job_name": f"repeat-{tag}"}, repeated)] * 6
    answers = asyncio.run(_burst(platform.api_url, dict(api.headers), bodies))

    assert [r.status_code for r in answers] == [200] * len(bodies), [r.text for r in answers if r.status_code != 200][:3]
    ids = [r.json()["job_id"] for r in answers]
    assert len(set(ids[:40])) == 40, "one job per distinct key"
    assert len(set(ids[40:])) == 1, "the same key answers the same job"
    for i, r in enumerate(answers[:40]):  # each caller got its own job, not a neighbour's in the same batch
        assert r.json()["job_name"] == f"burst-{tag}-{i}" and r.json()["status"] == "queued"
        info = api.get(f"/job-info/{ids[i]}").json()
        assert info["job_name"] == f"burst-{tag}-{i}" and info["retries"] == i % 3, info
        assert info["parameters"]["config"]["experiment"]["run_name"] == str(i)
        assert info["job_variables"]["mem_limit"] == f"{100 + i}m" and json.loads(info["labels"]["opeva.deucalion_options"]) == {"partition": f"p{i}"}
        assert any(t.startswith("submitted-by:") for t in info["tags"]), info["tags"]

    async def count(gateway) -> int:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        runs = await gateway.client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=tag)))
        return len(runs)

    assert gateway_call(count) == 41, "nothing lost, nothing made twice"


def test_a_run_prefect_refuses_fails_that_caller_alone_in_its_batch(platform):
    from api.gateway import RunRefused

    good = {"config": experiment("burst", "ok"), "command": ["true"], "target_host": "offline"}
    bad = {**good, "command": 42}  # the deployment's parameter schema wants a list of strings

    async def go(gateway) -> list:
        await gateway.deployment("run-simulation", "offline")
        return await asyncio.gather(*(gateway.submit("run-simulation", "offline", p, name=f"refuse-{i}") for i, p in enumerate([good, bad, good])),
                                    return_exceptions=True)

    first, refused, third = gateway_call(go)
    assert isinstance(refused, RunRefused) and "42" in str(refused), refused
    assert first.status == third.status == "queued" and first.id != third.id
    assert [gateway_call(lambda g, r=r: g.read_run(str(r.id))).name for r in (first, third)] == ["refuse-0", "refuse-2"]


# -- the Prefect server on SQLite ------------------------------------------------


def test_sqlite_server_takes_concurrent_creates_without_a_503(platform):
    """Raw HTTP, so Prefect's client cannot hide a 503 behind its retries: without the
    write queue of deployments/prefect_server.py, a few of these answered "database is
    locked" (503) at once, each costing its client a back-off of seconds."""
    deployment_id = gateway_call(lambda g: g.deployment_id("run-simulation", "offline"))
    user, password = platform.prefect_auth_string.split(":", 1)
    body = {"parameters": {"config": experiment("sqlite", "w"), "command": ["true"], "target_host": "offline"}}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=platform.prefect_api_url, auth=(user, password), timeout=120) as client:
            async def one(i: int) -> int:
                r = await client.post(f"/deployments/{deployment_id}/create_flow_run", json={**body, "name": f"sqlite-{i}"})
                return r.status_code

            return await asyncio.gather(*(one(i) for i in range(60)))

    for _ in range(2):
        codes = asyncio.run(burst())
        assert codes == [201] * len(codes), sorted(set(codes))
