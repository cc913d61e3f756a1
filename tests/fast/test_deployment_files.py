"""The declarative files agree with the code: prefect.yaml declares what
deployments.setup creates, and the hosts file refuses what it cannot mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from core.hosts import HostsFile, load_hosts
from deployments.setup import FLOWS, IMAGE_WORKDIR

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_the_setup_deployments():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    hosts = load_hosts(ROOT / "deployments" / "hosts.yaml", env={"OPEVA_DATA_DIR": "/data"})
    declared = {(d["entrypoint"], d["work_pool"]["name"]) for d in spec["deployments"]}
    expected = {(entrypoint, h.name) for h in hosts.hosts for entrypoint, _ in FLOWS.values()}
    assert declared == expected
    for d in spec["deployments"]:
        assert d["name"] == d["work_pool"]["name"]
        assert "job_variables" not in d["work_pool"]  # the pool fixes the command; a deployment cannot set it
    assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == IMAGE_WORKDIR


def test_hosts_file_expands_variables_and_checks_names(tmp_path):
    hosts = load_hosts(ROOT / "deployments" / "hosts.yaml", env={"OPEVA_DATA_DIR": "/srv/opeva"})
    assert hosts.get("local").volumes == ["/srv/opeva:/srv/opeva"]
    with pytest.raises(ValidationError, match="lower-case"):
        HostsFile.model_validate({"hosts": [{"name": "Bad_Name"}]})
    with pytest.raises(ValidationError, match="unique"):
        HostsFile.model_validate({"hosts": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValidationError):
        HostsFile.model_validate({"hosts": [{"name": "a", "gpu": 1}]})  # typo of 'gpus': refused, not ignored
    f = tmp_path / "hosts.yaml"
    f.write_text("hosts:\n  - name: a\n    volumes: ['${NOT_SET}:/x']\n")
    with pytest.raises(ValueError, match="NOT_SET"):
        load_hosts(f, env={})


def test_gpu_request_is_a_docker_device_request():
    hosts = HostsFile.model_validate({"hosts": [{"name": "gpu-1", "gpus": {"count": -1}}, {"name": "gpu-2", "gpus": {"device_ids": ["0", "1"]}}]})
    assert hosts.get("gpu-1").gpus.device_request() == {"Driver": "nvidia", "Capabilities": [["gpu"]], "Count": -1}
    assert hosts.get("gpu-2").gpus.device_request()["DeviceIDs"] == ["0", "1"]


def test_compose_files_parse_and_use_host_networking():
    for name in ("docker-compose.yml", "docker-compose.host.yml"):
        spec = yaml.safe_load((ROOT / name).read_text())
        for service_name, service in spec["services"].items():
            if service_name == "mlflow-relay":  # on the internal jobs network (docs/sandbox-network.md)
                assert service["networks"] == {"jobs": {"aliases": ["opeva-mlflow"]}}, name
                continue
            assert service.get("network_mode") == "host" or "<<" in service, name
