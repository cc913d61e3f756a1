"""``compare-runs/control`` started from Prefect's CLI (issue 25 §4): the run on the control pool
writes a KPI table and a chart artifact whose image URL the API answers with a PNG."""

from __future__ import annotations

import json
import re
import subprocess

import httpx

from helpers import gateway_call, job_with_kpis, prefect_cmd, wait_for

def _compare_run(job_ids: list[str]):
    async def read(gateway):
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        runs = await gateway.client.read_flow_runs(limit=50)
        mine = [r for r in runs if r.parameters.get("job_ids") == job_ids and r.state and r.state.is_final()]
        if not mine:
            return None
        artifacts = await gateway.client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[mine[0].id])))
        return mine[0], {a.key: a for a in artifacts}

    return gateway_call(read)


def test_compare_runs_from_the_cli_runs_on_the_control_pool_and_its_chart_loads(api, storage, platform):
    ids = [job_with_kpis(api, storage, "6.5", "e2e"), job_with_kpis(api, storage, "5.9", "e2e")]
    out = subprocess.run(prefect_cmd("deployment", "run", "compare-runs/control", "--params", json.dumps({"job_ids": ids})),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    run, artifacts = wait_for(lambda: _compare_run(ids), timeout=120, interval=1, what="the compare-runs run to end")
    assert run.state.is_completed(), run.state
    assert set(artifacts) == {"compare-runs-kpis", "compare-runs-chart"}
    assert "6.5" in str(artifacts["compare-runs-kpis"].data) and "5.9" in str(artifacts["compare-runs-kpis"].data)
    url = re.search(r"!\[[^\]]*\]\(([^)]+)\)", artifacts["compare-runs-chart"].data).group(1)
    assert url.startswith(f"{platform.api_url}/compare/plot.png?")
    image = httpx.get(url, timeout=60)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content[:8] == b"\x89PNG\r\n\x1a\n"
