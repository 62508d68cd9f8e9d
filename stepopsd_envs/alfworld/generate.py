"""Offline ALFWorld game generator: seeded household scenes -> solvable ``game.tw-pddl`` files.

A scene is written as a PDDL problem for ALFWorld's own ``alfred.pddl`` domain, with the goal
from ALFWorld's goal library (``alfworld.gen.goal_library``) and the task sentence put into ALFWorld's
``alfred.twl2`` grammar; both files ship inside the ``alfworld`` wheel, so nothing is downloaded.
Which receptacle may hold which object, and which objects can be heated, cooled, cleaned or
toggled, come from ALFWorld's tables (``alfworld.gen.constants``).

A scene is kept only if the real engine loads it, the goal does not already hold, and the PDDL
planner's plan, replayed command by command through the engine, wins it; the plan is stored as the
file's ``walkthrough``. Rejected scenes are replaced by the next seed, so play never meets an
unsolvable game. Files are laid out like the official data (``{task folder}/{trial}/game.tw-pddl``)
under a cache directory (``$STEPOPSD_CACHE/alfworld`` or ``~/.cache/stepopsd/alfworld``).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from stepopsd_envs.alfworld.games import GAME_FILENAME, TASK_TYPES, normalize_task_types
from stepopsd_envs.cache import cache_root

FOLDER_OF_TASK_TYPE = {short: folder for folder, short in TASK_TYPES.items()}
TASK_APPLIANCE = {"Clean": "SinkBasin", "Heat": "Microwave", "Cool": "Fridge"}
TASK_PROPERTY = {"Clean": "Cleanable", "Heat": "Heatable", "Cool": "Coolable"}
LAMPS = ("DeskLamp", "FloorLamp")
LAMP_HOLDERS = ("Desk", "SideTable", "Dresser", "Shelf")
MAX_ATTEMPTS = 50


@dataclass(frozen=True, slots=True)
class SceneConfig:
    """Size and command format of generated scenes."""

    num_receptacles: int = 8  # receptacles in the room, those the task needs included
    num_distractors: int = 6  # objects besides the task's own
    command_format: str = "move"  # "move" (move X to Y, current ALFWorld) or "put" (older put X in/on Y)

    def __post_init__(self) -> None:
        if self.num_receptacles < 3:
            raise ValueError(f"num_receptacles must be >= 3, got {self.num_receptacles}")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}")
        if self.command_format not in ("move", "put"):
            raise ValueError(f"command_format must be 'move' or 'put', got {self.command_format!r}")


@dataclass(frozen=True, slots=True)
class Scene:
    """What a game holds: receptacle ids, object placements, the goal's types and the sentence."""

    task_type: str
    object_type: str
    target_type: str  # receptacle type of the goal (the lamp type for Look)
    receptacles: tuple[tuple[str, str], ...]  # (id, type)
    objects: tuple[tuple[str, str, str], ...]  # (id, type, receptacle id)
    task_sentence: str


@lru_cache(maxsize=1)
def alfred_tables() -> dict[str, Any]:
    """ALFWorld's receptacle / object tables, gathered once."""
    import alfworld.gen.constants as constants

    static = sorted(set(constants.RECEPTACLES) - set(constants.MOVABLE_RECEPTACLES))
    holds = {rtype: set(constants.VAL_RECEPTACLE_OBJECTS.get(rtype, ())) for rtype in static}
    pickable = sorted({obj for objs in holds.values() for obj in objs if obj in constants.OBJECTS})
    return {
        "static": static,
        "holds": holds,
        "pickable": pickable,
        "otypes": [obj for obj in constants.OBJECTS if obj not in static],
        "openable": set(constants.OPENABLE_CLASS_LIST),
        "actions": constants.VAL_ACTION_OBJECTS,
    }


def _entity_id(type_name: str, rng: random.Random) -> str:
    """An ALFRED-style mangled id (``Apple_bar__plus_01_dot_20_bar_...``) the demangler numbers."""
    def coord() -> str:
        value = rng.uniform(-3.0, 3.0)
        return ("_plus_" if value >= 0 else "_minus_") + f"{abs(value):05.2f}".replace(".", "_dot_")

    coords = "_bar_".join(coord() for _ in range(3))
    if type_name.endswith("Basin"):  # "Sink|...|SinkBasin" -> demangled "sinkbasin"
        return f"{type_name[:-len('Basin')]}_bar_{coords}_bar_{type_name}"
    return f"{type_name}_bar_{coords}"


def sample_scene(task_type: str, scene_seed: int, config: SceneConfig) -> Scene | None:
    """A random scene for ``task_type``; None when the draw cannot host the task."""
    from alfworld.gen.goal_library import gdict

    tables = alfred_tables()
    rng = random.Random(f"{task_type}-{scene_seed}")
    holders_of = {obj: [r for r in tables["static"] if obj in tables["holds"][r]] for obj in tables["pickable"]}
    candidates = tables["pickable"]
    if task_type in TASK_PROPERTY:
        candidates = [obj for obj in candidates if obj in tables["actions"][TASK_PROPERTY[task_type]]]
    object_type = rng.choice(candidates)
    required = [TASK_APPLIANCE[task_type]] if task_type in TASK_APPLIANCE else []
    if task_type == "Look":
        target_type, holder = rng.choice(LAMPS), rng.choice(LAMP_HOLDERS)
        required.append(holder)
    else:
        targets = [r for r in holders_of[object_type] if r not in required]
        if not targets:
            return None
        target_type = rng.choice(targets)
        required.append(target_type)
    start_types = [r for r in holders_of[object_type] if r != target_type]
    if not start_types:
        return None
    required.append(rng.choice(start_types))
    extra = [rng.choice(tables["static"]) for _ in range(max(0, config.num_receptacles - len(required)))]
    receptacles = tuple((_entity_id(rtype, rng), rtype) for rtype in required + extra)

    def place(obj_type: str, forbidden: str) -> str | None:
        spots = [rid for rid, rtype in receptacles if obj_type in tables["holds"][rtype] and rtype != forbidden]
        return rng.choice(spots) if spots else None

    copies = rng.choice([2, 2, 3]) if task_type == "PickTwo" else 1
    objects = [(_entity_id(object_type, rng), object_type, place(object_type, target_type)) for _ in range(copies)]
    if task_type == "Look":
        lamp_spot = next(rid for rid, rtype in receptacles if rtype == holder)
        objects.append((_entity_id(target_type, rng), target_type, lamp_spot))
    others = [obj for obj in tables["pickable"] if obj != object_type]
    for _ in range(config.num_distractors):
        distractor = rng.choice(others)
        spot = place(distractor, "")
        if spot is not None:
            objects.append((_entity_id(distractor, rng), distractor, spot))
    if any(spot is None for _, _, spot in objects):
        return None
    template = rng.choice(gdict[FOLDER_OF_TASK_TYPE[task_type]]["templates"])
    sentence = template.format(obj=object_type.lower(), recep=target_type.lower(), toggle=target_type.lower(),
                               mrecep="")
    return Scene(task_type, object_type, target_type, receptacles, tuple(objects), sentence)


def scene_problem(scene: Scene, name: str) -> str:
    """The PDDL problem of a scene for ALFWorld's ``alfred`` domain."""
    from alfworld.gen.goal_library import gdict

    tables = alfred_tables()
    locations = {rid: f"loc_bar_{index}_bar_{index % 4}_bar_1_bar_30" for index, (rid, _) in enumerate(scene.receptacles)}
    start = "loc_bar__minus_9_bar__minus_9_bar_0_bar_30"  # no receptacle here: the agent must go somewhere
    declared = ["agent1 - agent", *(f"{loc} - location" for loc in [start, *locations.values()])]
    declared += [f"{rid} - receptacle" for rid, _ in scene.receptacles]
    declared += [f"{oid} - object" for oid, _, _ in scene.objects]
    declared += [f"{otype}Type - otype" for otype in tables["otypes"]]
    declared += [f"{rtype}Type - rtype" for rtype in tables["static"]]
    facts = [f"(atLocation agent1 {start})"]
    receptacle_types = sorted({rtype for _, rtype in scene.receptacles})
    object_types = sorted({otype for _, otype, _ in scene.objects})
    for rid, rtype in scene.receptacles:
        facts += [f"(receptacleType {rid} {rtype}Type)", f"(receptacleAtLocation {rid} {locations[rid]})"]
        if rtype in tables["openable"]:
            facts.append(f"(openable {rid})")
    facts += [f"(canContain {r}Type {o}Type)" for r in receptacle_types for o in object_types if o in tables["holds"][r]]
    for oid, otype, rid in scene.objects:
        facts += [f"(objectType {oid} {otype}Type)", f"(inReceptacle {oid} {rid})",
                  f"(objectAtLocation {oid} {locations[rid]})"]
        facts.append(f"(toggleable {oid})" if otype in LAMPS else f"(pickupable {oid})")
        facts += [f"({flag.lower()} {oid})" for flag in ("Heatable", "Coolable", "Cleanable")
                  if otype in tables["actions"][flag]]
    goal = gdict[FOLDER_OF_TASK_TYPE[scene.task_type]]["pddl"].replace("#", "-")
    goal = goal.format(obj=scene.object_type, recep=scene.target_type, toggle=scene.target_type)
    return (f"(define (problem {name})\n(:domain alfred)\n(:objects\n  " + "\n  ".join(declared)
            + "\n)\n(:init\n  " + "\n  ".join(facts) + "\n)\n" + goal)


def scene_grammar(sentence: str, command_format: str) -> str:
    """ALFWorld's grammar with the task sentence (and the older ``put X in/on Y`` if asked)."""
    from alfworld.info import ALFRED_TWL2_PATH

    grammar = Path(ALFRED_TWL2_PATH).read_text().replace("UNKNOWN GOAL", sentence)
    if command_format == "put":
        grammar = grammar.replace('template :: "move {o} to {r}";', 'template :: "put {o} in/on {r}";')
        grammar = grammar.replace("You move the {o.name} to the {r.name}.", "You put the {o.name} in/on the {r.name}.")
    return grammar


def planner_walkthrough(game: dict[str, Any], engine) -> list[str] | None:
    """The planner's plan if replaying it through the engine wins the game; None otherwise."""
    try:
        engine.load(game)
        engine.reset()
    except Exception:  # the engine rejects unreachable goals at load (KeyError 'val1' and kin)
        return None
    plan = engine.walkthrough
    if engine.won or not plan:
        return None
    for command in plan:
        if command not in engine.admissible_commands:
            return None
        engine.step(command)
    return plan if engine.won else None


def generate_game(task_type: str, scene_seed: int, config: SceneConfig, engine) -> dict[str, Any] | None:
    """A solvable game (``game.tw-pddl`` content) for one seed, or None if the scene is rejected."""
    from alfworld.info import ALFRED_PDDL_PATH

    scene = sample_scene(task_type, scene_seed, config)
    if scene is None:
        return None
    game = {
        "pddl_domain": Path(ALFRED_PDDL_PATH).read_text(),
        "grammar": scene_grammar(scene.task_sentence, config.command_format),
        "pddl_problem": scene_problem(scene, f"stepopsd_{task_type.lower()}_{scene_seed}"),
    }
    walkthrough = planner_walkthrough(game, engine)
    if walkthrough is None:
        return None
    return {**game, "solvable": True, "walkthrough": walkthrough, "task_type": task_type, "scene_seed": scene_seed}


def default_cache_dir() -> Path:
    """``$STEPOPSD_CACHE/alfworld`` or ``~/.cache/stepopsd/alfworld``."""
    return cache_root("alfworld")


def generated_games(
    per_type: int,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    task_types: list[str] | tuple[str, ...] | None = None,
    config: SceneConfig = SceneConfig(),
    engine=None,
) -> list[Path]:
    """``per_type`` solvable games of each task type, generated once into the cache, sorted by path.

    ``engine`` (an :class:`~stepopsd_envs.alfworld.engine.AlfredEngine`) checks solvability; pass
    the one your env already holds, since every engine keeps its planner library for good.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = root / f"generated-seed{seed}-r{config.num_receptacles}-d{config.num_distractors}-{config.command_format}"
    paths = []
    for task_type in normalize_task_types(task_types):
        for index in range(per_type):
            found = sorted(root.glob(f"{FOLDER_OF_TASK_TYPE[task_type]}-*-g{index:04d}/*/{GAME_FILENAME}"))
            if not found:
                if engine is None:
                    from stepopsd_envs.alfworld.engine import AlfredEngine

                    engine = AlfredEngine()
                found = [_generate_into(root, task_type, seed, index, config, engine)]
            paths.append(found[0])
    return sorted(paths, key=str)


def _generate_into(root: Path, task_type: str, seed: int, index: int, config: SceneConfig, engine) -> Path:
    """Generate game ``index`` of a type (the first accepted of its seeds) and write it atomically."""
    for attempt in range(MAX_ATTEMPTS):
        scene_seed = (seed * 100_003 + index) * MAX_ATTEMPTS + attempt
        game = generate_game(task_type, scene_seed, config, engine)
        if game is not None:
            break
    else:
        raise RuntimeError(f"no solvable {task_type} scene in {MAX_ATTEMPTS} seeds (config {config})")
    scene = sample_scene(task_type, scene_seed, config)
    folder = f"{FOLDER_OF_TASK_TYPE[task_type]}-{scene.object_type}-None-{scene.target_type}-g{index:04d}"
    path = root / folder / f"trial_seed{scene_seed}" / GAME_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(game))
    os.replace(temporary, path)  # parallel workers may race on the cache: last identical write wins
    return path
