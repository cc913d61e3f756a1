"""``compare-runs``: several jobs' district KPIs as a Prefect table artifact, and a markdown
artifact showing ``/compare/plot.png`` of the same jobs, so the Prefect UI shows the comparison.

Why the image is a link to the API and not bytes in the artifact: Prefect artifacts hold text
(markdown, tables), not files; the browser showing the Prefect UI loads the chart from the API
(``OPEVA_API_PUBLIC_URL``, default the API's loopback address), which renders and caches it.
The KPIs are read from the data root like ``GET /compare`` reads them (core/kpis.py: untrusted
job output), so the flow runs where the data root is mounted.
"""

from __future__ import annotations

from urllib.parse import urlencode

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.kpis import read_job_kpis, side_by_side
from core.layout import DataRoot
from core.settings import PlatformSettings

MIN_JOBS, MAX_JOBS = 2, 10


def image_url(base: str, job_ids: list[str], kind: str) -> str:
    return f"{base}/compare/plot.png?{urlencode({'jobs': ','.join(job_ids), 'kind': kind})}"


@flow(name="compare-runs", log_prints=False)
def compare_runs(job_ids: list[str], kind: str = "kpis") -> dict:
    """Table + chart artifacts of 2 to 10 jobs; returns the table's rows and the image URL."""
    ids = list(dict.fromkeys(j.strip() for j in job_ids if j.strip()))
    if not MIN_JOBS <= len(ids) <= MAX_JOBS:
        raise ValueError(f"compare-runs needs {MIN_JOBS} to {MAX_JOBS} different job ids; got {len(ids)}")
    if kind not in ("kpis", "curves"):
        raise ValueError(f"kind is kpis or curves, not {kind!r}")
    settings = PlatformSettings()
    storage = DataRoot(settings.shared_data_dir)
    jobs = {storage.job(j).job_id: storage.job(j) for j in ids}  # canonical ids; a malformed id raises here
    tables = {job_id: read_job_kpis(paths.dir) for job_id, paths in jobs.items()}
    rows = [{"kpi": name, **{job_id: value for job_id, value in values.items()}} for name, values in side_by_side(tables)]
    notes = [f"- `{job_id}`: {t.note or ('no KPI table' if t.session is None else 'session ' + t.session)}" for job_id, t in tables.items()]
    create_table_artifact(rows or [{"kpi": "(none of these jobs exported district KPIs)"}], key="compare-runs-kpis",
                          description=f"District KPIs of {len(tables)} jobs (lower is better for cost, energy, emissions)")
    url = image_url(settings.api_browser_url, list(tables), kind)
    create_markdown_artifact(f"## Run comparison ({kind})\n\n![{kind} of {len(tables)} jobs]({url})\n\n[Open the chart]({url})\n\n"
                             + "\n".join(notes), key="compare-runs-chart", description="Chart from the OPEVA API")
    get_run_logger().info("Compared %d jobs; chart at %s", len(tables), url)
    return {"image_url": url, "kpis": rows}
