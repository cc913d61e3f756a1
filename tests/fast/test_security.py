"""Hostile requests against the running API: traversal, links out of the data root, hostile
JSON and YAML, races. Every answer must be a 4xx with a JSON ``detail`` (never a 500), and
canary files inside and outside the data root must keep their content and mtime.

Routes are hit under this branch's names and the upstream OPEVA names (OPEVA_UPSTREAM.md);
a route that does not exist answers 404, which is also a clean 4xx.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from helpers import wait_for
from secure_http import assert_clean_4xx, raw_request, snapshot

SECRET = f"OUTSIDE-CANARY-{uuid.uuid4().hex}"
INSIDE = f"INSIDE-CANARY-{uuid.uuid4().hex}"
ALIAS_BOMB = (  # 237 bytes; plain yaml.safe_load makes it 4.3 MB of JSON (531 441 values)
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)
HOSTILE_YAML = {
    "alias-bomb": ALIAS_BOMB,
    "alias-bomb-5": ALIAS_BOMB.rsplit("f:", 1)[0],  # 202 bytes -> 481 KB of JSON (x2400), like the 285-byte one
    "deep-3000": "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep-300-map": "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n",
    "binary": "experiment: {name: a, run_name: b}\nblob: !!binary aGVsbG8=\n",
    "python-object": "x: !!python/object/apply:os.system ['true']\n",
    "set": "x: !!set {a, b}\n",
    "huge-int": "n: " + "7" * 5000 + "\n",
    "bad-date": "when: 2001-13-45\n",
    "nan": "x: .nan\n",
    "recursive-alias": "a: &a [*a]\n",
}
TRAVERSALS = [
    "..", "%2e%2e", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "..%2f..%2fetc%2fpasswd", "%252e%252e%252fetc",
    "..%5c..%5cetc%5cpasswd", "..\\..\\etc", "canary.yaml%00.txt", "%00", "%c0%ae%c0%ae", "%e2%80%a4%e2%80%a4",
    "%ef%bc%8e%ef%bc%8e", "leak.yaml%0a", "canary.yaml%0a", ".hidden", "-rf", "a" * 300, "%2fetc%2fpasswd",
]


@pytest.fixture(scope="module")
def canaries(storage):
    """Canary files inside the root, a secret outside it, and links from inside pointing out."""
    outside = Path(tempfile.mkdtemp(prefix="opeva-outside-"))
    (outside / "secret.yaml").write_text(f"experiment: {{name: {SECRET}, run_name: r}}\n")
    (outside / "secret.json").write_text(f'{{"percent": 99, "stage": "{SECRET}"}}')
    (outside / "dir").mkdir()
    (outside / "dir" / "data.csv").write_text(f"{SECRET}\n")
    storage.ensure_layout()
    inside = [storage.configs_dir / "canary.yaml", storage.datasets_dir / "canary-ds" / "data.csv"]
    inside[0].write_text(f"experiment: {{name: {INSIDE}, run_name: r}}\n")
    inside[1].parent.mkdir(exist_ok=True)
    inside[1].write_text(f"{INSIDE}\n")
    links = {
        storage.configs_dir / "leak.yaml": outside / "secret.yaml",
        storage.configs_dir / "leak-dir.yaml": outside / "dir",
        storage.datasets_dir / "leak-ds": outside / "dir",
        storage.datasets_dir / "mixed-ds" / "link.csv": outside / "dir" / "data.csv",
        storage.datasets_dir / "mixed-ds" / "linkdir": outside / "dir",
    }
    (storage.datasets_dir / "mixed-ds").mkdir(exist_ok=True)
    (storage.datasets_dir / "mixed-ds" / "real.csv").write_text("a,b\n1,2\n")
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)
    watched = [*inside, *outside.rglob("*"), outside, *links]
    return {"outside": outside, "watched": watched, "before": snapshot(watched)}


@pytest.fixture(autouse=True)
def untouched(canaries):
    yield
    assert snapshot(canaries["watched"]) == canaries["before"]


def test_traversal_encodings_reach_handlers_and_get_4xx(platform, canaries):
    routes = [
        ("GET", "/experiment-configs/{}"), ("GET", "/experiment-config/{}"), ("GET", "/config/{}"),
        ("DELETE", "/experiment-configs/{}"), ("DELETE", "/experiment-config/{}"), ("GET", "/dataset/download/{}"),
        ("DELETE", "/dataset/{}"), ("GET", "/status/{}"), ("DELETE", "/job/{}"), ("GET", "/progress/{}"),
        ("GET", "/result/{}"), ("GET", "/job-info/{}"), ("GET", "/file-logs/{}"), ("GET", "/logs/{}?follow=false"),
        ("GET", "/job-resolved-config/{}"), ("GET", "/dataset/dates-available/{}"), ("GET", "/schema/{}"),
    ]
    for method, route in routes:
        for name in TRAVERSALS:
            answer = raw_request(platform.api_url, method, route.format(name))
            assert_clean_4xx(answer, SECRET, INSIDE)


@pytest.mark.parametrize("path", ["configs/../../etc/passwd", "/etc/passwd", "configs/leak.yaml", "configs/leak-dir.yaml",
                                  "configs/..%2f..%2fetc", "configs\\..\\x.yaml", "configs/canary.yaml\n", "jobs", "."])
def test_config_path_is_confined_and_never_echoed(api, path):
    r = api.post("/run-simulation", json={"config_path": path})
    assert 400 <= r.status_code < 500, r.text
    assert SECRET not in r.text and "detail" in r.json()


def test_links_out_of_the_root_are_refused(api, storage):
    for route in ("/experiment-configs/leak.yaml", "/experiment-config/leak.yaml", "/config/leak-dir.yaml",
                  "/dataset/download/leak-ds"):
        r = api.get(route)
        assert 400 <= r.status_code < 500 and SECRET not in r.text, (route, r.status_code, r.text[:200])
        assert "detail" in r.json()
    assert "leak.yaml" not in api.get("/experiment-configs").text
    assert "leak-ds" not in api.get("/datasets").text


def test_job_and_dataset_files_of_the_wrong_shape_are_not_500(api, storage):
    (storage.datasets_dir / "list-meta").mkdir(exist_ok=True)
    (storage.datasets_dir / "list-meta" / "metadata.json").write_text("[1, 2]")
    assert api.get("/datasets").status_code == 200
    job_id = api.post("/run-simulation", json={"config": {"experiment": {"name": "shape", "run_name": "r"}}}).json()["job_id"]
    job = storage.job(job_id).create()
    job.job_info_file.write_text("[1, 2, 3]")
    job.progress_file.write_text('"text"')
    job.result_file.write_text("[" * 5000 + "]" * 5000)
    for route in (f"/job-info/{job_id}", f"/progress/{job_id}", f"/result/{job_id}", f"/status/{job_id}"):
        r = api.get(route)
        assert r.status_code < 500, (route, r.status_code, r.text[:200])
    api.post(f"/stop/{job_id}")


def test_zip_of_a_dataset_holding_links_stores_no_links(api):
    import io
    import zipfile

    r = api.get("/dataset/download/mixed-ds")
    assert r.status_code == 200, r.text
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert names == ["mixed-ds/real.csv"] and SECRET.encode() not in r.content


def test_deleting_linked_things_removes_the_link_only(api, storage, canaries):
    ds = storage.datasets_dir / "leak-ds-2"
    ds.symlink_to(canaries["outside"] / "dir")
    r = api.delete("/dataset/leak-ds-2")
    assert r.status_code in (200, 403), r.text
    if r.status_code == 200:
        assert not ds.is_symlink()
    cfg = storage.configs_dir / "leak-2.yaml"
    cfg.symlink_to(canaries["outside"] / "secret.yaml")
    for route in ("/experiment-configs/leak-2.yaml", "/experiment-config/leak-2.yaml"):
        r = api.delete(route)
        assert r.status_code in (200, 403, 404), r.text
    assert (canaries["outside"] / "dir" / "data.csv").is_file() and (canaries["outside"] / "secret.yaml").is_file()


def test_job_files_linked_out_are_refused(api, storage, canaries):
    job_id = api.post("/run-simulation", json={"config": {"experiment": {"name": "links", "run_name": "r"}}}).json()["job_id"]
    job = storage.job(job_id).create()
    for link, target in ((job.progress_file, "secret.json"), (job.result_file, "secret.json"), (job.simulator_log_file, "secret.yaml"),
                         (job.log_file, "secret.yaml"), (job.job_info_file, "secret.json")):
        link.symlink_to(canaries["outside"] / target)
    for route in (f"/progress/{job_id}", f"/result/{job_id}", f"/file-logs/{job_id}?follow=false", f"/job-info/{job_id}"):
        r = api.get(route)
        assert SECRET not in r.text, (route, r.status_code)
        assert 400 <= r.status_code < 500 or route.startswith("/job-info"), (route, r.status_code, r.text[:200])
    api.post(f"/stop/{job_id}")
    assert api.delete(f"/job/{job_id.upper()}").status_code == 200
    assert not job.dir.exists()  # the canonical folder went, though the id came in upper case


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_yaml_is_refused_on_create(api, name):
    text = HOSTILE_YAML[name]
    for route, body in (("/experiment-configs/create", {"file_name": f"h-{name}.yaml", "config": text}),
                        ("/experiment-config/create", {"file_name": f"h-{name}.yaml", "yaml_content": text})):
        r = api.post(route, json=body)
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text[:300])
        assert "detail" in r.json() and len(r.content) < 10_000


@pytest.mark.parametrize("name", ["alias-bomb", "deep-300-map", "binary", "huge-int", "bad-date", "recursive-alias"])
def test_hostile_yaml_stored_on_disk_is_refused_on_view_and_run(api, storage, name):
    (storage.configs_dir / f"stored-{name}.yaml").write_text(HOSTILE_YAML[name])
    # The JSON views parse the file: refused, never expanded.
    for route in (f"/experiment-configs/stored-{name}.yaml", f"/ai-manager-ui/experiment-config/stored-{name}.yaml"):
        r = api.get(route)
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text[:300])
        assert len(r.content) < 10_000
    # The root serves the file as stored (today's contract: raw text/yaml, never parsed): its bytes, nothing expanded.
    raw = api.get(f"/experiment-config/stored-{name}.yaml")
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/yaml")
    assert raw.content == (storage.configs_dir / f"stored-{name}.yaml").read_bytes()
    r = api.post("/run-simulation", json={"config_path": f"configs/stored-{name}.yaml"})
    assert 400 <= r.status_code < 500 and "detail" in r.json(), r.text[:300]


def test_ordinary_anchors_and_dates_are_accepted(api):
    text = ("defaults: &d {learning_rate: 0.2, discount: 0.95}\nexperiment: {name: anchors, run_name: r}\n"
            "a: *d\nb: *d\nc: {<<: *d, discount: 0.9}\nstart: 2025-06-01\nwhen: 2025-06-01T10:00:00Z\n")
    r = api.post("/experiment-configs/create", json={"file_name": "anchors.yaml", "config": text, "overwrite": True})
    assert r.status_code == 200, r.text
    config = api.get("/experiment-configs/anchors.yaml").json()["config"]
    assert config["c"] == {"learning_rate": 0.2, "discount": 0.9} and config["start"] == "2025-06-01"


def test_config_path_errors_quote_no_content(api, storage):
    (storage.configs_dir / "broken.yaml").write_text("password: hunter2-do-not-echo\n  nested: [unclosed\n")
    r = api.post("/run-simulation", json={"config_path": "configs/broken.yaml"})
    assert r.status_code == 422 and "hunter2" not in r.text and "line" in r.json()["detail"], r.text


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("route, body", [
    ("/experiment-configs/create", {"file_name": "deep.yaml", "config": _nested(600)}),
    ("/experiment-config/create", {"file_name": "deep.yaml", "config": _nested(600)}),
    ("/run-simulation", {"config": {"experiment": {"name": "a", "run_name": "b"}, "x": _nested(600)}}),
    ("/schema/create", {"site": "deep", "schema": _nested(600)}),
])
def test_deep_json_is_422(api, route, body):
    r = api.post(route, json=body)
    assert r.status_code == 422 and "deep" in r.json()["detail"], r.text[:300]


@pytest.mark.parametrize("raw", [
    b'{"file_name": "n.yaml", "config": {"n": ' + b"9" * 5000 + b"}}",
    b'{"file_name": "n.yaml", "config": {"n": 1e999}}',
    b'{"file_name": "n.yaml", "config": {"n": -' + b"1" * 4400 + b".5}}",
    b"[" * 100_000,
])
def test_unrepresentable_json_numbers_and_depth_are_422(platform, raw):
    for route in ("/experiment-configs/create", "/run-simulation", "/dataset"):
        for headers in ({"Content-Type": "application/json"}, {"Content-Type": "Application/JSON; charset=utf-8"}, {}):
            answer = raw_request(platform.api_url, "POST", route, headers=headers, body=raw)
            assert answer.status == 422, (headers, answer.describe())
            assert_clean_4xx(answer)


@pytest.mark.parametrize("changes", [
    {"from_ts": "2001-13-45 00:00:00", "until_ts": "2002-01-01 00:00:00"},
    {"from_ts": "2001-02-30T00:00:00Z"},
    {"until_ts": "99999-01-01"},
    {"from_ts": "0001-01-01T00:00:00", "until_ts": "9999-12-31T00:00:00", "period": 1},
    {"period": 10**30},
    {"name": "ds\n"},
    {"site_id": "site\n"},
])
def test_dataset_requests_out_of_range_are_422(api, changes):
    body = {"name": "range-test", "site_id": "no_such_site", "period": 60, **changes}
    r = api.post("/dataset", json=body)
    assert r.status_code == 422, r.text[:300]


def test_names_are_matched_in_full(api):
    assert api.post("/experiment-configs/create", json={"file_name": "nl.yaml\n", "config": {"a": 1}}).status_code == 422
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "a", "run_name": "b"}}, "save_as": "x.yaml\n"})
    assert r.status_code == 422
    for field, value in (("image", "opeva-runtime:1\n"), ("image_tag", "v1\n"), ("target_host", "local\n")):
        r = api.post("/run-simulation", json={"config": {"experiment": {"name": "a", "run_name": "b"}}, field: value})
        assert 400 <= r.status_code < 500, (field, r.text)


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_exclusive_creates_have_one_winner(platform, storage, round_):
    barrier = threading.Barrier(8)
    answers: dict[int, int] = {}
    name = f"race-{round_}.yaml"

    def create(i: int) -> None:
        with httpx.Client(base_url=platform.api_url, timeout=30) as client:
            barrier.wait()
            answers[i] = client.post("/experiment-configs/create", json={"file_name": name, "config": {"writer": i, "pad": "x" * 200_000}}).status_code

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, code in answers.items() if code == 200]
    assert sorted(answers.values()) == [200] + [409] * 7, answers
    text = (storage.configs_dir / name).read_text()
    assert f"writer: {winners[0]}\n" in text and text.count("writer") == 1
    assert not [p for p in storage.configs_dir.iterdir() if p.name.startswith(f".{name}")]  # no temp files left


def test_log_followers_are_capped(platform, api):
    job_id = api.post("/run-simulation", json={"config": {"experiment": {"name": "follow", "run_name": "r"}}}).json()["job_id"]
    held = []
    try:
        for _ in range(4):
            s = httpx.Client(base_url=platform.api_url, timeout=30)
            stream = s.stream("GET", f"/logs/{job_id}", params={"follow": "true"})
            response = stream.__enter__()
            assert response.status_code == 200
            held.append((s, stream))
        r = api.get(f"/logs/{job_id}", params={"follow": "true"})
        assert r.status_code == 429 and "follow" in r.json()["detail"]
        assert api.get(f"/logs/{job_id}", params={"follow": "false"}).status_code == 200
        s, stream = held.pop()
        stream.__exit__(None, None, None)
        s.close()

        def slot_free() -> bool:
            with httpx.Client(base_url=platform.api_url, timeout=5) as c, c.stream("GET", f"/logs/{job_id}", params={"follow": "true"}) as resp:
                return resp.status_code == 200

        wait_for(slot_free, timeout=15, what="a follower slot to be released after a disconnect")
    finally:
        for s, stream in held:
            stream.__exit__(None, None, None)
            s.close()
        api.post(f"/stop/{job_id}")


def test_os_environ_of_the_api_is_not_reachable(api):
    for route in ("/experiment-configs/..%2f..%2f..%2fproc%2fself%2fenviron", "/dataset/download/..%2fproc"):
        r = api.get(route)
        assert 400 <= r.status_code < 500 and "PATH=" not in r.text
