"""What every experiment config must hold, whatever simulator runs it.

The OPEVA UI writes at least ``experiment: {name, run_name}``; the job's display
name is derived from them. Checked both by the REST API (to answer 422) and by
the flow (for runs started with ``prefect deployment run``).
"""

from __future__ import annotations

from typing import Any


class ExperimentConfigError(ValueError):
    """A config problem, with the field it concerns (``experiment.name``, ``config_path``...)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message if message.startswith(field) else f"{field}: {message}")


def check_experiment(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ExperimentConfigError("config", "an experiment config must be a mapping (YAML object)")
    exp = config.get("experiment")
    if not isinstance(exp, dict):
        raise ExperimentConfigError("experiment", "missing mapping 'experiment' with 'name' and 'run_name'")
    for key in ("name", "run_name"):
        value = exp.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ExperimentConfigError(f"experiment.{key}", "must be a non-empty string")
    return config


def default_job_name(config: dict[str, Any]) -> str:
    exp = config["experiment"]
    return f"{exp['name']}-{exp['run_name']}"


def default_experiment() -> dict[str, Any]:
    """What ``prefect deployment run 'run-simulation/<host>'`` runs with no parameters."""
    return {"experiment": {"name": "quickstart", "run_name": "default"}}
