"""An expert that explores like an agent: ALFWorld's own hand-coded expert, which sees only the text.

The planner's walkthrough (``info["expert_actions"]``) knows where every object is and goes
straight there; a policy imitating it has to guess the hidden location and never sees what
to do after a wrong guess. ALFWorld's hand-coded expert (``HandCodedTWAgent``, the expert of
ALFWorld's DAgger training) searches receptacles that can hold the object, opens closed ones,
remembers what it saw and recovers, so its episodes teach searching. It is not always right
(it fails some PickTwo and Look games); SFT keeps only won episodes.

ALFWorld builds it from a ``traj_data.json`` beside the game; the task parameters it reads
are all in the game folder's name (``pick_heat_then_place_in_recep-Apple-None-Fridge-17``),
so official and generated games work without that file.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

_SHARED_RANDOM = threading.Lock()  # guards the swap of alfworld's module-level `random` (see act)


# The task types whose object must be changed (heated, cooled, cleaned) before it is placed
TRANSFORM_TASK_TYPES = ("pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep",
                        "pick_clean_then_place_in_recep")


def task_params_of(game_path: Path, *, skip_transform: bool = False) -> dict[str, Any]:
    """The hand-coded expert's task parameters from a game's task folder name; with
    ``skip_transform`` a heat / cool / clean task reads as plain pick-and-place (the object goes
    straight to the target, unchanged: the careless demonstrator's task).

    Raises ValueError for a folder not named like ALFWorld's (``{task type}-{Object}-{Mrecep}-{Target}-{n}``).
    """
    parts = game_path.parent.parent.name.split("-")
    if len(parts) < 5:
        raise ValueError(f"{game_path}: the task folder is not named like ALFWorld's "
                         "'{task type}-{Object}-{Mrecep}-{Target}-{n}'")
    task_type, object_type, movable_type, target_type = parts[:4]
    if skip_transform and task_type in TRANSFORM_TASK_TYPES:
        task_type = "pick_and_place_simple"
    return {
        "task_type": task_type,
        "object_target": object_type.lower(),
        "parent_target": target_type.lower(),
        "toggle_target": target_type.lower(),  # Look tasks name the lamp where others name the receptacle
        "mrecep_target": "" if movable_type == "None" else movable_type.lower(),
        "object_sliced": False,
    }


class ExploringExpert:
    """Next action of ALFWorld's hand-coded expert, step by step, from the engine's state.

    The first call, with ``last_command=""``, reads the game's intro (TextWorld's banner included:
    the expert finds the room's receptacles after "Welcome").

    >>> expert = ExploringExpert(game_path, seed=0)   # doctest: +SKIP
    >>> expert.act(engine.state, "")                  # doctest: +SKIP
    'go to countertop 1'
    """

    def __init__(self, game_path: Path, seed: int, max_steps: int = 200, *, skip_transform: bool = False) -> None:
        """Raises ValueError for games whose task the hand-coded expert does not know.
        ``skip_transform``: play a heat / cool / clean task as if it were pick-and-place
        (:func:`task_params_of`); having placed the object it has nothing left to do and says "look"."""
        from alfworld.agents.expert.handcoded_expert_tw import HandCodedTWAgent

        params = task_params_of(game_path, skip_transform=skip_transform)
        self._agent = HandCodedTWAgent(max_steps=max_steps)
        try:
            policy_class = self._agent.get_task_policy(params)
        except Exception as error:  # alfworld raises a bare Exception("Invalid Task Type: ...")
            raise ValueError(f"{game_path}: no hand-coded expert for task type {params['task_type']!r}") from error
        self._agent.task_params = params
        self._agent.policy = policy_class(params, max_steps=max_steps)
        self._rng = random.Random(seed)
        # ALFWorld's expert re-plans from the state, so one that skipped the transform would go on
        # taking the object back and forth; the careless demonstrator stops once it is placed
        self._placement = (params["object_target"], params["parent_target"]) if skip_transform else None
        self._placed = False

    def act(self, state, last_command: str) -> str:
        """The next command given the engine's state (with facts) after ``last_command``."""
        from alfworld.agents.expert import handcoded_expert
        from alfworld.agents.expert.handcoded_expert import HandCodedAgentFailed, HandCodedAgentTimeout

        words = last_command.split()
        if self._placement and words[:1] in (["move"], ["put"]) and words[1:2] == [self._placement[0]] \
                and self._placement[1] in words:
            self._placed = True
        if self._placed:
            return "look"
        # The expert draws from the module-level `random`; a private generator per episode keeps
        # expert episodes reproducible without touching the process's global random state. Envs
        # may step in worker threads, hence the lock around the swap.
        with _SHARED_RANDOM:
            shared, handcoded_expert.random = handcoded_expert.random, self._rng
            try:
                command = self._agent.act(state, 0, state["won"], last_command)
            except (HandCodedAgentTimeout, HandCodedAgentFailed):  # the expert gave up
                return "look"
            finally:
                handcoded_expert.random = shared
        return command if command in state["admissible_commands"] else "look"
