"""core.images: the runtime versions offered and the image a job will run, with an engine
lister injected (the real engine is read in tests/e2e/test_images.py)."""

from __future__ import annotations

import pytest

from core.hosts import Host, HostsFile
from core.images import REFERENCE_LABEL, EngineImage, ImageCatalog, ImageRefused, choose_image, offered, versions

REPO = "calof/opeva_simulator"


class Engine:
    """A lister that counts its calls and can be switched off."""

    def __init__(self, *refs: str, labels: dict[str, dict[str, str]] | None = None) -> None:
        self.images = [EngineImage(id=f"sha256:{i:064x}", repo_tags=(ref,), created=1_700_000_000 + i, labels=(labels or {}).get(ref, {}))
                       for i, ref in enumerate(refs)]
        self.calls, self.down = 0, False

    def __call__(self, engine: object) -> list[EngineImage]:
        self.calls += 1
        if self.down:
            raise ConnectionError("engine down")
        return list(self.images)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def hosts(**local) -> HostsFile:
    return HostsFile(hosts=[
        Host(name="local", start_worker=True, simulator_image=REPO, **local),
        Host(name="remote", start_worker=False, simulator_image=REPO),  # its engine is not reachable from here
        Host(name="other", start_worker=True, simulator_image="acme/sim"),
    ])


@pytest.mark.parametrize("tag,shown", [("v1.2", True), ("reference", True), ("latest", False), ("buildcache", False), ("buildcache-amd64", False),
                                       ("sha-0bc57d9", False), ("v1-jetson-r35.3.1", False), ("v1-union-blackwell", False), ("sha-notHex", True)])
def test_offered_tags_follow_upstreams_rule(tag, shown):
    assert offered(tag) is shown


def test_versions_lists_present_tags_with_readiness_newest_first():
    engine = Engine(f"{REPO}:v1", f"{REPO}:v1-jetson-r35.3.1", f"{REPO}_sif:v1", f"{REPO}:latest", f"{REPO}:v2",
                    f"{REPO}:v2-union-blackwell", f"{REPO}:reference", "acme/sim:x", labels={f"{REPO}:reference": {REFERENCE_LABEL: "sha256:1"}})
    found = versions(ImageCatalog(engine), hosts())
    assert found.repository == REPO and found.hosts == ["local", "remote"]
    assert [t.name for t in found.tags] == ["reference", "v2", "v1"]
    by = {t.name: t for t in found.tags}
    assert (by["v1"].jetson_ready, by["v1"].union_ready, by["v1"].deucalion_ready) == (True, False, True)
    assert (by["v2"].jetson_ready, by["v2"].union_ready, by["v2"].deucalion_ready) == (False, True, False)
    assert by["reference"].reference and not by["v1"].reference
    assert by["v1"].hosts == ["local"] and by["v1"].digest.startswith("sha256:") and by["v1"].last_updated.startswith("2023-")
    assert "'remote'" in found.reason  # its engine is out of reach: said, not hidden
    assert [t.name for t in versions(ImageCatalog(engine), hosts(), limit=1).tags] == ["reference"]
    assert [t.name for t in versions(ImageCatalog(engine), hosts(), "acme/sim").tags] == ["x"]
    nobody = versions(ImageCatalog(engine), hosts(), "nobody/runs-this")
    assert nobody.tags == [] and "no host may run" in nobody.reason


def test_the_engine_is_read_once_per_ttl_and_a_down_engine_answers_from_the_cache():
    engine, clock = Engine(f"{REPO}:v1"), Clock()
    catalog = ImageCatalog(engine, ttl=5, clock=clock)
    first = versions(catalog, hosts())
    assert not first.cached and engine.calls == 1
    assert versions(catalog, hosts()).cached and engine.calls == 1  # within the TTL: no engine call
    clock.now += 6
    engine.down = True
    stale = versions(catalog, hosts())
    assert engine.calls == 2 and stale.cached and [t.name for t in stale.tags] == ["v1"] and "engine down" in stale.reason
    versions(catalog, hosts())
    assert engine.calls == 2  # a down engine is not asked again at once


def test_a_down_engine_without_a_cache_answers_empty_with_a_reason():
    engine = Engine(f"{REPO}:v1")
    engine.down = True
    found = versions(ImageCatalog(engine), hosts())
    assert found.tags == [] and found.fetched_at is None and not found.cached and "did not answer" in found.reason


def test_choose_image_names_image_tag_and_host():
    engine = Engine(f"{REPO}:v1", f"{REPO}:reference", labels={f"{REPO}:reference": {REFERENCE_LABEL: "x"}})
    catalog, local = ImageCatalog(engine), hosts().get("local")
    assert choose_image(catalog, local, None, "v1").image == f"{REPO}:v1"
    assert choose_image(catalog, local, f"{REPO}:v1", None).checked_on == "local"
    assert choose_image(catalog, local, None, "reference").reference
    assert choose_image(catalog, local, None, None).reference  # neither: the reference simulator from the runtime image
    assert choose_image(catalog, local, "opeva-runtime:1", None, runtime_image="opeva-runtime:1").reference
    with pytest.raises(ImageRefused, match=r"Image 'calof/opeva_simulator:nope' is not present on host 'local'"):
        choose_image(catalog, local, None, "nope")
    with pytest.raises(ImageRefused, match=r"'evil/sim:1' is not allowed on host 'local'"):
        choose_image(catalog, local, "evil/sim:1", None)
    with pytest.raises(ImageRefused, match=r"'calof/opeva_simulator:latest' is not present"):
        choose_image(catalog, local, REPO, None)  # no tag means latest, which is not there
    with pytest.raises(ImageRefused, match="names no simulator_image"):
        choose_image(catalog, Host(name="bare", start_worker=True), None, "v1")
    # a host whose engine is out of reach: the allow-list is checked, presence is left to the run
    assert choose_image(catalog, hosts().get("remote"), None, "anything").checked_on is None


def test_a_missing_image_is_looked_up_again_before_it_is_refused():
    engine, clock = Engine(f"{REPO}:v1"), Clock()
    catalog = ImageCatalog(engine, clock=clock)
    choose_image(catalog, hosts().get("local"), None, "v1")
    engine.images.append(EngineImage(id="sha256:new", repo_tags=(f"{REPO}:v3",), created=2e9))
    clock.now += 1.5  # built a moment ago, within the listing's TTL
    assert choose_image(catalog, hosts().get("local"), None, "v3").image == f"{REPO}:v3"
    assert engine.calls == 2


def test_a_down_engine_refuses_what_it_cannot_check():
    engine = Engine(f"{REPO}:v1")
    engine.down = True
    with pytest.raises(ImageRefused, match="cannot be checked on host 'local'"):
        choose_image(ImageCatalog(engine), hosts().get("local"), None, "v1")
