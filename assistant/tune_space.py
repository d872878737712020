"""The search space of `assistant tune`: which settings a trial may change, and over what values.

    assistant tune --space space.toml

A space file names config fields (`train.*`, the training; `synth.*`, the data mix) as TOML tables, each
with a range (`low`, `high`, optional `log` and `step`) or a list of `choices`; it replaces that field's
default below. A field the file leaves out keeps its default; `choices = [value]` pins it. The index
(`index.*`, `retrieve.*`) is never searched: every trial reads the same knowledge base.

    ["train.learning_rate"]
    low = 1e-4
    high = 3e-3
    log = true

    ["synth.paraphrases"]
    choices = [2, 4]
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.core.config import Config, ConfigError

SEARCHED_SECTIONS = ("train", "synth")
Value = bool | int | float | str


class Knob(BaseModel):
    """One searched setting: a range or a list of choices."""
    model_config = ConfigDict(extra="forbid")

    low: float | None = Field(None, description="Smallest value of a range.")
    high: float | None = Field(None, description="Largest value of a range.")
    log: bool = Field(False, description="Draw the range on a log scale (learning rates).")
    step: float | None = Field(None, description="Grid step of a range (integers: 1 unless given).")
    choices: list[Value] | None = Field(None, min_length=1, description="The values to choose among, instead of a range.")


# The settings that matter for knowledge injection on a small model: how fast and how much the adapter
# learns, where it sits, and what the data shows it (the data-mix knobs rebuild the dataset; trials that
# share a mix share one dataset). Template refusals (`synth.refusals`) are left out: they teach a style
# shortcut that refused every natural question after 24 minutes of training (issue #15).
DEFAULT_SPACE: dict[str, Knob] = {
    "train.learning_rate": Knob(low=2e-4, high=3e-3, log=True),
    "train.lora_r": Knob(choices=[8, 16, 32]),
    "train.lora_alpha": Knob(choices=[16, 32, 64]),
    "train.target_modules": Knob(choices=["all-linear", "q_proj,k_proj,v_proj,o_proj", "gate_proj,up_proj,down_proj"]),
    "synth.paraphrases": Knob(low=2, high=6),
    "synth.raft_fraction": Knob(low=0.25, high=0.75),
    "synth.raft_oracle_fraction": Knob(low=0.8, high=1.0),
}


def load_space(path: Path | None, cfg: Config) -> dict[str, Knob]:
    """The default space with the file's fields replacing theirs; every bound and choice is checked
    against the config's own validation, so a bad value fails here, naming the file and the field."""
    space = dict(DEFAULT_SPACE)
    if path is not None:
        space.update(_read_space_file(Path(path)))
    where = str(path) if path is not None else "the default search space"
    for name, knob in space.items():
        _check_knob(name, knob, cfg, where)
    return {name: _with_default_choice(name, knob, cfg) for name, knob in space.items()}


def _read_space_file(path: Path) -> dict[str, Knob]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: search space file not found; check --space") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); see `assistant tune --help` for the format") from err
    knobs = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f'{path}: "{name}" must be a table such as ["{name}"] with low/high or choices')
        try:
            knobs[name] = Knob.model_validate(table)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
            raise ConfigError(f'{path}: ["{name}"]: {problems}; give low and high (optional log, step) or choices') from err
    return knobs


def _check_knob(name: str, knob: Knob, cfg: Config, where: str) -> None:
    section, _, field = name.partition(".")
    if section not in SEARCHED_SECTIONS or field not in type(getattr(cfg, section)).model_fields:
        raise ConfigError(f'{where}: "{name}" is not a setting a trial can change; use a field of '
                          f"[{'] or ['.join(SEARCHED_SECTIONS)}] in assistant/config.py")
    is_range = knob.low is not None and knob.high is not None
    if is_range == (knob.choices is not None) or (knob.choices is None and (knob.low is None) != (knob.high is None)):
        raise ConfigError(f'{where}: "{name}" needs either low and high, or choices (not both)')
    if is_range and knob.low > knob.high:
        raise ConfigError(f'{where}: "{name}" has low {knob.low} above high {knob.high}; swap them')
    if is_range and _is_int_field(name) and not (float(knob.low).is_integer() and float(knob.high).is_integer()):
        raise ConfigError(f'{where}: "{name}" is a whole number; give integer low and high')
    for value in ([knob.low, knob.high] if is_range else knob.choices):
        try:
            apply_params(cfg, {name: int(value) if _is_int_field(name) else value})
        except ConfigError as err:
            raise ConfigError(f'{where}: "{name}" = {value!r} is not a valid value: {err}') from None


def _with_default_choice(name: str, knob: Knob, cfg: Config) -> Knob:
    """Choices that include the configured value, so the first trial (the configured settings) can run
    them; a range needs nothing, Optuna accepts a fixed value outside it."""
    current = configured_value(cfg, name)
    if knob.choices is None or current in knob.choices:
        return knob
    return knob.model_copy(update={"choices": [*knob.choices, current]})


def _is_int_field(name: str) -> bool:
    section, _, field = name.partition(".")
    return Config.model_fields[section].annotation.model_fields[field].annotation is int


def configured_value(cfg: Config, name: str) -> Value:
    section, _, field = name.partition(".")
    return getattr(getattr(cfg, section), field)


def suggest(trial, space: dict[str, Knob]) -> dict[str, Value]:
    """One value per knob, drawn by the study's sampler (or the enqueued values of a fixed trial)."""
    params: dict[str, Value] = {}
    for name, knob in space.items():
        if knob.choices is not None:
            params[name] = trial.suggest_categorical(name, knob.choices)
        elif _is_int_field(name):
            params[name] = trial.suggest_int(name, int(knob.low), int(knob.high), step=int(knob.step or 1), log=knob.log)
        else:
            params[name] = trial.suggest_float(name, knob.low, knob.high, step=knob.step, log=knob.log)
    return params


def apply_params(cfg: Config, params: dict[str, Any], train: dict[str, Any] | None = None) -> Config:
    """`cfg` with the trial's settings (and any other train settings) in place, validated like a config file."""
    data = cfg.model_dump()
    for name, value in params.items():
        section, _, field = name.partition(".")
        data[section][field] = value
    data["train"].update(train or {})
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())) from err
