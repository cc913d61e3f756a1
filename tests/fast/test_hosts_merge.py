"""Host defaults and a job's own resources meet in one function (core.hosts.simulator_limits).

No platform needed: these are pure functions of the hosts file models.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.hosts import Host, repository_of, simulator_limits

GPU_HOST = Host(
    name="gpu-1",
    gpus={"count": -1},
    cpus=8,
    memory="32g",
    simulator_image="calof/opeva_simulator",
    allowed_images=["registry.example.org:5000/team/sim"],
    simulator_env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_UI_BASE_URL": "http://mlflow.local"},
)


def test_gpu_survives_a_job_that_sets_cpus_and_memory():
    merged = simulator_limits(GPU_HOST, {"container_create_kwargs": {"nano_cpus": 2_000_000_000}, "mem_limit": "4g"})
    assert merged["device_requests"] == [{"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": -1}]
    assert merged["nano_cpus"] == 2_000_000_000  # the job's, over the host's 8 CPUs
    assert merged["mem_limit"] == "4g"
    assert merged["env"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


def test_host_defaults_apply_when_the_job_asks_nothing():
    merged = simulator_limits(GPU_HOST, None)
    assert merged["nano_cpus"] == 8_000_000_000 and merged["mem_limit"] == "32g" and "device_requests" in merged


def test_job_gpus_replace_the_hosts_and_env_merges_key_by_key():
    own = [{"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}]
    merged = simulator_limits(GPU_HOST, {"container_create_kwargs": {"device_requests": own}, "env": {"MLFLOW_UI_BASE_URL": "x"}})
    assert merged["device_requests"] == own
    assert merged["env"] == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_UI_BASE_URL": "x"}


def test_escape_hatches_in_job_variables_are_dropped():
    merged = simulator_limits(GPU_HOST, {"container_create_kwargs": {"privileged": True, "binds": ["/:/host"], "pid_mode": "host"}})
    assert not {"privileged", "binds", "pid_mode"} & set(merged)


def test_bad_memory_is_refused():
    with pytest.raises(ValueError, match="Docker notation"):
        simulator_limits(GPU_HOST, {"mem_limit": "lots"})


def test_allow_list_and_repositories():
    assert GPU_HOST.image_allowed("calof/opeva_simulator:v2")
    assert GPU_HOST.image_allowed("registry.example.org:5000/team/sim:1.0")
    assert not GPU_HOST.image_allowed("calof/other:v2")
    assert repository_of("registry.example.org:5000/team/sim") == "registry.example.org:5000/team/sim"
    assert repository_of("calof/opeva_simulator@sha256:abc") == "calof/opeva_simulator"


def test_argument_template_and_root_refused():
    assert GPU_HOST.simulator_arguments(config_path="configs/a.yaml", job_id="j1", job_name="n") == [
        "--config", "/data/configs/a.yaml", "--job_id", "j1"]
    with pytest.raises(ValidationError, match="never runs as root"):
        Host(name="x", run_as="0")
    with pytest.raises(ValidationError, match="simulator_args may use"):
        Host(name="x", simulator_args=["{secret}"])
