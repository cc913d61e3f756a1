"""The experiment YAML as the reference simulator understands it.

Kept free of numpy and Prefect so the REST API can call :func:`validate_config`
cheaply and answer 422 before a job is queued, with the same message the
simulator would otherwise write as its last ``[ERROR]`` line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

# The shared-storage rule for names (blocks.storage.safe_name), restated here so
# that validating a config does not import Prefect.
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ConfigError(ValueError):
    """A config problem and the dotted field it concerns (``algorithm.params.learning_rate``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class _Section(BaseModel):
    """A section of the simulator's own: typos are errors and ``"5"`` is not silently an int.
    Defaults are validated too, so cross-field checks see them."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


class NoControlParams(_Section):
    """No hyper-parameters: batteries idle, EVs charge at full power from arrival."""


class RuleBasedParams(_Section):
    """Thresholds are fractions of each building's price range over the episode
    (0 = its cheapest step, 1 = its dearest), so one setting suits any tariff."""

    cheap_price_fraction: float = Field(0.25, ge=0, le=1, description="Below this, grid power is cheap: charge EVs and the battery.")
    discharge_price_fraction: float = Field(0.5, ge=0, le=1, description="At or above this, discharge the battery to cover the load.")
    grid_charge_soc: float = Field(0.3, ge=0, le=1, description="SoC to charge the battery to from the grid in cheap steps (0 = never).")

    @field_validator("discharge_price_fraction")
    @classmethod
    def _not_below_cheap(cls, value: float, info: ValidationInfo) -> float:
        cheap = info.data.get("cheap_price_fraction")
        if cheap is not None and value < cheap:
            raise ValueError(f"must be at least cheap_price_fraction ({cheap})")
        return value


class QLearningParams(_Section):
    """Tabular Q-learning, one table per building, over (hour, SoC, price level, PV surplus)."""

    learning_rate: float = Field(0.2, gt=0, le=1)
    discount: float = Field(0.95, ge=0, lt=1)
    epsilon: float = Field(0.5, ge=0, le=1, description="Exploration rate of the first training episode.")
    epsilon_decay: float = Field(0.6, gt=0, le=1, description="Factor applied to epsilon after each episode.")
    min_epsilon: float = Field(0.01, ge=0, le=1)
    hour_bins: int = Field(3, ge=1, le=24, description="Hour-of-day bins of the state (3 = 8-hour blocks).")
    soc_bins: int = Field(4, ge=2, le=50)
    price_levels: int = Field(3, ge=1, le=10, description="Bins of the price range in the state.")
    cheap_price_fraction: float = Field(0.25, ge=0, le=1, description="EV charging rule, as for rule_based.")


ALGORITHM_PARAMS: dict[str, type[_Section]] = {
    "no_control": NoControlParams,
    "rule_based": RuleBasedParams,
    "q_learning": QLearningParams,
}
LEARNING_ALGORITHMS = frozenset({"q_learning"})


class _Experiment(BaseModel):
    """OPEVA puts more keys here (descriptions, owners...); only the names matter to us."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1)
    run_name: str = Field(min_length=1)


class _Algorithm(_Section):
    name: str = "q_learning"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _empty_params(cls, value: Any) -> Any:
        return {} if value is None else value  # "params:" with nothing under it


class _Simulation(_Section):
    buildings: int = Field(5, ge=1, le=500)
    days: int = Field(30, ge=1, le=366)


class _RawConfig(BaseModel):
    """The YAML's shape; other top-level keys belong to OPEVA and are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    experiment: _Experiment
    dataset: str | None = None
    algorithm: _Algorithm = Field(default_factory=_Algorithm)
    episodes: int = Field(5, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    simulation: _Simulation = Field(default_factory=_Simulation)

    @field_validator("algorithm", mode="before")
    @classmethod
    def _algorithm_shorthand(cls, value: Any) -> Any:
        """``algorithm: rule_based`` is short for ``algorithm: {name: rule_based}``."""
        return {"name": value} if isinstance(value, str) else value

    @field_validator("algorithm", "simulation", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True)
class SimulatorConfig:
    """A validated experiment. ``params`` is the algorithm's parameter model with
    defaults filled in; ``buildings``/``days`` size the built-in sample dataset."""

    experiment_name: str
    run_name: str
    dataset: str | None
    algorithm: str
    params: BaseModel
    episodes: int
    seed: int
    buildings: int
    days: int

    @property
    def learns(self) -> bool:
        return self.algorithm in LEARNING_ALGORITHMS


def _as_config_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in (*prefix, *err["loc"])) or "config"
    if err["type"] == "extra_forbidden":
        return ConfigError(field, "unknown key")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return ConfigError(field, "must be a mapping")
    cause = (err.get("ctx") or {}).get("error")
    return ConfigError(field, str(cause) if err["type"] == "value_error" and cause else err["msg"])


def _check_dataset_folder(name: str, data_dir: Path) -> None:
    schema = Path(data_dir) / "datasets" / name / "schema.json"
    if not schema.is_file():
        raise ConfigError("dataset", f"no dataset {name!r}: datasets/{name}/schema.json does not exist under {data_dir}")
    try:
        buildings = json.loads(schema.read_text()).get("buildings")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError("dataset", f"datasets/{name}/schema.json is not a readable JSON object: {exc}") from exc
    if not isinstance(buildings, dict) or not buildings:
        raise ConfigError("dataset", f"datasets/{name}/schema.json lists no buildings")


def validate_config(config: Any, data_dir: Path | None = None) -> SimulatorConfig:
    """Check an experiment config (the parsed YAML) and return it typed, with defaults.

    Unknown top-level keys are ignored (OPEVA configs carry others); unknown keys
    inside the simulator's own sections are errors. When ``data_dir`` (the shared
    data root) is given, ``datasets/<dataset>/schema.json`` must exist under it.
    Raises :class:`ConfigError` naming the first field at fault.
    """
    if not isinstance(config, dict):
        raise ConfigError("config", "an experiment config must be a mapping (YAML object)")
    try:
        raw = _RawConfig.model_validate(config)
    except ValidationError as exc:
        raise _as_config_error(exc) from exc

    name = raw.algorithm.name
    if name not in ALGORITHM_PARAMS:
        raise ConfigError("algorithm.name", f"unknown algorithm {name!r} (choose from {', '.join(ALGORITHM_PARAMS)})")
    model = ALGORITHM_PARAMS[name]
    try:
        params = model.model_validate(raw.algorithm.params)
    except ValidationError as exc:
        error = _as_config_error(exc, ("algorithm", "params"))
        if exc.errors()[0]["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            raise ConfigError(error.field, f"unknown parameter for {name} (known: {known})") from exc
        raise error from exc

    if raw.dataset is not None:
        if not _DATASET_NAME.fullmatch(raw.dataset) or ".." in raw.dataset:
            raise ConfigError("dataset", f"{raw.dataset!r} must be a plain folder name under datasets/")
        if data_dir is not None:
            _check_dataset_folder(raw.dataset, data_dir)

    return SimulatorConfig(
        experiment_name=raw.experiment.name,
        run_name=raw.experiment.run_name,
        dataset=raw.dataset,
        algorithm=name,
        params=params,
        episodes=raw.episodes,
        seed=raw.seed,
        buildings=raw.simulation.buildings,
        days=raw.simulation.days,
    )
