"""What several commands share: choice enums built from the tuples the config validates, and
``--set KEY=VALUE`` overrides parsed against the config tree. Imports no torch."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from stepopsd.choices import ALGORITHM_NAMES, CONTEXT_MODES
from stepopsd.config import builtin_config_names
from stepopsd_cli.errors import fail


def choice_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum whose members are ``values`` (typer shows them as the option's choices)."""
    return Enum(name, {value: value for value in values}, type=str)


AlgorithmName = choice_enum("AlgorithmName", ALGORITHM_NAMES)
ContextMode = choice_enum("ContextMode", CONTEXT_MODES)

SET_HELP = ("Set any config field: dotted KEY=VALUE, repeatable, e.g. --set algorithm.alpha_clip=0.1 "
            "--set model.tiny.hidden_size=64 (bool: true/false; list: a,b; dict: JSON). "
            "`stepopsd config` lists every key with its value and meaning.")


def config_overrides(assignments: list[str], named: dict[str, object]) -> dict[str, object]:
    """``--set`` assignments, then the named options the user gave (dotted key -> value, None: not given).

    A key given both ways is a user error: which should win would be a guess.
    """
    from stepopsd.config import TrainConfig
    from stepopsd.configtree import ConfigError, parse_assignments

    try:
        overrides = parse_assignments(TrainConfig, assignments)
    except ConfigError as error:
        fail(str(error))
    for key, value in named.items():
        if value is None:
            continue
        if key in overrides:
            fail(f"{key} is given twice, by --set and by its own option; keep one")
        overrides[key] = value.value if isinstance(value, Enum) else value
    return overrides


CONFIG_HELP = f"A shipped config ({', '.join(builtin_config_names())}) or a TOML file; give it once."


def one_config(configs: list[str]) -> str | None:
    """The one ``--config`` given (the option is repeatable only so that a second one is refused, not dropped)."""
    if len(configs) > 1:
        fail(f"--config is given {len(configs)} times ({', '.join(configs)}); a run reads one config: keep one "
             "and give the other's fields with --set KEY=VALUE")
    return configs[0] if configs else None


def load_config(name_or_path: str | None, overrides: dict[str, object]):
    """The resolved TrainConfig (every field range-checked), or a one-line error."""
    from stepopsd.config import load_train_config
    from stepopsd.configtree import ConfigError

    try:
        return load_train_config(name_or_path, overrides)
    except ConfigError as error:
        fail(str(error))


def output_folder(path: Path) -> Path:
    """Create ``path`` with its parents (an output folder)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create {path}: {error.strerror}")
    return path
