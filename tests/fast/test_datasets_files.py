"""Dataset folders over HTTP: list (a bare array), upload (safe extraction), download, delete,
and the site lists the dataset page reads."""

from __future__ import annotations

import io
import json
import os
import stat
import uuid
import zipfile
from datetime import datetime, timezone

import pytest

from core.datasets import files_digest
from tools.seed_site import seed_ev_site, seed_site

END = datetime(2026, 3, 30, tzinfo=timezone.utc)  # across the Lisbon DST change of 2026-03-29


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _upload(api, name: str, data: bytes, filename: str = "d.zip"):
    return api.post("/dataset/upload", files={"file": (filename, data, "application/zip")}, data={"name": name})


def test_upload_list_download_delete(api, storage):
    name = f"up-{uuid.uuid4().hex[:6]}"
    data = _zip({f"{name}/schema.json": b'{"buildings": {}}', f"{name}/Building_1.csv": b"month,hour\n1,1\n"})
    r = _upload(api, name, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Dataset uploaded" and body["name"] == name and body["size_bytes"] > 0
    assert (storage.dataset_dir(name) / "Building_1.csv").read_text() == "month,hour\n1,1\n"  # the top folder dropped
    assert _upload(api, name, data).status_code == 409

    listed = api.get("/datasets").json()
    assert isinstance(listed, list)
    entry = next(d for d in listed if d["name"] == name)
    assert entry["description"] == "" and entry["source"] == "upload" and entry["size"] > 0
    (storage.datasets_dir / ".tmp-halfbuilt-123").mkdir(exist_ok=True)
    assert not any(d["name"].startswith(".") for d in api.get("/datasets").json())

    z = api.get(f"/dataset/download/{name}")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    assert f"{name}/Building_1.csv" in zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert api.delete(f"/dataset/{name}").json() == {"message": f"Dataset {name} deleted"}
    assert api.get(f"/dataset/download/{name}").status_code == 404
    assert api.delete(f"/dataset/{name}").status_code == 404


def test_an_upload_is_versioned_by_its_files_not_by_what_its_zip_claims(api, storage):
    """The digest jobs record as the dataset's version (GET /dataset/{name}/lineage) is computed at
    upload from the files; a ``dataset.json`` in the zip naming another digest does not set it."""
    a, b = (f"up-{uuid.uuid4().hex[:6]}" for _ in range(2))
    files = {"schema.json": b'{"buildings": {}}', "Building_1.csv": b"month,hour\n1,1\n"}
    assert _upload(api, a, _zip(files)).status_code == 200
    assert _upload(api, b, _zip({**files, "dataset.json": b'{"digest": "forged", "description": "mine"}'})).status_code == 200
    meta_a, meta_b = (json.loads((storage.dataset_dir(n) / "dataset.json").read_text()) for n in (a, b))
    assert meta_a["digest"] == meta_b["digest"] == files_digest(storage.dataset_dir(a)) != "forged"
    assert meta_b["description"] == "mine"


@pytest.mark.parametrize("data, words", [
    (b"not a zip at all", "not a zip"),
    (_zip({}), "no files"),
    (_zip({"../evil.csv": b"x"}), "unsafe"),
    (_zip({"/abs/evil.csv": b"x"}), "unsafe"),
    (_zip({"ok/a.csv": b"x", "ok/../../b.csv": b"y"}), "unsafe"),
    (_zip({"a.csv": b"x"}, links=("link",)), "link"),
])
def test_upload_refuses_unsafe_or_empty_zips(api, storage, data, words):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    r = _upload(api, name, data)
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert not storage.dataset_dir(name).exists()
    assert not [p for p in storage.datasets_dir.iterdir() if p.name.startswith(f".tmp-upload-{name}")]


def test_upload_name_and_size_limits(api):
    assert _upload(api, "../x", _zip({"a.csv": b"1"})).status_code == 400
    assert api.post("/dataset/upload", data={"name": "x"}).status_code == 422  # no file
    big = _zip({f"f{i}.csv": b"" for i in range(10_001)})
    assert _upload(api, f"many-{uuid.uuid4().hex[:6]}", big).status_code in (400, 413)
    for path in ("/dataset/download/..%2F..%2Fetc", "/dataset/download/.hidden"):
        assert 400 <= api.get(path).status_code < 500


def test_dataset_sites_and_dates_from_the_seeded_sites(api, mongo):
    living, ev = f"ll_{uuid.uuid4().hex[:6]}", f"ev_{uuid.uuid4().hex[:6]}"
    summary = seed_site(mongo, site=living, days=2, buildings=3, seed=3, end=END)
    assert summary["seeded"] and summary["collections"]["building_R-H-01"] == 2 * 96
    assert seed_site(mongo, site=living, days=2, buildings=3, seed=3, end=END)["seeded"] is False  # idempotent
    seed_ev_site(mongo, site=ev, days=2, seed=3, end=END)
    sites = {s["site_id"]: s["buildings"] for s in api.get("/dataset/sites").json()["sites"]}
    assert sites[living] == ["R-H-01", "R-H-02", "O-03"] and sites[ev] == ["i-charging_headquarters"]
    dates = api.get(f"/dataset/dates-available/{ev}").json()
    assert dates == [{"installation": "building_i-charging_headquarters_3Phase", "oldest_record": "2026-03-28T00:00:00+00:00",
                      "newest_record": "2026-03-29T23:45:00+00:00"}]
    assert api.get("/dataset/dates-available/nowhere").status_code == 404


def test_upload_over_the_json_body_limit_is_accepted_whole(api, storage):
    """A real dataset zip is bigger than the 5 MiB cap on other bodies: uploads have their own."""
    name = f"big-{uuid.uuid4().hex[:6]}"
    payload = os.urandom(7 * 1024 * 1024)  # incompressible: the zip stays over 7 MiB
    r = _upload(api, name, _zip({"schema.json": b'{"buildings": {}}', "blob.bin": payload}))
    assert r.status_code == 200, r.text
    assert (storage.dataset_dir(name) / "blob.bin").read_bytes() == payload
    assert api.post("/experiment-config/create", json={"file_name": "x.yaml", "yaml_content": "a: " + "b" * (6 * 1024 * 1024)}).status_code == 413
