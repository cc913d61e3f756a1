"""No pool template pins a Prefect URL that is only right on the server (issue 22, item 2).

The template used to carry ``PREFECT_API_URL`` as ``deployments/setup.py`` saw it
(``http://127.0.0.1:4200/api``); a template's env wins over the worker's, so a worker
on a second machine started containers that called their own loopback. Here the
template is rendered by Prefect's own worker code (the job configuration class of each
pool type, ``prepare_for_flow_run``), with the worker's settings of a second machine:
the flow run must get that worker's URL.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from core.hosts import Host
from deployments.setup import job_template

REMOTE_WORKER_URL = "http://control-plane.example:4200/api"


def _configuration_class(docker: bool):
    if docker:
        from prefect_docker.worker import DockerWorkerJobConfiguration

        return DockerWorkerJobConfiguration
    from prefect.workers.process import ProcessJobConfiguration

    return ProcessJobConfiguration


def _rendered_env(docker: bool, worker_url: str) -> dict[str, str]:
    host = Host(name="gpu-1", concurrency_limit=1)
    template = job_template(host, docker=docker, image="opeva-runtime:test")
    cls = _configuration_class(docker)
    with temporary_settings(updates={PREFECT_API_URL: worker_url, PREFECT_API_AUTH_STRING: "opeva:secret"}):
        import asyncio

        config = asyncio.run(cls.from_template_and_values(template, {}))
        config.prepare_for_flow_run(FlowRun(id=uuid4(), flow_id=uuid4(), name="r"))
    return {k: v for k, v in config.env.items() if v is not None}


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "process"])
def test_the_template_names_no_prefect_url(docker):
    env = job_template(Host(name="gpu-1", concurrency_limit=1), docker=docker, image="opeva-runtime:test")["job_configuration"]["env"]
    assert "PREFECT_API_URL" not in env and "PREFECT_UI_URL" not in env
    assert not [k for k, v in env.items() if "127.0.0.1:4200" in str(v)], env


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "process"])
def test_a_flow_run_gets_the_url_of_the_worker_that_starts_it(docker):
    """Two workers on two machines, one template: each run reaches the server the way its worker does."""
    assert _rendered_env(docker, REMOTE_WORKER_URL)["PREFECT_API_URL"] == REMOTE_WORKER_URL
    assert _rendered_env(docker, "http://127.0.0.1:4310/api")["PREFECT_API_URL"] == "http://127.0.0.1:4310/api"
    env = _rendered_env(docker, REMOTE_WORKER_URL)
    assert env["PREFECT_API_AUTH_STRING"] == "opeva:secret"  # the worker's credentials, never the template's
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]  # what the template does fix still reaches the run
