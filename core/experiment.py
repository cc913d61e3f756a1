"""The experiment contract: which config a job runs, whatever simulator runs it.

One function, :func:`resolve_experiment`, turns what a client sends
(``config`` inline | ``config_path`` | neither, plus ``save_as``) into the config
a job runs. The REST API calls it before submitting (to answer 4xx at once and to
write ``configs/<save_as>``); the flow calls it again inside the job with the job
id, which keeps the job's own copy. Both therefore follow the same rules:

- ``config_path`` is a bare file name under ``configs/`` (``ui_demo.yaml``, as the
  OPEVA UI sends it) or a path relative to the shared data root (``configs/x.yaml``);
- the job's own copy is ``jobs/<id>/config.yaml``; once written it is what every
  attempt (retry) of the job runs;
- ``save_as`` also writes ``configs/<save_as>``, never over a different file
  (:class:`ExperimentConfigConflict`); the same content there is fine (a retry,
  or the flow re-resolving what the API already saved).

Upstream simulator configs carry ``metadata`` (and refuse unknown top-level keys
such as ``experiment``); older OPEVA configs carry ``experiment``. Neither is
required here: what a simulator needs, the simulator checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.layout import DataRoot, FileTooLarge, safe_name
from core.limits import LIMITS
from core.safe_yaml import YamlRefused, load_yaml


# The config key that seeds a run: the reference simulator reads the top-level ``seed``
# (simulator/config.py). Sweeps write each trial's seed there (core/sweep.py; ``seed_key``
# names another key for simulators that read theirs elsewhere).
SEED_KEY = "seed"


class ExperimentConfigError(ValueError):
    """A config problem, with the field it concerns (``experiment.name``, ``config_path``...)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message if message.startswith(field) else f"{field}: {message}")


class ExperimentConfigConflict(ExperimentConfigError):
    """``configs/<save_as>`` exists with other content (the API answers 409)."""

    def __init__(self, save_as: str) -> None:
        super().__init__("save_as", f"configs/{save_as} already exists with other content; choose another save_as")
        self.file = f"configs/{save_as}"


class ExperimentConfigMissing(ExperimentConfigError):
    """``config_path`` names no file (the API answers 404)."""


@dataclass(frozen=True)
class ResolvedExperiment:
    """The config a job runs and the file holding it.

    ``path`` is ``jobs/<id>/config.yaml`` when a job id was given; without one (the
    API's check before submitting) it is the source file (``config_path`` or
    ``configs/<save_as>``), or None for an inline config that is not saved.
    ``source`` is that source relative to the data root (what job_info records).
    """

    config: dict[str, Any]
    path: Path | None
    source: str | None = None


def check_experiment(config: Any) -> dict[str, Any]:
    """An experiment config is a mapping; anything more is the simulator's business."""
    if not isinstance(config, dict):
        raise ExperimentConfigError("config", "an experiment config must be a mapping (YAML object)")
    return config


def job_name_of(config: dict[str, Any]) -> str | None:
    """``metadata.experiment_name-metadata.run_name``, else ``experiment.name-experiment.run_name``,
    else None (the caller lets Prefect generate a name)."""
    for section, first, second in (("metadata", "experiment_name", "run_name"), ("experiment", "name", "run_name")):
        block = config.get(section)
        if isinstance(block, dict) and block.get(first) and block.get(second):
            return f"{block[first]}-{block[second]}"
    return None


def names_of(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(experiment name, run name) from ``metadata`` or ``experiment``, for job_info."""
    meta, exp = config.get("metadata"), config.get("experiment")
    if isinstance(meta, dict) and (meta.get("experiment_name") or meta.get("run_name")):
        return meta.get("experiment_name"), meta.get("run_name")
    if isinstance(exp, dict):
        return exp.get("name"), exp.get("run_name")
    return None, None


def default_experiment() -> dict[str, Any]:
    """What ``prefect deployment run 'run-simulation/<host>'`` runs with no parameters."""
    return {"experiment": {"name": "quickstart", "run_name": "default"}}


def config_source(root: DataRoot, config_path: str) -> Path:
    """``x.yaml`` -> ``configs/x.yaml``; a path with a ``/`` is relative to the data root."""
    if isinstance(config_path, str) and "/" not in config_path.strip("/") and not os.path.isabs(config_path):
        return root.config_file(config_path.strip("/"))
    return root.resolve(config_path, what="config_path")


def load_config_file(root: DataRoot, path: Path, what: str) -> tuple[dict[str, Any], str]:
    """A config file read only when really inside the data root, parsed with limits.

    Errors name the line and column, never the file's content (a link out of the
    root is refused before anything is read).
    """
    try:
        text = root.read_text_inside(path, max_bytes=LIMITS.max_yaml_bytes, what=what)
        data = load_yaml(text)
    except YamlRefused as exc:
        raise ExperimentConfigError(what, f"{path.name}: {exc}") from None
    except FileTooLarge as exc:
        raise ExperimentConfigError(what, str(exc)) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ExperimentConfigError(what, f"cannot read {path.name}: {exc.strerror}") from None
    return check_experiment(data), text


def save_exclusive(root: DataRoot, save_as: str, config: dict[str, Any], text: str) -> Path:
    """Create ``configs/<save_as>``; an existing file must hold the same config."""
    path = root.config_file(safe_name(save_as, what="save_as"))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return root.create_exclusive(path, text)
    except FileExistsError:
        pass
    try:
        same = load_yaml(root.read_text_inside(path, max_bytes=LIMITS.max_yaml_bytes, what="save_as")) == config
    except (YamlRefused, OSError, ValueError):
        same = False
    if not same:
        raise ExperimentConfigConflict(save_as)
    return path


def resolve_experiment(
    root: DataRoot,
    *,
    config: dict[str, Any] | None,
    config_path: str | None,
    save_as: str | None,
    job_id: str | None,
) -> ResolvedExperiment:
    """The config a job runs, from ``config`` | ``config_path`` | neither (the default).

    Raises ExperimentConfigError (422), ExperimentConfigMissing (404), ExperimentConfigConflict (409) or
    UnsafeNameError (400) for a path that would leave the data root.
    """
    if config is not None and config_path:
        raise ExperimentConfigError("config", "give either 'config' or 'config_path', not both")
    job_copy = root.job(job_id).config_file if job_id else None
    if job_copy is not None and job_copy.is_file():  # a retry runs what the first attempt ran
        data, _ = load_config_file(root, job_copy, "config")
        return ResolvedExperiment(data, job_copy, _source_of(root, config_path, save_as))
    if config_path:
        src = config_source(root, config_path)
        if not src.is_file():
            raise ExperimentConfigMissing("config_path", f"no config file {config_path!r} under configs/ or the shared data root")
        data, text = load_config_file(root, src, "config_path")
        path: Path | None = src
    else:
        data = check_experiment(config if config is not None else default_experiment())
        text = yaml.safe_dump(data, sort_keys=False)
        path = None
    if save_as:
        path = save_exclusive(root, save_as, data, text)
    if job_copy is not None:
        root.write_atomic(job_copy, text)
        path = job_copy
    return ResolvedExperiment(data, path, _source_of(root, config_path, save_as))


def _source_of(root: DataRoot, config_path: str | None, save_as: str | None) -> str | None:
    if save_as:
        return f"configs/{save_as}"
    if config_path:
        return root.relative(config_source(root, config_path))
    return None
