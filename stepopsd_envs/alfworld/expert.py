"""An expert that explores like an agent: ALFWorld's own hand-coded expert, which sees only the text.

The planner's walkthrough (``info["expert_actions"]``) knows where every object is and goes
straight there; a policy imitating it has to guess the hidden location and never sees what
to do after a wrong guess. ALFWorld's hand-coded expert (``HandCodedTWAgent``, the expert of
ALFWorld's DAgger training) searches receptacles that can hold the object, opens closed ones,
remembers what it saw and recovers, so its episodes teach searching. It is not always right
(it fails some PickTwo games); SFT keeps only won episodes.

ALFWorld builds it from a ``traj_data.json`` beside the game; the task parameters it reads
are all in the game folder's name (``pick_heat_then_place_in_recep-Apple-None-Fridge-17``),
so official and generated games work without that file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def task_params_of(game_path: Path) -> dict[str, Any]:
    """The hand-coded expert's task parameters from a game's task folder name."""
    task_type, object_type, movable_type, target_type = game_path.parent.parent.name.split("-")[:4]
    lower = str.lower
    return {
        "task_type": task_type,
        "object_target": lower(object_type),
        "parent_target": lower(target_type),
        "toggle_target": lower(target_type),  # Look tasks name the lamp where others name the receptacle
        "mrecep_target": "" if movable_type == "None" else lower(movable_type),
        "object_sliced": False,
    }


class ExploringExpert:
    """Next action of ALFWorld's hand-coded expert, step by step, from the engine's state.

    >>> expert = ExploringExpert(game_path, seed=0)       # doctest: +SKIP
    >>> expert.start(raw_intro); expert.act(state, "")   # doctest: +SKIP
    'go to countertop 1'
    """

    def __init__(self, game_path: Path, seed: int, max_steps: int = 200) -> None:
        from alfworld.agents.expert.handcoded_expert_tw import HandCodedTWAgent

        params = task_params_of(game_path)
        self._agent = HandCodedTWAgent(max_steps=max_steps)
        self._agent.task_params = params
        self._agent.policy = self._agent.get_task_policy(params)(params, max_steps=max_steps)
        self._rng = random.Random(seed)

    def start(self, raw_intro: str) -> None:
        """Read the game's intro (with TextWorld's banner: the expert looks for 'Welcome')."""
        self._agent.observe(raw_intro)

    def act(self, state, last_command: str) -> str:
        """The next command given the engine's state (with facts) after ``last_command``."""
        from alfworld.agents.expert import handcoded_expert
        from alfworld.agents.expert.handcoded_expert import HandCodedAgentFailed, HandCodedAgentTimeout

        # The expert draws from the module-level `random`; a private generator per episode keeps
        # expert episodes reproducible without touching the process's global random state.
        shared, handcoded_expert.random = handcoded_expert.random, self._rng
        try:
            command = self._agent.act(state, 0, state["won"], last_command)
        except (HandCodedAgentTimeout, HandCodedAgentFailed):  # the expert gave up
            return "look"
        finally:
            handcoded_expert.random = shared
        return command if command in state["admissible_commands"] else "look"
