"""The image a submitted job will run, checked before anything is queued (core.images has the rules).

Why at submit: a refused, unknown or missing image used to be accepted (``queued``) and
fail after its queue wait; now it is a 400 naming image, tag and host, and no run exists.
"""

from __future__ import annotations

import asyncio

from api.errors import ApiError
from api.models import RunSimulationRequest
from core import images
from core.hosts import Host
from core.images import ChosenImage, ImageCatalog, ImageRefused


async def chosen_image(catalog: ImageCatalog, host: Host, body: RunSimulationRequest, runtime_image: str) -> ChosenImage:
    """400 when the host may not or cannot run the job's ``image``/``image_tag``."""
    try:
        return await asyncio.to_thread(images.choose_image, catalog, host, body.image, body.image_tag, host.image or runtime_image)
    except ImageRefused as exc:
        raise ApiError(400, str(exc), host=host.name, image=body.image, image_tag=body.image_tag) from exc
