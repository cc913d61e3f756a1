"""Simulator images: which tags a host can run, and the image a job will run.

Why here, without Prefect: the REST API lists the runtime versions it offers
(``/job-images/versions``) and checks a job's ``image``/``image_tag`` at submit,
and both must agree with what the host's Docker engine really holds: upstream
asks Docker Hub, but here images are never pulled, so a tag that is not on the
engine that would run it cannot run. The engine is read through an injectable
*lister* (one call to the engine's ``GET /images/json``), cached per engine for a
few seconds so no request pays for a Docker call, and a down engine answers at
once from the last listing (``cached``) or with an empty one and a reason.

Engines are per host: a host's ``docker_url`` (with its ``docker_tls``, through
core/engines.py) if it has one, else the local engine when its worker runs on this
machine (``start_worker``). A host whose
engine this process cannot reach is not checked for presence (the flow still
refuses a missing image when it starts); its allow-list always is.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core.engines import Engine, open_client
from core.hosts import Host, HostsFile, repository_of

REFERENCE_TAG = "reference"  # <simulator_image>:reference is the reference simulator (deployments/reference_image.py)
REFERENCE_LABEL = "opeva.reference_simulator"  # set on that image, with the runtime image it was built from
SIF_SUFFIX = "_sif"  # upstream's Singularity images: calof/opeva_simulator_sif:<tag>
VARIANTS = {"jetson_ready": "-jetson-", "union_ready": "-union-"}  # <tag>-jetson-r35.3.1, <tag>-union-blackwell
CACHE_SECONDS = 5.0
RETRY_DOWN_SECONDS = 30.0  # an engine that failed is asked again only after this
FRESH_MIN_SECONDS = 1.0  # a "fresh" read reuses a listing younger than this (a burst of bad tags is one read)
ENGINE_TIMEOUT_SECONDS = 3.0
_SHA_TAG = re.compile(r"sha-[0-9a-f]{7,64}")


class ImageRefused(ValueError):
    """A 400: the image cannot run on the host (refused repository, unknown or not-ready tag)."""


@dataclass(frozen=True)
class EngineImage:
    """One image on an engine, as ``GET /images/json`` describes it."""

    id: str
    repo_tags: tuple[str, ...]
    created: float  # epoch seconds
    repo_digests: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def digest(self) -> str:
        """The registry digest when it has one, else the image id (both ``sha256:...``)."""
        return self.repo_digests[0].rpartition("@")[2] if self.repo_digests else self.id


EngineLister = Callable[[Engine], list[EngineImage]]  # an engine -> its images


def docker_lister(engine: Engine) -> list[EngineImage]:
    """One ``GET /images/json`` on the engine (the SDK's ``images.list()`` inspects each image)."""
    client = open_client(engine, timeout=ENGINE_TIMEOUT_SECONDS)
    try:
        raw = client.api.images()
    finally:
        client.close()
    return [
        EngineImage(id=r.get("Id", ""), repo_tags=tuple(t for t in r.get("RepoTags") or () if t != "<none>:<none>"),
                    created=float(r.get("Created") or 0), repo_digests=tuple(r.get("RepoDigests") or ()), labels=dict(r.get("Labels") or {}))
        for r in raw
    ]


@dataclass
class EngineListing:
    """What one engine holds, as last read: ``tags`` maps ``repo:tag`` to its image."""

    engine: str  # Engine.key
    tags: dict[str, EngineImage]
    fetched_at: float | None  # epoch seconds of the read it comes from; None: never read
    cached: bool  # answered from an earlier read (within the TTL, or because the engine is down now)
    error: str | None = None  # why the last read failed

    @property
    def known(self) -> bool:
        return self.fetched_at is not None


def engine_of(host: Host) -> Engine | None:
    """The engine of a host: its docker_url (and TLS), this machine's for a worker here, None when unreachable."""
    if host.docker_url:
        return Engine.of(host)
    return Engine() if host.start_worker else None


class ImageCatalog:
    """Engine listings cached per engine for ``ttl`` seconds; thread-safe (one read at a time per catalog)."""

    def __init__(self, lister: EngineLister = docker_lister, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.lister, self.ttl, self.clock = lister, ttl, clock
        self._lock = threading.Lock()
        self._reads: dict[str, tuple[float, dict[str, EngineImage]]] = {}  # engine -> (when, tags) of the last good read
        self._failures: dict[str, tuple[float, str]] = {}  # engine -> (when, why) of the last failed read

    def listing(self, engine: Engine, fresh: bool = False) -> EngineListing:
        """``fresh``: read the engine now unless it failed within the TTL (an image may just have been built)."""
        with self._lock:
            now = self.clock()
            key = engine.key
            good, bad = self._reads.get(key), self._failures.get(key)
            max_age = FRESH_MIN_SECONDS if fresh else self.ttl
            if good and now - good[0] < max_age and not (bad and bad[0] > good[0]):
                return EngineListing(key, good[1], good[0], cached=True)
            if bad and now - bad[0] < RETRY_DOWN_SECONDS:  # a down engine is asked again only after the TTL
                return self._fallback(key, bad[1])
            try:
                images = self.lister(engine)
            except Exception as exc:  # any failure: the engine is down or unreachable from here
                self._failures[key] = (now, f"{type(exc).__name__}: {exc}"[:300])
                return self._fallback(key, self._failures[key][1])
            tags = {tag: image for image in images for tag in image.repo_tags}
            self._reads[key] = (now, tags)
            self._failures.pop(key, None)
            return EngineListing(key, tags, now, cached=False)

    def _fallback(self, key: str, why: str) -> EngineListing:
        good = self._reads.get(key)
        if good:
            return EngineListing(key, good[1], good[0], cached=True, error=why)
        return EngineListing(key, {}, None, cached=False, error=why)

    def host_listing(self, host: Host) -> EngineListing | None:
        engine = engine_of(host)
        return self.listing(engine) if engine else None


# -- the runtime versions offered (/job-images/versions) ----------------------------------

def offered(tag: str) -> bool:
    """Upstream's rule: not ``latest``, ``buildcache*``, ``sha-<hex>`` or a variant (``-jetson-*``, ``-union-*``)."""
    return not (tag == "latest" or tag.startswith("buildcache") or _SHA_TAG.fullmatch(tag) or any(v in tag for v in VARIANTS.values()))


@dataclass
class TagInfo:
    name: str
    last_updated: str | None
    digest: str
    deucalion_ready: bool
    jetson_ready: bool
    union_ready: bool
    hosts: list[str]
    reference: bool


@dataclass
class Versions:
    repository: str
    tags: list[TagInfo]
    cached: bool
    fetched_at: str | None
    hosts: list[str]
    reason: str | None = None

    @property
    def count(self) -> int:
        return len(self.tags)


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch else None


def _split(ref: str) -> tuple[str, str]:
    repo = repository_of(ref)
    return repo, ref[len(repo) + 1:] if ref.startswith(repo + ":") else ""


def default_repository(hosts: HostsFile) -> str | None:
    return next((h.simulator_image for h in hosts.hosts if h.simulator_image), None)


def versions(catalog: ImageCatalog, hosts: HostsFile, repository: str | None = None, limit: int = 100) -> Versions:
    """The tags of ``repository`` (default: the first host's ``simulator_image``) present on the
    engine of at least one host that may run it (its ``simulator_image`` or ``allowed_images``), newest first."""
    repository = repository or default_repository(hosts) or ""
    runners = [h for h in hosts.hosts if repository in allowed_repositories(h)]
    found: dict[str, tuple[EngineImage, list[str], set[str]]] = {}  # tag -> (image, hosts, all tags of its engine)
    reasons, fetched, cached = [], [], True
    for host in runners:
        listing = catalog.host_listing(host)
        if listing is None:
            reasons.append(f"the Docker engine of host {host.name!r} is not reachable from the API")
            continue
        if listing.error:
            reasons.append(f"host {host.name!r}: Docker engine did not answer ({listing.error})" + ("; tags as last read" if listing.known else ""))
        fetched.append(listing.fetched_at or 0)
        cached = cached and listing.cached
        for ref, image in listing.tags.items():
            repo, tag = _split(ref)
            if repo == repository and offered(tag):
                entry = found.setdefault(tag, (image, [], set(listing.tags)))
                entry[1].append(host.name)
    if not runners:
        reasons.append(f"no host may run {repository!r} (not a simulator_image or allowed_images entry of the hosts file)")
    tags = [
        TagInfo(name=tag, last_updated=_iso(image.created), digest=image.digest,
                deucalion_ready=f"{repository}{SIF_SUFFIX}:{tag}" in engine_tags,
                jetson_ready=any(t.startswith(f"{repository}:{tag}{VARIANTS['jetson_ready']}") for t in engine_tags),
                union_ready=any(t.startswith(f"{repository}:{tag}{VARIANTS['union_ready']}") for t in engine_tags),
                hosts=names, reference=REFERENCE_LABEL in image.labels)
        for tag, (image, names, engine_tags) in found.items()
    ]
    tags.sort(key=lambda t: (t.last_updated or "", t.name), reverse=True)
    return Versions(repository=repository, tags=tags[:limit], cached=bool(runners) and cached and bool(fetched),
                    fetched_at=_iso(max(fetched)) if fetched and max(fetched) else None,
                    hosts=[h.name for h in runners], reason="; ".join(reasons) or None)


# -- the image a job will run (checked at submit) -------------------------------------------

@dataclass(frozen=True)
class ChosenImage:
    """``image`` None: the reference simulator from the runtime image (neither image nor tag given)."""

    image: str | None
    checked_on: str | None  # the key of the engine it was found on (Engine.key); None when presence could not be checked
    reference: bool = False


def allowed_repositories(host: Host) -> list[str]:
    return sorted(set(host.allowed_images) | ({host.simulator_image} if host.simulator_image else set()))


def requested_image(host: Host, image: str | None, image_tag: str | None, runtime_image: str | None = None) -> str | None:
    """The reference a job names (``image`` wins over ``image_tag``), refused when the host does not allow it."""
    if image:
        if runtime_image and image == runtime_image:
            return None  # the runtime image itself: the reference simulator, as before
        if not host.image_allowed(image):
            raise ImageRefused(f"Image {image!r} is not allowed on host {host.name!r} "
                               f"(its repository {repository_of(image)!r} is not in {allowed_repositories(host)})")
        return image if _split(image)[1] or "@" in image else f"{image}:latest"
    if image_tag:
        if not host.simulator_image:
            raise ImageRefused(f"Image tag {image_tag!r} cannot run on host {host.name!r}: the host names no simulator_image for it to complete")
        return f"{host.simulator_image}:{image_tag}"
    return None


def choose_image(catalog: ImageCatalog, host: Host, image: str | None, image_tag: str | None, runtime_image: str | None = None) -> ChosenImage:
    """The image a job will run on ``host``, or :class:`ImageRefused` naming image, tag and host.

    Presence is checked on the host's engine when it can be read (from the cache, read
    again once if the image is missing from a cached listing: it may just have been built).
    """
    ref = requested_image(host, image, image_tag, runtime_image)
    if ref is None:
        return ChosenImage(None, None, reference=True)
    engine = engine_of(host)
    if engine is None:
        return ChosenImage(ref, None)
    listing = catalog.listing(engine)
    if ref not in listing.tags and listing.cached and not listing.error:
        listing = catalog.listing(engine, fresh=True)
    if not listing.known:
        raise ImageRefused(f"Image {ref!r} cannot be checked on host {host.name!r}: its Docker engine does not answer ({listing.error})")
    found = listing.tags.get(ref) or _by_digest(listing, ref)
    if found is None:
        what = f"tag {image_tag!r} of {host.simulator_image!r}" if image_tag and not image else f"image {ref!r}"
        raise ImageRefused(f"Image {ref!r} is not present on host {host.name!r} ({what} is not on its Docker engine; "
                           f"images are never pulled: build or `docker load` it there first; GET /job-images/versions lists what is)")
    return ChosenImage(ref, engine.key, reference=REFERENCE_LABEL in found.labels)


def _by_digest(listing: EngineListing, ref: str) -> EngineImage | None:
    if "@" not in ref:
        return None
    repo, digest = ref.split("@", 1)
    return next((i for t, i in listing.tags.items() if repository_of(t) == repo and digest in (i.digest, i.id)), None)
