"""Dataset builds as the OPEVA UI asks for them: one (``POST /dataset``) or one per site
(``POST /datasets/generate``), each a build-dataset flow run on the host's work pool.

Why a pre-flight before submitting: :func:`core.dataset_build.plan` (a few indexed
queries) checks the site, buildings, range and size at once, so most mistakes are a 4xx
with a message (or a ``failed[]`` entry) instead of a failed run found later.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pymongo

from api.dataset_models import DatasetRequest, GenerateRequest
from api.errors import ApiError
from api.gateway import DATASET_FLOW, PrefectGateway, opeva_status
from api.routers.sites import check_site_name
from api.usecases import host_data
from core.dataset_build import BuildRequest, Plan, plan
from core.dataset_formats import describe_folder, summary
from core.datasets import DatasetError, parse_ts, read_metadata
from core.hosts import Host
from core.layout import DataRoot, UnsafeNameError, safe_name
from core.limits import LimitExceeded, check_dataset_rows
from core.sites import SchemaNotFound, SiteNotFound, dataset_sites

POLL_SECONDS = 1.0
TERMINAL = {"finished", "failed", "stopped", "canceled"}
PENDING = {"status": "pending", "detail": "checked when the build ends (dataset.json, the run's artifact)"}


def _planned_formats(p: Plan) -> dict[str, Any]:
    """What the builder will write: one CSV per building and charger, weather, pricing, carbon."""
    chargers = sum(len(spec.chargers or {}) for spec, _ in p.buildings.values())
    return summary({"csv": len(p.buildings) + chargers + 3}, has_schema=True)


def _preflight(client: pymongo.MongoClient, storage: DataRoot, params: dict[str, Any]) -> Plan:
    """The checks every build passes before it is submitted (raises DatasetError, LimitExceeded, ApiError)."""
    name = params["name"]
    if storage.dataset_dir(name).exists() and not params.get("overwrite"):
        raise DatasetError(f"dataset {name!r} already exists; delete it first, choose another name or rebuild it with overwrite: true", 409)
    request = BuildRequest(**{k: v for k, v in params.items() if k != "overwrite"})  # a flow option, not the body upstream knows
    if request.from_ts and request.until_ts:  # the size of what was asked is refused before any site lookup
        check_dataset_rows(parse_ts(request.from_ts, "from_ts"), parse_ts(request.until_ts, "until_ts"), request.step_seconds)
    p = plan(client, request)
    check_dataset_rows(p.grid.start, p.grid.until, request.step_seconds)  # the row cap (memory and disk of one build)
    return p


def _described(p: Plan, name: str, site: str) -> dict[str, Any]:
    return {"name": name, "site_id": site, "time_steps": p.grid.steps, "seconds_per_time_step": p.grid.period_s,
            "from": p.grid.start.isoformat(), "until": p.grid.until.isoformat(), "warnings": p.warnings}


async def _wait_for_build(gateway: PrefectGateway, job_id: str, seconds: float) -> tuple[str, str]:
    """(OPEVA status, state message) once the run ends or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        run = await gateway.read_run(job_id)
        status = opeva_status(run)
        if status in TERMINAL or time.monotonic() >= deadline:
            return status, (run.state.message if run.state else "") or ""
        await asyncio.sleep(POLL_SECONDS)


def _mapped(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DatasetError as exc:
        raise ApiError(exc.status, str(exc)) from None


async def create(body: DatasetRequest, gateway: PrefectGateway, storage: DataRoot, client: pymongo.MongoClient, host: Host) -> dict[str, Any]:
    """Submit one build; with ``wait``, answer when it ends with its warnings and validation."""
    host_data.shared_only(host, "dataset builds")
    check_site_name(body.site_id)
    params = body.build_params()
    p = await asyncio.to_thread(_mapped, _preflight, client, storage, params)
    run = await gateway.submit(DATASET_FLOW, host.name, params, name=f"dataset-{body.name}")
    described = _described(p, body.name, body.site_id)
    answer = {"message": "Dataset build submitted", "job_id": str(run.id), "status": run.status, "host": host.name,
              "description": body.description, "validation": dict(PENDING), **described, **_planned_formats(p)}
    if body.wait:
        status, message = await _wait_for_build(gateway, str(run.id), body.wait)
        answer["status"] = status
        if status == "finished":
            folder = storage.dataset_dir(body.name)
            meta = read_metadata(folder)
            answer.update(message="Dataset created", warnings=meta.get("warnings", p.warnings), validation=meta.get("validation", answer["validation"]),
                          **describe_folder(folder))
        elif status in TERMINAL:
            raise ApiError(422, f"the build of {body.name!r} ended {status}: {message}", job_id=str(run.id), status=status)
    return answer


def _plan_site(client: pymongo.MongoClient, storage: DataRoot, body: GenerateRequest, site: str) -> tuple[dict[str, Any], Plan | None, dict[str, Any] | None]:
    """(build params, plan or None, failure or None) of one site of a batch."""
    name = f"{body.name_prefix}_{site}_all_buildings"
    configs = body.citylearn_configs.model_dump(exclude_none=True)
    configs.pop("selected_buildings", None)  # all buildings, by name
    params = {"name": name, "site_id": site, "citylearn_configs": configs, "description": body.description,
              "seconds_per_time_step": body.seconds_per_time_step, **({"period": body.period} if body.period else {}),
              **{k: v for k, v in (("from_ts", body.from_ts), ("until_ts", body.until_ts)) if v}}
    try:
        safe_name(name, what="dataset name")
        check_site_name(site)
        return params, _preflight(client, storage, params), None
    except (DatasetError, LimitExceeded, SiteNotFound, SchemaNotFound, UnsafeNameError, ApiError) as exc:
        return params, None, {"name": name, "site_id": site, "status_code": _status_of(exc), "detail": str(exc)}


def _status_of(exc: Exception) -> int:
    """The status the same failure answers on ``POST /dataset``."""
    if isinstance(exc, DatasetError):
        return exc.status
    if isinstance(exc, (SiteNotFound, SchemaNotFound)):
        return 404
    if isinstance(exc, UnsafeNameError):
        return 400
    return int(getattr(exc, "status_code", 422))


async def generate(body: GenerateRequest, gateway: PrefectGateway, storage: DataRoot, client: pymongo.MongoClient, host: Host) -> dict[str, Any]:
    """Plan one ``<prefix>_<site>_all_buildings`` build per site, then submit them (unless ``dry_run``).

    A site that cannot be built is a ``failed[]`` entry; without ``continue_on_error`` any
    failure answers 404 with ``{"detail": {"message", "site_ids"}}`` (upstream's object
    detail) and nothing is submitted."""
    host_data.shared_only(host, "dataset builds")
    sites = list(dict.fromkeys(body.site_ids)) if body.site_ids is not None else [s["site_id"] for s in await asyncio.to_thread(dataset_sites, client)]
    if not sites:
        raise ApiError(404, {"message": "no site to generate datasets for (no site has a schema with buildings)", "site_ids": []})
    results = [await asyncio.to_thread(_plan_site, client, storage, body, site) for site in sites]
    failed = [f for _, _, f in results if f]
    planned = [(params, _described(p, params["name"], params["site_id"])) for params, p, _ in results if p]
    if failed and not body.continue_on_error:
        reasons = "; ".join(f"{f['site_id']}: {f['detail']}" for f in failed)
        raise ApiError(404, {"message": f"cannot generate datasets for {len(failed)} site(s): {reasons}", "site_ids": [f["site_id"] for f in failed],
                             "failed": failed})
    created = []
    if not body.dry_run:
        for params, described in planned:
            run = await gateway.submit(DATASET_FLOW, host.name, params, name=f"dataset-{params['name']}")
            created.append({**described, "job_id": str(run.id), "status": run.status, "host": host.name})
    verb = "planned (dry run)" if body.dry_run else "submitted"
    return {"message": f"{len(planned)} dataset build(s) {verb}, {len(failed)} failed", "dry_run": body.dry_run,
            "planned": [d for _, d in planned], "created": created, "failed": failed}
