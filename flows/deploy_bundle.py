"""``deploy-bundle``: switch an inference target to a stored policy bundle.

Why a flow: every action on the platform is a Prefect flow run, so a switch shows in the Prefect
UI and the CLI (``prefect deployment run deploy-bundle/control -p target_id=local -p bundle_id=...``)
with its logs, and the REST API's ``switch-bundle`` is one such run that it waits for. It runs on
the ``control`` process pool (deployments/control_pool.py), never in a compute host's job slots.

The target loads the bundle beside the one it serves and swaps when the new one is whole
(inference/service.py), so clients calling it see no failure; on any error the target keeps its
previous bundle and the run fails with ``Inference load failed: ...``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core import bundle_store
from core.hosts import load_hosts
from core.inference_targets import TargetError, get_target, load, probe
from core.settings import PlatformSettings

FLOW_NAME = "deploy-bundle"


class SwitchFailed(RuntimeError):
    """The run's failure message is the API's 404/502 detail (``<status>: <detail>``)."""


@flow(name=FLOW_NAME, log_prints=False, retries=0)
async def deploy_bundle(target_id: str, bundle_id: str) -> dict[str, Any]:
    """Load a stored bundle on an inference target; returns upstream's switch answer."""
    logger = get_run_logger()
    settings = PlatformSettings()
    try:
        target = get_target(load_hosts(), settings.home, target_id)
        entry = bundle_store.get_bundle(settings.shared_data_dir, bundle_id)
        logger.info("loading bundle %s (%s) on target %s at %s", bundle_id, entry.get("name"), target.id, target.base_url)
        manifest_path, answer = await load(target, entry["storage_dir_name"], bundle_id)
    except (TargetError, bundle_store.BundleError) as exc:
        raise SwitchFailed(f"{exc.status}: {exc.detail}") from None
    health = await probe(target)
    if health.get("active_bundle_id") != bundle_id:
        raise SwitchFailed(f"502: Inference load failed: target {target.id} answered the load but serves {health.get('active_bundle_id')!r}")
    logger.info("target %s serves bundle %s (%s agents, loaded in %s s)", target.id, bundle_id, answer.get("agents"), answer.get("load_seconds"))
    return {"status": "switched", "target_id": target.id, "bundle_id": bundle_id, "requested_manifest_path": manifest_path,
            "load_response": answer, "health": health}
