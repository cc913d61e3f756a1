"""The reference simulator as a tag of each host's simulator repository.

Why: the OPEVA UI and the maintainers' scripts always send an ``image_tag``, and the
UI offers the tags ``/job-images/versions`` lists for the host's ``simulator_image``
repository. On a fresh platform that repository holds nothing (images are never
pulled), so nothing the UI offers could run. The set-up therefore gives each Docker
host's repository a tag :data:`core.images.REFERENCE_TAG` (``calof/opeva_simulator:reference``):
a two-line image on top of the runtime image whose ENTRYPOINT is the reference
simulator, which takes upstream's command line (``--config ... --job_id ...``). It
runs like any upstream image, unchanged, through the same sandbox.

It is rebuilt only when the runtime image changed (its label records the runtime
image's id), in about a second from the layer cache.
"""

from __future__ import annotations

import io
import logging

from core.engines import engine_client
from core.hosts import Host
from core.images import REFERENCE_LABEL, REFERENCE_TAG, engine_of

log = logging.getLogger("opeva.setup")


def dockerfile(runtime_image: str, runtime_id: str) -> str:
    return (
        f"FROM {runtime_image}\n"
        f'LABEL {REFERENCE_LABEL}="{runtime_id}" org.opencontainers.image.description="OPEVA reference simulator"\n'
        'ENTRYPOINT ["python", "-m", "simulator"]\n'
        "CMD []\n"
    )


def ensure_reference_image(host: Host, runtime_image: str) -> str | None:
    """Tag ``<simulator_image>:reference`` on the host's engine; returns it, or None when the host
    has no simulator repository, its engine is out of reach, or the runtime image is missing."""
    if not host.simulator_image or engine_of(host) is None:
        return None
    from docker.errors import DockerException, ImageNotFound

    target = f"{host.simulator_image}:{REFERENCE_TAG}"
    client = None
    try:
        client = engine_client(host)
        try:
            runtime_id = client.images.get(runtime_image).id
        except ImageNotFound:
            log.warning("host %s: runtime image %s is missing; %s not made", host.name, runtime_image, target)
            return None
        try:
            if client.images.get(target).labels.get(REFERENCE_LABEL) == runtime_id:
                return target
        except ImageNotFound:
            pass
        client.images.build(fileobj=io.BytesIO(dockerfile(runtime_image, runtime_id).encode()), tag=target, rm=True, pull=False)
        log.info("host %s: %s is the reference simulator (from %s)", host.name, target, runtime_image)
        return target
    except DockerException as exc:
        log.warning("host %s: could not make %s: %s", host.name, target, exc)
        return None
    finally:
        if client is not None:
            client.close()
