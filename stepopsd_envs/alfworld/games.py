"""Official ALFWorld game files: where they live, which split and task type, in what order.

ALFWorld lays its games out as ``$ALFWORLD_DATA/json_2.1.1/{split}/{task folder}/{trial}/game.tw-pddl``
where the task folder starts with the task type (``pick_heat_then_place_in_recep-Apple-None-
DiningTable-26``). As ALFWorld's own loader does, folders with ``movable`` or ``Sliced`` in their
path are skipped and only files marked ``"solvable": true`` are kept.

Game order: paths sorted as strings (the same on every machine), then, if a ``shuffle_seed`` is
given, shuffled with ``random.Random(shuffle_seed)``. Two machines with the same data, split,
task types and seed evaluate the same games in the same order.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

SPLITS = ("train", "valid_seen", "valid_unseen")
GAME_FILENAME = "game.tw-pddl"

# Folder-name prefix -> the short task-type name used in the paper's tables (paper column order).
TASK_TYPES = {
    "pick_and_place_simple": "Pick",
    "look_at_obj_in_light": "Look",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "pick_two_obj_and_place": "PickTwo",
}
TASK_TYPE_NAMES = tuple(TASK_TYPES.values())

MISSING_DATA_HELP = (
    "Download the official games with `alfworld-download` (they go to $ALFWORLD_DATA, default "
    "~/.cache/alfworld) and set ALFWORLD_DATA to that folder, or pass data_dir=...; "
    "without downloads, use split='generated' (games generated offline)."
)


def alfworld_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The ALFWorld data root (``data_dir`` or ``$ALFWORLD_DATA``); raises if it holds no games."""
    root = data_dir if data_dir is not None else os.environ.get("ALFWORLD_DATA")
    if root is None:
        raise FileNotFoundError(f"ALFWorld data location unknown: ALFWORLD_DATA is not set. {MISSING_DATA_HELP}")
    root_path = Path(root).expanduser()
    if not (root_path / "json_2.1.1").is_dir():
        raise FileNotFoundError(f"No ALFWorld games at {root_path / 'json_2.1.1'}. {MISSING_DATA_HELP}")
    return root_path


def task_type_of(game_path: str | os.PathLike) -> str:
    """The short task type (Pick, Look, Clean, Heat, Cool, PickTwo) from a game's folder names.

    >>> task_type_of("json_2.1.1/valid_unseen/pick_two_obj_and_place-Pen-None-Desk-1/trial_T1/game.tw-pddl")
    'PickTwo'
    """
    for part in reversed(Path(game_path).parts):
        prefix = part.split("-", 1)[0]
        if prefix in TASK_TYPES:
            return TASK_TYPES[prefix]
    raise ValueError(f"{game_path}: no ALFWorld task-type folder (one of {sorted(TASK_TYPES)}) in its path")


def normalize_task_types(task_types: Iterable[str] | None) -> tuple[str, ...]:
    """Validate short task-type names (folder prefixes are accepted too); None means all six."""
    if task_types is None:
        return TASK_TYPE_NAMES
    names = tuple(TASK_TYPES.get(name, name) for name in task_types)
    unknown = [name for name in names if name not in TASK_TYPE_NAMES]
    if unknown:
        raise ValueError(f"unknown ALFWorld task types {unknown}; choose from {list(TASK_TYPE_NAMES)}")
    return names


def find_games(root: str | os.PathLike, task_types: Iterable[str] | None = None) -> list[Path]:
    """Every solvable ``game.tw-pddl`` under ``root`` of the given task types, sorted by path."""
    wanted = set(normalize_task_types(task_types))
    games = []
    for path in sorted(Path(root).rglob(GAME_FILENAME), key=str):
        relative = str(path.relative_to(root))
        if "movable" in relative or "Sliced" in relative:
            continue
        if task_type_of(path) in wanted and is_marked_solvable(path):
            games.append(path)
    return games


def is_marked_solvable(game_path: Path) -> bool:
    """ALFWorld's check: the file has ``"solvable": true`` (files without the key are skipped)."""
    try:
        with open(game_path, encoding="utf-8") as handle:
            game = json.load(handle)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise damaged_game(game_path, error) from None
    return isinstance(game, dict) and bool(game.get("solvable", False))


def damaged_game(game_path: str | os.PathLike, error: ValueError) -> ValueError:
    """The one-line error for a game file that is not whole JSON (truncated, overwritten)."""
    return ValueError(f"{game_path} is a damaged ALFWorld game file ({error}); download or generate it again "
                      "(`alfworld-download`), or remove it")


def official_games(
    split: str,
    data_dir: str | os.PathLike | None = None,
    task_types: Iterable[str] | None = None,
    shuffle_seed: int | None = None,
) -> list[Path]:
    """The official games of ``split`` in the documented order (sorted, then seeded shuffle)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    split_dir = alfworld_data_dir(data_dir) / "json_2.1.1" / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"No ALFWorld split {split!r} at {split_dir}. {MISSING_DATA_HELP}")
    games = find_games(split_dir, task_types)
    if not games:
        raise FileNotFoundError(f"No solvable games of types {list(normalize_task_types(task_types))} in {split_dir}.")
    return ordered(games, shuffle_seed)


def ordered(games: list[Path], shuffle_seed: int | None) -> list[Path]:
    """Sorted by path; shuffled with ``random.Random(shuffle_seed)`` when a seed is given."""
    games = sorted(games, key=str)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(games)
    return games
