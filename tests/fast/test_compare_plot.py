"""GET /compare/plot.png: jobs' KPIs as bars and their MLflow learning curves as lines, a real PNG.

The curves are drawn from a real MLflow server (the platform's venv, started once for this
module, ~15 s) through a second API process that has MLflow turned on; the fast tier's own API
runs without MLflow and must say so instead of drawing an empty chart.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers import experiment
from PIL import Image

from core.compare_plot import CURVES_SIZE, DPI, kpi_size

HEADER = "KPI,R-H-01,District\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _job(api) -> str:
    r = api.post("/run-simulation", json={"config": experiment("compare", "q"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def _kpis(storage, job_id: str, rows: str) -> None:
    folder = storage.job(job_id).dir / "results" / "simulation_data" / "s1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exported_kpis.csv").write_text(HEADER + rows)


def _png_size(body: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature; PIL must agree."""
    assert body[:8] == PNG_SIGNATURE
    assert body[12:16] == b"IHDR"
    width, height = struct.unpack(">II", body[16:24])
    with Image.open(io.BytesIO(body)) as image:
        image.verify()
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (width, height) and image.format == "PNG"
    return width, height


def test_three_jobs_kpis_are_one_png_of_one_panel_per_kpi(api, storage):
    a, b, c = _job(api), _job(api), _job(api)
    _kpis(storage, a, "district_cost_total_control_eur,1,6.5\nco2_kg,1,3\nenergy_kwh,1,10\nramping,1,1\n")
    _kpis(storage, b, "district_cost_total_control_eur,1,5.9\nco2_kg,1,2.5\nenergy_kwh,1,9\n")
    _kpis(storage, c, "district_cost_total_control_eur,1,7\nco2_kg,1,nan\n")
    r = api.get("/compare/plot.png", params={"jobs": f"{a},{b},{c}", "kind": "kpis"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert _png_size(r.content) == kpi_size(4) == (1000, 610)  # 4 KPIs: two rows of three panels
    again = api.get("/compare/plot.png", params={"jobs": f"{a},{b},{c}"})  # kind defaults to kpis; served from the cache
    assert again.status_code == 200 and again.content == r.content
    other = api.get("/compare/plot.png", params={"jobs": f"{b},{a}"})
    assert other.status_code == 200 and other.content != r.content and _png_size(other.content) == kpi_size(4)  # a has ramping


def test_many_kpis_draw_the_cost_energy_and_emission_ones(api, storage):
    a, b = _job(api), _job(api)
    rows = "".join(f"comfort_{i},1,{i}\n" for i in range(20)) + "cost_total,1,1\ncarbon_emissions_total,1,2\nelectricity_consumption_total,1,3\n"
    _kpis(storage, a, rows)
    _kpis(storage, b, rows)
    r = api.get("/compare/plot.png", params={"jobs": f"{a},{b}"})
    assert r.status_code == 200, r.text
    assert _png_size(r.content) == kpi_size(3)  # 23 KPIs: the three headline ones, one row


def test_bad_requests_answer_4xx_with_a_detail(api):
    one = _job(api)
    cases = [
        ({"jobs": one}, 400, "2 to 10"),
        ({"jobs": ",".join(_job(api) for _ in range(11))}, 400, "2 to 10"),
        ({"jobs": f"{one},00000000-0000-0000-0000-000000000000"}, 404, "00000000-0000-0000-0000-000000000000"),
        ({"jobs": f"{one},../../etc"}, 404, ""),
        ({"jobs": f"{one},{_job(api)}", "kind": "pie"}, 422, ""),
        ({"jobs": f"{one},{_job(api)}", "kind": "curves"}, 409, "OPEVA_MLFLOW=0"),  # this API runs no MLflow
    ]
    for params, status, words in cases:
        r = api.get("/compare/plot.png", params=params)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"] == "application/json" and words in str(r.json()["detail"]), r.text


@pytest.fixture(scope="module")
def mlflow_api(platform) -> Iterator[tuple[str, str]]:
    """(API url, MLflow url): MLflow from the platform's venv, and an API process that uses it."""
    from deployments.mlflow_server import server_command
    from deployments.platform import Platform, free_port, http_ok

    other = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                     api_port=free_port(), data_dir=platform.data_dir, mlflow_port=free_port())
    (other.home / "mlflow").mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{other.mlflow_port}"
    try:
        other.start("mlflow", server_command(other), lambda: http_ok(f"{url}/health"), timeout=300,
                    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        other.start_api(OPEVA_MLFLOW="1", OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
        yield other.api_url, url
    finally:
        other.stop()


def _mlflow_run(mlflow: httpx.Client, experiment_id: str, job_id: str, points: int, metric: str = "train_electricity_cost") -> None:
    run = mlflow.post("runs/create", json={"experiment_id": experiment_id, "start_time": int(time.time() * 1000),
                                           "tags": [{"key": "opeva.job_id", "value": job_id}]}).json()["run"]["info"]["run_id"]
    now = int(time.time() * 1000)
    metrics = [{"key": metric, "value": 100.0 - step * 0.01, "timestamp": now, "step": step} for step in range(points)]
    for i in range(0, len(metrics), 1000):  # log-batch takes at most 1000 metrics
        assert mlflow.post("runs/log-batch", json={"run_id": run, "metrics": metrics[i:i + 1000]}).status_code == 200


def test_curves_have_one_line_per_job_with_mlflow_s_point_counts(api, mlflow_api):
    api_url, mlflow_url = mlflow_api
    a, b, c, bare, other_metric = (_job(api) for _ in range(5))
    with httpx.Client(base_url=f"{mlflow_url}/api/2.0/mlflow", timeout=30) as mlflow:
        experiment_id = mlflow.post("experiments/create", json={"name": f"compare-{a}"}).json()["experiment_id"]
        for job, points in ((a, 5), (b, 40), (c, 2500)):
            _mlflow_run(mlflow, experiment_id, job, points)
        _mlflow_run(mlflow, experiment_id, other_metric, 3, metric="loss")
    with httpx.Client(base_url=api_url, timeout=60) as client:
        r = client.get("/compare/plot.png", params={"jobs": f"{a},{b},{c}", "kind": "curves"})
        assert r.status_code == 200, r.text
        assert r.headers["x-opeva-series-points"] == f"{a}=5,{b}=40,{c}=2500"
        assert _png_size(r.content) == (round(CURVES_SIZE[0] * DPI), round(CURVES_SIZE[1] * DPI))
        r = client.get("/compare/plot.png", params={"jobs": f"{a},{bare}", "kind": "curves"})
        assert r.status_code == 404 and bare in r.json()["detail"] and "MLflow run" in r.json()["detail"]
        r = client.get("/compare/plot.png", params={"jobs": f"{a},{other_metric}", "kind": "curves"})
        assert r.status_code == 409 and "share no metric" in r.json()["detail"]
        r = client.get("/compare/plot.png", params={"jobs": f"{a},{other_metric}", "kind": "curves", "metric": "loss"})
        assert r.status_code == 409 and a in r.json()["detail"] and "'loss'" in r.json()["detail"]
