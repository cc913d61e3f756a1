"""The dataset build: one Prefect flow run that turns a MongoDB site into a
CityLearn dataset folder on shared storage (core/dataset_build.py does the work).

Progress is a Prefect progress artifact; the result (returned, kept in the folder's
dataset.json, and shown as a markdown artifact) carries ``warnings`` and
``validation``. No data in the range ends the run Failed with a message that names
the site, buildings and range.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from blocks.sites import load_mongo
from blocks.storage import load_storage
from core.dataset_build import BuildRequest, build
from core.dataset_window import scheduled_name, window_bounds
from core.datasets import parse_ts
from core.layout import safe_name


def _summary(meta: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in meta.items() if k not in ("buildings", "warnings", "validation"))
    warnings = "\n".join(f"- {w}" for w in meta["warnings"]) or "- none"
    checks = meta["validation"]
    failed = [c for c in checks["static"]["checks"] if not c["passed"]]
    return (f"### Dataset `{meta['name']}`\n\n| field | value |\n|---|---|\n{rows}\n\nBuildings: {meta['buildings']}\n\n"
            f"**Warnings**\n{warnings}\n\n**Validation: {checks['status']}** (static: {len(checks['static']['checks']) - len(failed)}"
            f"/{len(checks['static']['checks'])} passed; CityLearn: {checks['citylearn']['status']} {checks['citylearn'].get('detail', '')})\n")


@flow(name="build-dataset", persist_result=False)
def build_dataset(
    name: str | None = None,
    site_id: str = "",
    citylearn_configs: dict[str, Any] | None = None,
    description: str = "",
    period: int = 60,
    from_ts: str | None = None,
    until_ts: str | None = None,
    seconds_per_time_step: int | None = None,
    window: str | dict[str, Any] | None = None,
    name_prefix: str | None = None,
    anchor: str | None = None,
    overwrite: bool = False,
) -> Any:
    """Build datasets/<name> from site <site_id>: one CSV per building, chargers, weather,
    pricing and carbon intensity, and CityLearn's schema.json. ``seconds_per_time_step``
    overrides ``period`` (minutes); ``citylearn_configs.validation.smoke_check`` asks for the
    CityLearn load check.

    Scheduled builds pass ``window`` (``last_24h``, or ``{start, end}``) instead of
    ``from_ts``/``until_ts``: the window ends at ``anchor`` (a backfill's occurrence) or at this
    run's scheduled start time, never at "now" (core/dataset_window.py says why); the name
    defaults to ``<name_prefix or site_id>-<window end>``, and an unchanged rebuild of a slot
    ends Completed with the message "unchanged". ``overwrite`` rebuilds a named dataset the
    same way (a changed input is a new version)."""
    logger = get_run_logger()
    if not site_id:
        raise ValueError("site_id is required")
    if window is not None:
        when = parse_ts(anchor, "anchor") if anchor else (flow_run.scheduled_start_time or datetime.now(timezone.utc))
        start, end = window_bounds(window, when)
        from_ts, until_ts = start.isoformat(), end.isoformat()
        name = name or scheduled_name(name_prefix or site_id, end)
        logger.info("[INFO] window %s anchored at %s: %s .. %s", window, when.isoformat(), from_ts, until_ts)
    if not name:
        raise ValueError("name is required (or a window, which names the dataset)")
    safe_name(name, what="dataset name")
    storage = load_storage()
    sites = load_mongo()
    progress_id = create_progress_artifact(progress=0.0, description=f"dataset {name}: starting")

    def on_progress(percent: float, stage: str) -> None:
        logger.info("[INFO] %3.0f%% %s", percent, stage)
        try:
            update_progress_artifact(progress_id, percent, description=f"dataset {name}: {stage}")
        except Exception as exc:  # progress is best effort; the build goes on
            logger.warning("[WARNING] could not update the progress artifact: %s", exc)

    request = BuildRequest(name, site_id, citylearn_configs or {}, description, period, from_ts, until_ts, seconds_per_time_step)
    with sites.client() as client:
        meta = build(client, storage, request, batch_size=sites.batch_size, progress=on_progress, replace=window is not None or overwrite)
    if meta["status"] == "unchanged":
        logger.info("[INFO] dataset %s unchanged (digest %s): the existing folder stays", name, meta["digest"][:12])
        return Completed(message=f"dataset {name} unchanged", data=meta)
    logger.info("[INFO] dataset %s %s: %s time steps, %s documents, %s .. %s", name, meta["status"], meta["time_steps"], meta["documents"], meta["from"], meta["until"])
    for warning in meta["warnings"]:
        logger.warning("[WARNING] %s", warning)
    logger.info("[INFO] validation: %s (CityLearn: %s)", meta["validation"]["status"], meta["validation"]["citylearn"]["status"])
    create_markdown_artifact(_summary(meta), description=f"Dataset {name} from site {site_id}")
    return meta
