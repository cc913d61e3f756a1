"""Rules a launch request is checked against before a job is queued (upstream's 400s, their texts).

Prefect-free. Why here and not in pydantic patterns: the OPEVA clients (energaize_ui, the
maintainers' scripts) show upstream's exact 400 texts; a pattern would answer a 422 in
FastAPI's words. The texts are the orchestrator's (d110b5f); the code is ours.
"""

from __future__ import annotations

import re
from typing import Any

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_TAG = 128
GPU_FLAG_KEYS = {"cuda_required", "require_cuda", "requires_cuda", "require_gpu", "requires_gpu", "gpu_required", "use_cuda", "use_gpu"}
GPU_COUNT_KEYS = {"gpus", "gpu_count", "gpus_per_task", "slurm_gpus"}
DEVICE_KEYS = {"device", "torch_device", "accelerator"}


class SubmissionRefused(ValueError):
    """A launch the API answers 400 with ``str(exc)`` as the detail."""


def check_image_tag(value: str | None) -> str | None:
    """The tag to run, or None (the host's default); empty means None, as upstream."""
    if value is None or not value.strip():
        return None
    tag = value  # not stripped: "v1\n" is refused, never run as "v1" (names are matched in full)
    if len(tag) > MAX_TAG:
        raise SubmissionRefused("Image tag is too long")
    if any(ch.isspace() for ch in tag):
        raise SubmissionRefused("Invalid image tag")
    if any(ch in tag for ch in "/:@"):
        raise SubmissionRefused("Image tag must not contain '/', ':' or '@'")
    if not _TAG.fullmatch(tag):
        raise SubmissionRefused("Invalid image tag format")
    return tag


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value > 0
    return isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "y", "on"}


def _positive(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and int(value) > 0
    except (TypeError, ValueError):
        return False


def _asks_gpu(key: Any, value: Any) -> bool:
    k = str(key).strip().lower()
    if k in GPU_FLAG_KEYS:
        return _truthy(value)
    if k in GPU_COUNT_KEYS:
        return _positive(value)
    if k in DEVICE_KEYS and isinstance(value, str):
        v = value.strip().lower()
        return "cuda" in v or v in {"gpu", "mps"}
    return False


def config_requires_gpu(config: Any, _depth: int = 0) -> bool:
    """A config asks for a GPU anywhere in it (``use_cuda: true``, ``device: cuda:0``, ``gpus: 1``...)."""
    if _depth > 64:  # configs are depth-limited when loaded; this only guards the recursion
        return False
    if isinstance(config, dict):
        return any(_asks_gpu(k, v) or config_requires_gpu(v, _depth + 1) for k, v in config.items())
    if isinstance(config, list):
        return any(config_requires_gpu(v, _depth + 1) for v in config)
    return False


def check_profile(profile: str | None, chosen_host: str | None, requires_gpu: bool, host_has_gpu: bool | None) -> None:
    """Upstream's rules on ``target_worker_profile`` and GPU configs (``chosen_host`` None: automatic)."""
    if chosen_host and profile:
        raise SubmissionRefused("target_worker_profile is only allowed with automatic host selection")
    if profile == "cpu" and requires_gpu:
        raise SubmissionRefused("Config requires GPU; choose Any GPU or a GPU-capable host")
    if chosen_host and requires_gpu and not host_has_gpu:
        raise SubmissionRefused(f"Config requires GPU, but host '{chosen_host}' is not GPU-capable")



def check_profile_value(value: str | None) -> str | None:
    """``cpu``/``gpu`` (any case), empty as None; else upstream's 400."""
    if value is None or not value.strip():
        return None
    profile = value.strip().lower()
    if profile not in ("cpu", "gpu"):
        raise SubmissionRefused("target_worker_profile must be 'cpu' or 'gpu'")
    return profile
