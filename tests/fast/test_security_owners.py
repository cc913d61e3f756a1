"""Owners: configs, datasets and site schemas belong to who made them (docs/security.md).

Against real API processes with tokens for alice, bob and an admin (root): bob reads
alice's things but cannot change or delete them (403 naming the owner); root may; an
item with no recorded owner is changed by admins only; ``OPEVA_SHARED_READ=false``
hides others' items; with auth off everything belongs to the one local user."""

from __future__ import annotations

import io
import os
import stat
import uuid
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from deployments.platform import Platform, free_port

TOKENS = {"alice": "tok-own-alice", "bob": "tok-own-bob", "root": "tok-own-root"}
SCHEMA = {"electric_vehicles_def": {}, "buildings": {}}


def _api(platform, **env: str) -> Platform:
    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"), **env)
    return api


@pytest.fixture(scope="module")
def owners_api(platform) -> Iterator[str]:
    api = _api(platform, OPEVA_API_TOKENS=",".join(f"{u}:{t}" for u, t in TOKENS.items()), OPEVA_API_ADMINS="root")
    yield api.api_url
    api.stop()


@pytest.fixture(scope="module")
def private_api(platform) -> Iterator[str]:
    api = _api(platform, OPEVA_API_TOKENS=",".join(f"{u}:{t}" for u, t in TOKENS.items()), OPEVA_API_ADMINS="root",
               OPEVA_SHARED_READ="false")
    yield api.api_url
    api.stop()


def as_user(url: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKENS[user]}"})


def zipped(name: str = "Building_1.csv") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, "a,b\n1,2\n")
    return buf.getvalue()


def test_configs_belong_to_their_maker(owners_api):
    name = f"own-{uuid.uuid4().hex[:8]}.yaml"
    body = {"file_name": name, "yaml_content": "experiment:\n  name: a\n  run_name: r\n"}
    with as_user(owners_api, "alice") as alice, as_user(owners_api, "bob") as bob, as_user(owners_api, "root") as root:
        assert alice.post("/experiment-config/create", json=body).status_code == 200
        assert bob.get(f"/experiment-config/{name}").status_code == 200  # shared read (the default)
        assert name in bob.get("/experiment-configs").json()
        for refused in (bob.put(f"/experiment-config/{name}", json={"yaml_content": "x: 1\n"}),
                        bob.post("/experiment-config/create", json={**body, "overwrite": True}),
                        bob.delete(f"/experiment-config/{name}")):
            assert refused.status_code == 403, refused.text
            assert "belongs to alice" in refused.json()["detail"] and refused.json()["owner"] == "alice"
        assert "name: a" in alice.get(f"/experiment-config/{name}", params={"format": "yaml"}).text  # unchanged
        assert alice.put(f"/experiment-config/{name}", json={"yaml_content": "experiment:\n  name: b\n  run_name: r\n"}).status_code == 200
        assert root.put(f"/experiment-config/{name}", json={"yaml_content": "experiment:\n  name: c\n  run_name: r\n"}).status_code == 200
        assert root.delete(f"/experiment-config/{name}").status_code == 200  # an admin may
        # Re-made by bob after its deletion: bob's now.
        assert bob.post("/experiment-config/create", json=body).status_code == 200
        assert alice.delete(f"/experiment-config/{name}").status_code == 403
        assert bob.delete(f"/experiment-config/{name}").status_code == 200


def test_save_as_of_a_job_is_owned_by_the_submitter(owners_api):
    name = f"saved-{uuid.uuid4().hex[:8]}.yaml"
    with as_user(owners_api, "alice") as alice, as_user(owners_api, "bob") as bob:
        r = alice.post("/run-simulation", json={"config": {"experiment": {"name": "s", "run_name": "r"}}, "save_as": name})
        assert r.status_code == 200, r.text
        assert bob.delete(f"/experiment-config/{name}").status_code == 403
        assert alice.delete(f"/experiment-config/{name}").status_code == 200


def test_datasets_belong_to_their_uploader(owners_api, storage):
    name = f"own-ds-{uuid.uuid4().hex[:8]}"
    with as_user(owners_api, "alice") as alice, as_user(owners_api, "bob") as bob, as_user(owners_api, "root") as root:
        up = alice.post("/dataset/upload", files={"file": ("d.zip", zipped(), "application/zip")}, data={"name": name})
        assert up.status_code == 200, up.text
        assert bob.get(f"/dataset/download/{name}").status_code == 200
        refused = bob.delete(f"/dataset/{name}")
        assert refused.status_code == 403 and "belongs to alice" in refused.json()["detail"], refused.text
        assert storage.dataset_dir(name).is_dir()
        assert root.delete(f"/dataset/{name}").status_code == 200
        assert not storage.dataset_dir(name).exists()


def test_site_schemas_belong_to_their_creator(owners_api):
    site = f"own_site_{uuid.uuid4().hex[:8]}"
    with as_user(owners_api, "alice") as alice, as_user(owners_api, "bob") as bob, as_user(owners_api, "root") as root:
        assert alice.post("/schema/create", json={"site": site, "schema": SCHEMA}).status_code == 200
        assert bob.get(f"/schema/{site}").status_code == 200
        refused = bob.put(f"/schema/update/{site}", json={"schema": SCHEMA})
        assert refused.status_code == 403 and "belongs to alice" in refused.json()["detail"], refused.text
        assert alice.put(f"/schema/update/{site}", json={"schema": SCHEMA}).status_code == 200
        assert root.put(f"/schema/update/{site}", json={"schema": SCHEMA}).status_code == 200
        assert bob.put("/schema/update/no_such_site_x", json={"schema": SCHEMA}).status_code == 404  # unknown first, no owner told


def test_items_without_an_owner_are_changed_by_admins_only(owners_api, storage):
    name = f"legacy-{uuid.uuid4().hex[:8]}.yaml"
    storage.write_atomic(storage.config_file(name), "experiment:\n  name: old\n  run_name: r\n")  # made before owners were kept
    with as_user(owners_api, "alice") as alice, as_user(owners_api, "root") as root:
        assert alice.get(f"/experiment-config/{name}").status_code == 200
        refused = alice.delete(f"/experiment-config/{name}")
        assert refused.status_code == 403 and "no recorded owner" in refused.json()["detail"]
        assert root.delete(f"/experiment-config/{name}").status_code == 200


def test_shared_read_off_hides_other_users_items(private_api):
    name = f"priv-{uuid.uuid4().hex[:8]}.yaml"
    with as_user(private_api, "alice") as alice, as_user(private_api, "bob") as bob, as_user(private_api, "root") as root:
        assert alice.post("/experiment-config/create", json={"file_name": name, "yaml_content": "x: 1\n"}).status_code == 200
        assert name in alice.get("/experiment-configs").json()
        assert name not in bob.get("/experiment-configs").json()
        assert bob.get(f"/experiment-config/{name}").status_code == 404
        assert root.get(f"/experiment-config/{name}").status_code == 200
        assert alice.delete(f"/experiment-config/{name}").status_code == 200


def test_single_user_mode_owns_everything(api, storage):
    """Auth off: the one local user changes anything, an item owned by a token user included."""
    name = f"single-{uuid.uuid4().hex[:8]}.yaml"
    from core.owners import OwnerStore

    storage.write_atomic(storage.config_file(name), "x: 1\n")
    OwnerStore(storage.root).claim("config", name, "alice")
    assert api.put(f"/experiment-config/{name}", json={"yaml_content": "x: 2\n"}).status_code == 200
    assert api.delete(f"/experiment-config/{name}").status_code == 200
    assert OwnerStore(storage.root).owner("config", name) is None


def test_the_owner_store_is_private_and_refuses_links(storage, tmp_path):
    from core.owners import OwnerStore

    store = OwnerStore(storage.root)
    store.claim("dataset", "probe", "alice")
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.forget("dataset", "probe")
    # A link planted where the store goes is never followed (nor written through).
    root = tmp_path / "root"
    (root / ".platform").mkdir(parents=True)
    target = tmp_path / "victim.json"
    target.write_text("{}")
    (root / ".platform" / "owners.json").symlink_to(target)
    with pytest.raises(OSError):
        OwnerStore(root).owner("config", "x")
    with pytest.raises(OSError):
        OwnerStore(root).claim("config", "x", "bob")
    assert target.read_text() == "{}"
