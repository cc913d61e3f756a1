"""The compare-runs flow: a table artifact of the jobs' KPIs and a markdown artifact whose image
URL the API answers with a PNG (the flow runs in this process against the tier's Prefect server)."""

from __future__ import annotations

import re

import httpx
import pytest
from helpers import job_with_kpis, run

from flows.compare_runs import compare_runs

async def _artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def test_flow_writes_a_table_and_an_image_the_api_serves(api, storage, platform):
    a, b = job_with_kpis(api, storage, "6.5"), job_with_kpis(api, storage, "5.9")
    state = compare_runs([a, b], return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["kpis"] == [{"kpi": "district_cost_total_control_eur", a: 6.5, b: 5.9}]
    artifacts = {x.key: x for x in run(_artifacts(state.state_details.flow_run_id))}
    assert set(artifacts) == {"compare-runs-kpis", "compare-runs-chart"}
    assert artifacts["compare-runs-kpis"].type == "table" and "6.5" in str(artifacts["compare-runs-kpis"].data)
    url = re.search(r"!\[[^\]]*\]\(([^)]+)\)", artifacts["compare-runs-chart"].data).group(1)
    assert url == result["image_url"] and url.startswith(f"{platform.api_url}/compare/plot.png?")
    image = httpx.get(url, timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_flow_refuses_one_job():
    with pytest.raises(ValueError, match="2 to 10"):
        compare_runs(["00000000-0000-0000-0000-000000000000"])
