"""The rules under the routes, called directly: job variables on a GPU host, the one config rule."""

from __future__ import annotations

import pytest

from core.experiment import ExperimentConfigConflict, ExperimentConfigError, ExperimentConfigMissing, job_name_of, resolve_experiment
from core.hosts import GpuRequest, Host
from core.layout import DataRoot, UnsafeNameError


J1, J2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"  # job ids are canonical UUIDs


def test_job_resources_keep_a_gpu_hosts_device_requests():
    from core.limits import Resources
    from api.usecases.jobs import job_variables_for

    gpu = Host(name="gpu-1", gpus=GpuRequest(count=-1))
    merged = job_variables_for(gpu, Resources(cpus=2, memory="4g"))
    assert merged["container_create_kwargs"] == {"nano_cpus": 2_000_000_000, "device_requests": [gpu.gpus.device_request()]}
    assert merged["mem_limit"] == "4g"
    own = job_variables_for(gpu, Resources(gpus=1))  # a job asking for GPUs itself keeps its own request
    assert own["container_create_kwargs"]["device_requests"][0]["Count"] == 1
    assert job_variables_for(Host(name="cpu"), Resources(cpus=1))["container_create_kwargs"] == {"nano_cpus": 1_000_000_000}
    assert job_variables_for(gpu, None) == {}  # nothing overridden: the pool's defaults apply whole


def test_resolve_experiment_one_rule(tmp_path):
    root = DataRoot(tmp_path)
    root.ensure_layout()
    (root.configs_dir / "ui.yaml").write_text("metadata: {experiment_name: e, run_name: r}\n# kept\n")
    bare = resolve_experiment(root, config=None, config_path="ui.yaml", save_as=None, job_id=None)
    assert bare.source == "configs/ui.yaml" and job_name_of(bare.config) == "e-r"
    job = resolve_experiment(root, config=None, config_path="configs/ui.yaml", save_as=None, job_id=J1)
    assert job.path == root.job(J1).config_file and job.path.read_text().endswith("# kept\n")
    (root.configs_dir / "ui.yaml").write_text("metadata: {experiment_name: changed, run_name: r}\n")
    retry = resolve_experiment(root, config=None, config_path="ui.yaml", save_as=None, job_id=J1)
    assert job_name_of(retry.config) == "e-r"  # a retry runs what the first attempt ran

    saved = resolve_experiment(root, config={"a": 1}, config_path=None, save_as="s.yaml", job_id=None)
    assert saved.path == root.config_file("s.yaml") and job_name_of(saved.config) is None
    assert resolve_experiment(root, config={"a": 1}, config_path=None, save_as="s.yaml", job_id=J2).path == root.job(J2).config_file
    with pytest.raises(ExperimentConfigConflict) as conflict:
        resolve_experiment(root, config={"a": 2}, config_path=None, save_as="s.yaml", job_id=None)
    assert conflict.value.file == "configs/s.yaml"
    with pytest.raises(ExperimentConfigMissing):
        resolve_experiment(root, config=None, config_path="nope.yaml", save_as=None, job_id=None)
    with pytest.raises(UnsafeNameError):
        resolve_experiment(root, config=None, config_path="../x.yaml", save_as=None, job_id=None)
    with pytest.raises(ExperimentConfigError):
        resolve_experiment(root, config={"a": 1}, config_path="ui.yaml", save_as=None, job_id=None)
    assert job_name_of({"experiment": {"name": "old", "run_name": "style"}}) == "old-style"
    assert job_name_of({"metadata": {"experiment_name": "m"}, "experiment": {"name": "x", "run_name": "y"}}) == "x-y"
