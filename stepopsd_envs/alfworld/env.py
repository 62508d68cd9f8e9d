"""ALFWorld as a Gymnasium text env (``stepopsd/ALFWorld-v0``), on the real ALFWorld engine.

Game sources (``split``): the official ``train`` / ``valid_seen`` / ``valid_unseen`` games under
``$ALFWORLD_DATA`` (see :mod:`stepopsd_envs.alfworld.games`), ``generated`` games written offline
by :mod:`stepopsd_envs.alfworld.generate`, or an explicit list of ``games``.

Choosing the game of an episode (``reset``): ``options={"game": path}`` plays that file,
``options={"game_index": i}`` the i-th game of ``env.games``; otherwise a game is drawn uniformly
with the env's ``np_random`` (so ``reset(seed=s)`` is reproducible). ``options={"expert": True}``
(or ``expert_actions=True`` at construction) adds the planner's walkthrough as ``info["expert_actions"]``
and, at every turn, ``info["expert_action"]``: the next command of ALFWorld's hand-coded expert, which
searches for objects instead of knowing where they are (see :mod:`stepopsd_envs.alfworld.expert`).
``options={"expert": True, "careless": True}`` also adds ``info["careless_action"]``: the next command
of a careless demonstrator, the same expert playing a heat / cool / clean task as plain pick-and-place
(it takes the object straight to the target, skipping the step the task hangs on, then says "look").

ALFWorld conventions: 50 steps (``TimeLimit`` via the registry), terminated on a win, reward
``success_reward`` on the winning step (paper default 10; pass 1 / 0 for a 0-1 reward). The game
matches commands exactly and case-sensitively; anything else gives ``"Nothing happens."``. Each game's
own grammar defines its command format (``move X to Y`` or the older ``put X in/on Y``).

How a raw output becomes a command and what is penalised (``projection``):

* ``"strict"`` (default): :class:`~stepopsd_envs.protocol.TagProtocol` with a required ``<think>``;
  an output it cannot parse never reaches the game (its observation is the protocol's feedback).
  ``info["valid_action"]`` is False for such an output and for a command the game rejects; both get
  ``invalid_action_reward`` (-0.1) unless the step won.
* ``"verl_agent"``: verl-agent's ``alfworld_projection``
  (:func:`~stepopsd_envs.alfworld.protocol.verl_agent_projection`): every output is sent to the game,
  lower-cased (without action tags: its last 30 characters). ``info["valid_action"]`` is the
  projection's format flag (tags, ``<think>``, no Chinese), not the game's verdict; a format error
  adds ``invalid_action_reward`` to the step's reward (a win without ``<think>``: ``success_reward``
  + ``invalid_action_reward``), a rejected command costs nothing.

Info keys beyond :class:`~stepopsd_envs.text_env.TextEnv`'s: ``game`` (path of the game file),
``expert_actions``, ``expert_action`` and ``careless_action`` (when asked; the last two only for games
the hand-coded expert knows: task folders named like ALFWorld's). ``task_type`` is one of Pick, Look, Clean, Heat, Cool, PickTwo.

``env.unwrapped.build_prompt()`` renders verl-agent's ALFWorld user message for the next step, in the
template version ``prompt_version`` names (``"verl-agent"``, ``"verl-agent-2025-09"`` or the legacy
``"stepopsd-v0"``; see :mod:`stepopsd_envs.alfworld.protocol`), from the env's own record of the
episode: the current observation, the admissible actions now and, after the first step, the task and
the last H ``(observation, action)`` pairs. It is the env's :meth:`window_prompt`, so a window-mode
rollout sends exactly that text as its only message. The version also decides whether the first
observation (the reset observation) keeps TextWorld's welcome banner, as verl-agent shows it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stepopsd_envs.alfworld.engine import AlfredEngine, strip_banner, task_from_intro
from stepopsd_envs.alfworld.expert import ExploringExpert
from stepopsd_envs.alfworld.games import TASK_TYPE_NAMES, official_games, ordered, task_type_of
from stepopsd_envs.alfworld.generate import SceneConfig, generated_games
from stepopsd_envs.alfworld.protocol import (
    DEFAULT_PROMPT_VERSION,
    HISTORY_LENGTH,
    VerlAgentProjection,
    build_alfworld_prompt,
    first_observation,
    prompt_version as check_prompt_version,
    verl_agent_projection,
)
from stepopsd_envs.protocol import TagProtocol, repair_text
from stepopsd_envs.text_env import TextEnv, check_option_types

NOTHING_HAPPENS = "Nothing happens."
PROJECTIONS = ("strict", "verl_agent")


class ALFWorldEnv(TextEnv):
    """ALFWorld household tasks on the real TextWorld PDDL engine (official or generated games)."""

    table_columns = (*TASK_TYPE_NAMES, "All")  # the paper's success-table layout (stepopsd.evaluate)
    corpus_variants = ()  # episodes need game files: the text comes from corpus_text

    @classmethod
    def corpus_text(cls, options: Mapping[str, Any]) -> Iterator[str]:
        """The grammar's sentences (and with ``options["alfworld_data"]`` that folder's games' tasks,
        objects and walkthroughs); with ``options["alfworld_text"]`` verl-agent's prompts over generated
        scenes, so every object and receptacle name is a whole token. Nothing without alfworld."""
        from stepopsd_envs.alfworld.corpus import alfworld_corpus, alfworld_scene_corpus

        data = options.get("alfworld_data")
        yield from alfworld_corpus(Path(data) if data else None)
        if options.get("alfworld_text"):
            yield from alfworld_scene_corpus()

    def __init__(
        self,
        split: str = "valid_unseen",
        *,
        data_dir: str | os.PathLike | None = None,
        games: Sequence[str | os.PathLike] | None = None,
        task_types: Sequence[str] | None = None,
        shuffle_seed: int | None = None,
        generated_per_type: int = 10,
        generator_seed: int = 0,
        generated_receptacles: int = 8,
        generated_distractors: int = 6,
        cache_dir: str | os.PathLike | None = None,
        success_reward: float = 10.0,
        invalid_action_reward: float = -0.1,
        history_length: int = HISTORY_LENGTH,
        expert_actions: bool = False,
        prompt_version: str = DEFAULT_PROMPT_VERSION,
        projection: str = "strict",
        protocol: TagProtocol | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_option_types(split=(split, "a string"), data_dir=(data_dir, "a path or None"),
                           games=(games, "a list of paths or None"),
                           task_types=(task_types, "a list of strings or None"),
                           shuffle_seed=(shuffle_seed, "an integer or None"),
                           generated_per_type=(generated_per_type, "an integer"),
                           generator_seed=(generator_seed, "an integer"),
                           generated_receptacles=(generated_receptacles, "an integer"),
                           generated_distractors=(generated_distractors, "an integer"),
                           cache_dir=(cache_dir, "a path or None"), success_reward=(success_reward, "a number"),
                           invalid_action_reward=(invalid_action_reward, "a number"),
                           history_length=(history_length, "an integer"),
                           expert_actions=(expert_actions, "true or false"))
        check_prompt_version(prompt_version)
        super().__init__(_projection_protocol(projection, protocol),
                         invalid_action_reward=invalid_action_reward, render_mode=render_mode)
        self.prompt_version = prompt_version
        self.projection = projection
        self._engine = AlfredEngine()  # one per env for its whole life (see engine.py)
        scene = SceneConfig(num_receptacles=generated_receptacles, num_distractors=generated_distractors)
        self.games = _select_games(split, data_dir, games, task_types, shuffle_seed,
                                   generated_per_type, generator_seed, scene, cache_dir, self._engine)
        self.split = split if games is None else "custom"
        self.success_reward = success_reward
        self.history_length = history_length
        self.expert_actions = expert_actions
        self.history: list[tuple[str, str]] = []
        self._task = ""
        # info key -> the demonstrator behind it ("expert_action", "careless_action") and its last
        # suggestion (the game state it answers has not moved since)
        self._demonstrators: dict[str, ExploringExpert] = {}
        self._suggestions: dict[str, str] = {}

    # -- TextEnv --------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        game_path = self._choose_game(options)
        if self._engine.game_path != game_path:  # same game again (GRPO groups): skip the re-parse
            self._engine.load(game_path)
        expert = bool(options.get("expert", self.expert_actions))
        demonstrators = {"expert_action": _exploring_expert(game_path, self.np_random) if expert else None}
        if expert and options.get("careless"):
            demonstrators["careless_action"] = _exploring_expert(game_path, self.np_random, skip_transform=True)
        self._demonstrators = {key: demonstrator for key, demonstrator in demonstrators.items() if demonstrator}
        intro = self._engine.reset(with_facts=bool(self._demonstrators))
        observation = first_observation(intro, self.prompt_version)
        self._task = task_from_intro(strip_banner(intro))
        self.history = []
        info: dict[str, Any] = {
            "task": self._task,
            "task_id": str(game_path),
            "task_type": task_type_of(game_path),
            "game": str(game_path),
            "admissible_actions": self._engine.admissible_commands,
        }
        if expert:
            info["expert_actions"] = self._engine.walkthrough
        self._suggest("")
        info.update(self._suggestions)
        return observation, info

    def _apply_action(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self._engine.state is not None, "call reset() before step()"
        accepted = action in self._engine.admissible_commands
        observation = self._engine.step(action)
        won = self._engine.won
        reward = self.success_reward if won else 0.0
        # strict: a rejected command is an invalid step (TextEnv.step gives the penalty); verl_agent: only
        # the format flag counts (step), as verl-agent never penalises a command the game rejects
        rejected = not accepted and self.projection == "strict"
        info = {"valid_action": not rejected, "won": won, "game": str(self._engine.game_path),
                "admissible_actions": self._engine.admissible_commands}
        self._suggest(action)
        return observation, reward, won, info

    def _suggest(self, last_command: str) -> None:
        self._suggestions = {key: demonstrator.act(self._engine.state, last_command)
                             for key, demonstrator in self._demonstrators.items()}

    def _admissible_actions(self) -> list[str]:
        return self._engine.admissible_commands

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Advance one turn with the model's raw output; the step is added to ``self.history``."""
        observation_before = self._last_observation
        observation, reward, terminated, truncated, info = super().step(action)
        if self.projection == "verl_agent":
            reward, info = self._format_penalty(action, reward, info)
        self.history.append((observation_before, info["action"]))
        info.update(self._suggestions)  # after an unparseable output the game did not move: same suggestions
        return observation, reward, terminated, truncated, info

    def _format_penalty(self, output: str, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """verl-agent's invalid-action penalty: the projection's format flag, added after the game's reward."""
        _, format_ok = verl_agent_projection(repair_text(output)[0])
        return (reward if format_ok else reward + self.invalid_action_reward), {**info, "valid_action": format_ok}

    # -- agent protocol -------------------------------------------------------------------
    def build_prompt(self, history_length: int | None = None) -> str:
        """verl-agent's user message for the next step; H = ``self.history_length`` unless given."""
        return build_alfworld_prompt(
            self._task,
            self._last_observation,
            self._admissible_actions(),
            self.history,
            self.history_length if history_length is None else history_length,
            self.prompt_version,
        )

    def window_prompt(self, history_steps: int) -> str:
        """The window-mode message of the next step: :meth:`build_prompt` with the rollout's H."""
        return self.build_prompt(history_steps)

    # -- game choice ----------------------------------------------------------------------
    def _choose_game(self, options: dict[str, Any]) -> Path:
        if "game" in options:
            path = Path(options["game"])
            if not path.is_file():
                raise FileNotFoundError(f"ALFWorld game file not found: {path}")
            return path
        if "game_index" in options:
            index = int(options["game_index"])
            if not 0 <= index < len(self.games):
                raise IndexError(f"game_index {index} out of range: this env has {len(self.games)} games")
            return self.games[index]
        return self.games[int(self.np_random.integers(len(self.games)))]


def _projection_protocol(projection: str, protocol: TagProtocol | None) -> TagProtocol | VerlAgentProjection:
    """The text protocol that turns raw outputs into commands under ``projection``."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {list(PROJECTIONS)}, got {projection!r}")
    if projection == "strict":
        return protocol or TagProtocol(require_thought=True)
    if protocol is not None:
        raise ValueError("projection='verl_agent' brings its own protocol: pass either protocol or projection")
    return VerlAgentProjection()


def _exploring_expert(game_path: Path, np_random, *, skip_transform: bool = False) -> ExploringExpert | None:
    """ALFWorld's hand-coded expert for this game, or None where it cannot play it (the walkthrough remains)."""
    try:
        return ExploringExpert(game_path, seed=int(np_random.integers(2**31)), skip_transform=skip_transform)
    except ValueError:  # a task folder not named like ALFWorld's, or a task type it does not know
        return None


def _select_games(
    split: str,
    data_dir: str | os.PathLike | None,
    games: Sequence[str | os.PathLike] | None,
    task_types: Sequence[str] | None,
    shuffle_seed: int | None,
    generated_per_type: int,
    generator_seed: int,
    scene: SceneConfig,
    cache_dir: str | os.PathLike | None,
    engine: AlfredEngine,
) -> list[Path]:
    """The env's game list from an explicit list, the generator, or an official split."""
    if games is not None:
        if not games:
            raise ValueError("games must name at least one game.tw-pddl file")
        return ordered([Path(game) for game in games], shuffle_seed)
    if split == "generated":
        paths = generated_games(generated_per_type, seed=generator_seed, cache_dir=cache_dir, task_types=task_types,
                                config=scene, engine=engine)
        return ordered(paths, shuffle_seed)
    return official_games(split, data_dir, task_types, shuffle_seed)
