"""The Docker side of `make up`: an engine to run jobs in, and the runtime image
brought up to date with the code (kept out of platform.py, which runs processes)."""

from __future__ import annotations

import os
import subprocess

from core.settings import PROJECT_ROOT


def ensure_docker_engine() -> bool:
    """Start an engine when we can (root, Debian); False means use process pools
    (also when OPEVA_DOCKER=0)."""
    from deployments.setup import docker_available

    if os.environ.get("OPEVA_DOCKER", "1") == "0":
        return False
    if docker_available():
        return True
    script = PROJECT_ROOT / "deployments" / "docker_engine.sh"
    return subprocess.run(["bash", str(script)]).returncode == 0 and docker_available()


def ensure_image(image: str) -> None:
    """Build the runtime image, or bring it up to date with the code.

    Always built, not only when missing: runs execute the flow code inside the image,
    so an image left from an older checkout would run old code. Docker's layer cache
    makes this a few seconds when nothing changed.
    """
    import docker

    try:
        docker.from_env().images.get(image)
        print(f"Refreshing the runtime image {image} with the current code (seconds)...", flush=True)
    except docker.errors.ImageNotFound:
        print(f"Building the runtime image {image} (first start only; a few minutes offline)...", flush=True)
    subprocess.run(["bash", str(PROJECT_ROOT / "deployments" / "build_image.sh")], check=True, env={**os.environ, "IMAGE": image})
