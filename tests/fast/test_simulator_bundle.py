"""The reference simulator exports its trained policy as a bundle (simulator/bundle.py): the
layout OPEVA's simulator writes (``artifact_manifest.json`` v1, Algorithms 0bc57d9), digests
that match the files, one agent per building of the config, and nothing outside ``bundle/``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator.agents import make_controller, run_episode
from simulator.bundle import MANIFEST, config_digest, export_bundle
from simulator.config import validate_config
from simulator.environment import DistrictEnv
from simulator.runner import main
from simulator.sample import sample_dataset

UPSTREAM_SECTIONS = ("manifest_version", "metadata", "simulator", "training", "topology", "pipeline", "environment", "agent")


def _config(algorithm: str, buildings: int = 2, **extra) -> dict:
    return {"experiment": {"name": "x", "run_name": "y"}, "algorithm": algorithm, "episodes": 3,
            "simulation": {"buildings": buildings, "days": 2}, **extra}


def _run(tmp_path: Path, config: dict) -> tuple[dict, Path]:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 0
    return json.loads((tmp_path / "out" / "result.json").read_text()), tmp_path / "out" / "bundle"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _check_digests(bundle: Path, manifest: dict) -> None:
    on_disk = _files(bundle)
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(on_disk) - {MANIFEST}, "the manifest lists every other file, and only those"
    for path, content in on_disk.items():
        if path != MANIFEST:
            assert listed[path]["sha256"] == hashlib.sha256(content).hexdigest() and listed[path]["size_bytes"] == len(content)


def _check_upstream_contract(bundle: Path, manifest: dict) -> None:
    """What upstream's utils/bundle_validator.py checks, for the formats both sides know."""
    assert all(s in manifest for s in UPSTREAM_SECTIONS) and manifest["manifest_version"] == 1
    assert manifest["metadata"]["experiment_name"] == "x" and manifest["metadata"]["run_name"] == "y"
    env, topo, agent = manifest["environment"], manifest["topology"], manifest["agent"]
    assert len(env["observation_names"]) == len(env["encoders"]) == topo["num_agents"]
    assert [len(n) for n in env["observation_names"]] == topo["observation_dimensions"]
    assert [a["agent_index"] for a in agent["artifacts"]] == list(range(topo["num_agents"]))
    for art in agent["artifacts"]:
        target = (bundle / art["path"]).resolve()
        assert target.is_file() and bundle.resolve() in target.parents and isinstance(art["config"], dict)
        if art["format"] == "rule_based":
            assert target.name == f"policy_agent_{art['agent_index']}.json"
        policy = json.loads(target.read_text())
        assert policy["observation_names"] == env["observation_names"][art["agent_index"]]
        assert len(policy["action_names"]) == art["action_dimension"] == topo["action_dimensions"][art["agent_index"]]


def test_q_learning_exports_its_q_tables_with_matching_digests_and_layout(tmp_path):
    result, bundle = _run(tmp_path, _config("q_learning", buildings=3))
    manifest_bytes = (bundle / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    assert result["bundle_available"] is True and result["bundle_dir"] == "bundle"
    assert result["bundle_manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    _check_digests(bundle, manifest)
    _check_upstream_contract(bundle, manifest)
    names = sample_dataset(3, 2, 0).building_names
    assert [a["building"] for a in manifest["topology"]["agents"]] == list(names)
    assert manifest["agent"]["format"] == "q_table" and manifest["training"]["episodes"] == 3
    assert manifest["simulator"]["dataset_name"] == result["dataset"]
    assert manifest["created_at"].endswith("Z") and len(manifest["simulator"]["config_sha256"]) == 64
    table = json.loads((bundle / "q_tables" / "agent_0.json").read_text())
    q = np.array(table["q"])
    assert q.shape == (3 * 3 * 2 * 4, 5) and np.abs(q).sum() > 0, "the trained table, not zeros"
    assert table["episodes_trained"] == 3 and table["building"] == names[0]


def test_q_tables_are_the_controllers_own(tmp_path):
    """The exported table is the one the agent learned (rows of building i), not a recomputation."""
    config = validate_config(_config("q_learning"))
    data = sample_dataset(2, 2, 0)
    controller = make_controller("q_learning", data, config.params, 0)
    env = DistrictEnv(data)
    for _ in range(2):
        run_episode(env, controller, train=True)
    export_bundle(tmp_path, config, data, controller)
    states = controller.q.shape[0] // 2
    for i in range(2):
        exported = np.array(json.loads((tmp_path / "bundle" / "q_tables" / f"agent_{i}.json").read_text())["q"])
        assert np.allclose(exported, controller.q[i * states:(i + 1) * states], atol=1e-8)


@pytest.mark.parametrize("algorithm", ["rule_based", "no_control"])
def test_rule_based_policies_export_their_parameters_in_the_buildings_units(tmp_path, algorithm):
    _, bundle = _run(tmp_path, _config(algorithm))
    manifest = json.loads((bundle / MANIFEST).read_text())
    _check_digests(bundle, manifest)
    _check_upstream_contract(bundle, manifest)
    assert manifest["agent"]["format"] == "rule_based" and manifest["training"]["episodes"] == 0
    data = sample_dataset(2, 2, 0)
    policy = json.loads((bundle / "policy_agent_1.json").read_text())
    assert policy["building"] == data.building_names[1] and policy["battery"]["capacity_kwh"] == float(data.batteries.capacity[1])
    if algorithm == "rule_based":
        low, high = data.price[:, 1].min(), data.price[:, 1].max()
        rule = policy["battery_rule"]
        assert rule["cheap_price_below"] == pytest.approx(low + 0.25 * (high - low))
        assert rule["discharge_price_at_or_above"] == pytest.approx(low + 0.5 * (high - low))
    else:
        assert policy["policy_type"] == "no_control" and policy["battery_rule"] == {"idle": True}


def test_export_writes_only_bundle_and_replaces_a_previous_one_whole(tmp_path):
    job = tmp_path / "job"
    (job / "results").mkdir(parents=True)
    (job / "results" / "keep.txt").write_text("kept")
    config = validate_config(_config("rule_based"))
    data = sample_dataset(2, 2, 0)
    controller = make_controller("rule_based", data, config.params, 0)
    export_bundle(job, config, data, controller)
    (job / "bundle" / "stale.bin").write_bytes(b"x")
    before = _files(job)
    export_bundle(job, config, data, controller)
    after = _files(job)
    assert sorted(p.name for p in job.iterdir()) == ["bundle", "results"], "no temporary folder left"
    assert "bundle/stale.bin" not in after, "a re-export replaces the bundle whole"
    assert {k: v for k, v in before.items() if not k.startswith("bundle/")} == {k: v for k, v in after.items() if not k.startswith("bundle/")}


def test_the_run_writes_the_bundle_into_the_job_folder_it_is_given(tmp_path, monkeypatch):
    """Under the platform: ``OPEVA_JOB_DIR``; the run's other outputs stay where they were."""
    job = tmp_path / "jobs" / "j1"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config("rule_based")))
    for name, value in {"OPEVA_JOB_DIR": job, "OPEVA_CONFIG_PATH": tmp_path / "c.yaml", "OPEVA_LOG_FILE": job / "logs" / "s.log",
                        "OPEVA_PROGRESS_FILE": job / "progress" / "progress.json", "OPEVA_RESULT_FILE": job / "results" / "result.json"}.items():
        monkeypatch.setenv(name, str(value))
    assert main([]) == 0
    assert sorted(p.name for p in job.iterdir()) == ["bundle", "logs", "progress", "results"]
    assert (job / "bundle" / MANIFEST).is_file() and not (tmp_path / "bundle").exists()


def test_config_digest_ignores_spelling_but_not_content():
    base = _config("rule_based")
    spelled = {**base, "algorithm": {"name": "rule_based", "params": {"cheap_price_fraction": 0.25}}, "seed": 0}
    assert config_digest(validate_config(base)) == config_digest(validate_config(spelled))
    assert config_digest(validate_config(base)) != config_digest(validate_config({**base, "seed": 1}))
