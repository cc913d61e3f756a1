"""The inference service (inference/): a bundle the reference simulator exported gives, through
``POST /act``, the actions the simulator's own controller took on every step of an episode; a
load swaps bundles without a failed request; bad input is a 4xx naming what is wrong.

Real HTTP over a real Unix socket to the service's own server, in a thread of this process."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference.policy import BATTERY_OBS, PolicyError, load_policy
from inference.service import Serving, make_server
from simulator.agents import make_controller
from simulator.bundle import MANIFEST, build_bundle
from simulator.config import validate_config
from simulator.environment import DistrictEnv
from simulator.sample import sample_dataset


def _config(algorithm: str, buildings: int):
    return validate_config({"experiment": {"name": "x", "run_name": "y"}, "algorithm": algorithm, "episodes": 2,
                            "simulation": {"buildings": buildings, "days": 3}})


def _trained(algorithm: str, buildings: int = 3):
    config = _config(algorithm, buildings)
    data = sample_dataset(buildings, 3, 0)
    controller = make_controller(algorithm, data, config.params, 0)
    env = DistrictEnv(data)
    if controller.learns:
        from simulator.agents import run_episode

        for _ in range(3):
            run_episode(env, controller, train=True)
    return config, data, controller, env


def _observations(env: DistrictEnv, data) -> list[list[float]]:
    """Each agent's observation vector at the env's current step (docs/inference.md)."""
    t, out = env.t, []
    need = env.ev_need()
    for i in range(data.buildings):
        obs = [float(data.hour[t]), float(data.price[t, i]), float(data.load[t, i]), float(data.pv[t, i]), float(env.soc[i])]
        for j in np.flatnonzero(data.chargers.building == i):
            obs += [float(need[j]), float(env.ev_later_energy[t, j]), float(env.ev_step_energy[t, j])]
        out.append(obs)
    return out


def _bundle(root: Path, name: str, algorithm: str, buildings: int = 3):
    config, data, controller, env = _trained(algorithm, buildings)
    folder = root / name
    folder.mkdir(parents=True)
    build_bundle(folder, config, data, controller)
    return folder, data, controller, env


@pytest.mark.parametrize("algorithm", ["rule_based", "q_learning", "no_control"])
def test_bundle_policy_takes_the_controllers_actions_on_every_step(tmp_path, algorithm):
    folder, data, controller, env = _bundle(tmp_path, "b", algorithm)
    policy = load_policy(folder / MANIFEST, folder, "b")
    env.reset()
    controller.start_episode(env, train=False)
    charger_of = [list(np.flatnonzero(data.chargers.building == i)) for i in range(data.buildings)]
    steps = 0
    while not env.done:
        actions = policy.act(_observations(env, data))
        battery, ev = controller.act(env)
        for i in range(data.buildings):
            expected = [float(np.clip(battery[i], -1, 1)), *(float(np.clip(ev[j], 0, 1)) for j in charger_of[i])]
            assert actions[i] == pytest.approx(expected, abs=1e-9), f"step {env.t}, agent {i}"
        controller.feedback(env, env.step(battery, ev))
        steps += 1
    assert steps == data.steps


def test_altered_or_escaping_bundles_are_refused(tmp_path):
    folder, *_ = _bundle(tmp_path, "b", "rule_based")
    (folder / "policy_agent_0.json").write_text("{}")
    with pytest.raises(PolicyError, match="sha256"):
        load_policy(folder / MANIFEST, folder, "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["agent"]["artifacts"][0]["path"] = "../outside.json"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PolicyError, match="leaves the bundle"):
        load_policy(folder / MANIFEST, folder, "b")


@pytest.fixture
def service(tmp_path):
    root = tmp_path / "bundles"
    root.mkdir()
    server = make_server(f"unix:{tmp_path / 'inference.sock'}", Serving(root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(tmp_path / "inference.sock")), base_url="http://inference", timeout=10) as client:
        yield client, root
    server.shutdown()
    server.server_close()


def test_service_health_load_act_and_switch(service):
    client, root = service
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["configured"] is False and health["bundle_id"] is None
    assert client.post("/act", json={"observations": [[0] * 8]}).status_code == 409
    a, data, _, env = _bundle(root, "aaaa", "rule_based")
    b, *_ = _bundle(root, "bbbb", "no_control")
    r = client.post("/admin/load", json={"manifest_path": str(a / MANIFEST), "artifacts_dir": str(a)})
    assert r.status_code == 200 and r.json()["bundle_id"] == "aaaa" and r.json()["agents"] == 3, r.text
    health = client.get("/health").json()
    assert health["configured"] and health["bundle_id"] == "aaaa" and health["manifest_path"] == str((a / MANIFEST).resolve())
    assert health["observation_dimensions"] == [BATTERY_OBS + 3] * 3
    env.reset()
    obs = _observations(env, data)
    acted = client.post("/act", json={"observations": obs}).json()
    assert acted["bundle_id"] == "aaaa" and len(acted["actions"]) == 3 and all(len(x) == 2 for x in acted["actions"])
    # switch while a client keeps calling: every answer is 200, from one bundle or the other
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def caller() -> None:
        with httpx.Client(transport=client._transport, base_url="http://inference", timeout=10) as c:
            while not stop.is_set():
                r = c.post("/act", json={"observations": obs})
                answers.append((r.status_code, r.json().get("bundle_id")))

    thread = threading.Thread(target=caller)
    thread.start()
    r = client.post("/admin/load", json={"manifest_path": str(b / MANIFEST), "bundle_id": "bbbb"})
    after = client.post("/act", json={"observations": obs}).json()
    stop.set()
    thread.join()
    assert r.status_code == 200 and r.json()["previous_bundle_id"] == "aaaa"
    assert after["bundle_id"] == "bbbb" and [x[0] for x in after["actions"]] == [0.0] * 3, "no_control: batteries idle"
    assert answers and {s for s, _ in answers} == {200} and {b for _, b in answers} <= {"aaaa", "bbbb"}


def test_service_refuses_bad_input_and_keeps_serving(service, tmp_path):
    client, root = service
    a, data, _, env = _bundle(root, "aaaa", "rule_based")
    assert client.post("/admin/load", json={"manifest_path": str(a / MANIFEST)}).status_code == 200
    outside = tmp_path / "outside"
    shutil.copytree(a, outside)
    for body, status, words in [
        ({"manifest_path": str(outside / MANIFEST)}, 400, "outside the bundle root"),
        ({"manifest_path": str(root / ".." / "outside" / MANIFEST)}, 400, "outside the bundle root"),
        ({}, 400, "manifest_path"),
        ({"manifest_path": str(root / "missing" / MANIFEST)}, 422, "cannot be loaded"),
    ]:
        r = client.post("/admin/load", json=body)
        assert r.status_code == status and words in r.json()["detail"], (body, r.text)
    (root / "link").symlink_to(outside)
    r = client.post("/admin/load", json={"manifest_path": str(root / "link" / MANIFEST)})
    assert r.status_code == 400, "a link out of the root resolves outside it"
    env.reset()
    good = _observations(env, data)
    for obs, words in [(None, "list of 3"), (good[:2], "list of 3"), ([good[0], good[1], good[2][:-1]], "observations[2]"),
                       ([good[0], good[1], [*good[2][:-1], "x"]], "not a finite number"),
                       ([good[0], good[1], [*good[2][:-1], True]], "not a finite number")]:
        r = client.post("/act", json={"observations": obs})
        assert r.status_code == 422 and words in r.json()["detail"], (obs, r.text)
    r = client.post("/act", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    assert client.post("/act", json=[1]).status_code == 400
    assert client.post("/nope", json={}).status_code == 404
    assert client.get("/health").json()["bundle_id"] == "aaaa", "every refusal left the loaded bundle serving"
    assert client.post("/act", json={"observations": good}).status_code == 200


def test_a_restarted_service_reloads_its_last_bundle_and_nothing_a_forged_file_names(tmp_path):
    root = tmp_path / "bundles"
    root.mkdir()
    remembered = tmp_path / "last-load.json"
    a, *_ = _bundle(root, "aaaa", "rule_based")
    b, *_ = _bundle(root, "bbbb", "no_control")
    first = Serving(root, remembered)
    first.reload_remembered()
    assert first.policy is None, "a fresh start (no file) serves nothing"
    assert first.load({"manifest_path": str(a / MANIFEST)})[0] == 200
    assert first.load({"manifest_path": str(b / MANIFEST), "bundle_id": "bbbb"})[0] == 200
    assert first.load({"manifest_path": str(root / "nope" / MANIFEST)})[0] == 422  # a failed load is not remembered

    again = Serving(root, remembered)  # the restart: same command, same file
    again.reload_remembered()
    assert again.policy is not None and again.policy.bundle_id == "bbbb" and again.health()["last_load"]["status"] == "loaded"

    outside = tmp_path / "outside"
    shutil.copytree(a, outside)
    forged = [json.dumps({"manifest_path": str(outside / MANIFEST), "bundle_id": "x"}), "not json", "[1, 2]", "{" * 70000]
    for text in forged:
        remembered.write_text(text)
        s = Serving(root, remembered)
        s.reload_remembered()
        assert s.policy is None, text[:80]
    remembered.unlink()
    remembered.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps({"manifest_path": str(a / MANIFEST)}))
    s = Serving(root, remembered)
    s.reload_remembered()
    assert s.policy is None, "a link is not followed"
    remembered.unlink()
    os.mkfifo(remembered)
    s = Serving(root, remembered)
    s.reload_remembered()  # a FIFO neither blocks the start nor loads anything
    assert s.policy is None
