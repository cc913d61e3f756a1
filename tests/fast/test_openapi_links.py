"""The OpenAPI links of the folder routes, at both mounts, followed as a client would.

A folder is found by its id *and* its owner (another owner's is a 404, never a 403), so a link
from "create folder" to "rename/delete/list" must carry the owner. schemathesis's stateful
phase follows these links (bench/schemathesis_run.sh); without the owner it renamed a fresh
folder as another owner and reported "created resource not found".
"""

from __future__ import annotations

import pytest

MOUNTS = ["", "/ai-manager-ui"]


def _value(expr: str, body: dict):
    assert expr.startswith("$response.body#/"), expr
    return body[expr.split("#/", 1)[1]]


@pytest.mark.parametrize("mount", MOUNTS)
def test_folder_links_name_real_operations_and_carry_the_owner(api, mount):
    spec = api.get(f"{mount}/openapi.json").json()
    ops = {o["operationId"]: (path, method) for path, item in spec["paths"].items() for method, o in item.items() if "operationId" in o}
    for source in (("/job-folders", "post"), ("/job-folders/{folder_id}", "put")):
        links = spec["paths"][source[0]][source[1]]["responses"]["200"]["links"]
        assert set(links) == {"RenameFolder", "DeleteFolder", "ListFolders"}
        for link in links.values():
            assert link["operationId"] in ops, link
            carried = {**link.get("parameters", {}), **link.get("requestBody", {})}
            assert any(k.endswith("owner") and v == "$response.body#/owner" for k, v in carried.items()), link


@pytest.mark.parametrize("mount", MOUNTS)
def test_following_the_links_finds_the_folder_just_made(api, mount):
    spec = api.get(f"{mount}/openapi.json").json()
    links = spec["paths"]["/job-folders"]["post"]["responses"]["200"]["links"]
    made = api.post(f"{mount}/job-folders", json={"owner": "0", "name": f"linked{len(mount)}"})
    assert made.status_code == 200, made.text
    body = made.json()

    rename = links["RenameFolder"]
    folder_id = _value(rename["parameters"]["path.folder_id"], body)
    renamed = api.put(f"{mount}/job-folders/{folder_id}", json={k: _value(v, body) for k, v in rename["requestBody"].items()})
    assert renamed.status_code == 200, renamed.text

    listed = api.get(f"{mount}/job-folders", params={"owner": _value(links["ListFolders"]["parameters"]["query.owner"], body)})
    assert folder_id in [f["folder_id"] for f in listed.json()]

    # the same id under the example owner is someone else's: not found, as designed
    assert api.put(f"{mount}/job-folders/{folder_id}", json={"owner": "alice", "name": "x"}).status_code == 404

    delete = links["DeleteFolder"]["parameters"]
    gone = api.delete(f"{mount}/job-folders/{_value(delete['path.folder_id'], body)}", params={"owner": _value(delete["query.owner"], body)})
    assert gone.status_code == 200, gone.text
