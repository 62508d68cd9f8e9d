"""The TextEnv base: a real ``gymnasium.Env[str, str]`` that speaks an agent text protocol.

``step`` takes the model's *raw* output for one turn. The env's protocol parses it; a
malformed output never reaches the game: it becomes an invalid step whose observation is
the protocol's corrective feedback. Subclasses implement two methods:

* ``_start_episode(options) -> (observation, info)``
* ``_apply_action(action) -> (observation, reward, terminated, info)``; a command the game
  rejects returns ``info["valid_action"] = False``, and ``step`` gives it ``invalid_action_reward``
  (as it gives a malformed output) unless the step won

Info keys every TextEnv returns (subclasses add their own):

=================  ==========================================================
``task``           the task text the agent must accomplish
``task_id``        a stable id of the task (game path, question id, ...)
``task_type``      a coarse category used for per-type metrics ("" if none)
``admissible_actions``  list of currently valid commands ([] if unknown)
``valid_action``   (step) the output parsed and the game accepted the action
``thought``        (step) the parsed thought text
``action``         (step) the parsed action text ("" when unparseable)
``won``            whether the task has been accomplished
=================  ==========================================================

Episode length: up to three caps apply, and whichever is hit first ends the episode.

* ``gymnasium.register(..., max_episode_steps=N)`` (or ``gymnasium.make(..., max_episode_steps=N)``):
  Gymnasium's ``TimeLimit`` wrapper returns ``truncated=True`` on step N (FetchItem 20, ALFWorld 50;
  Search-QA registers none).
* An env's own cap, e.g. Search-QA's ``max_turns`` (default 4): its ``step`` returns ``truncated=True``
  on that turn without an answer.
* The rollout's ``RolloutConfig.max_turns`` (default 50), a safety cap on top of both: the rollout
  stops the episode after that many steps without asking the env.

Every cap marks the episode the same way: ``truncated`` (``Trajectory.truncated`` = True), unless the
last step also ``terminated`` the episode (a win on the capped step), which then counts as terminated.
Which cap fired is not recorded (Search-QA's ``info["turn"]`` tells its own).

Call order (Gymnasium's contract, enforced here so a misuse is one clear error, never a
traceback from deep inside a game): ``reset()`` first; ``step()`` until a step returns
``terminated=True``; then ``reset()`` again. ``step()`` before any ``reset()``, or after the episode
terminated, raises ``RuntimeError`` (Gymnasium's own ``OrderEnforcing`` wrapper, which ``gymnasium.make``
adds, raises its ``ResetNeeded`` for the first case before the env is reached). A *truncated* episode may
be stepped on (Gymnasium's ``TimeLimit`` truncates without the env knowing); callers stop there. ``step``
takes a ``str`` and ``reset`` an ``options`` dict or None; anything else raises ``TypeError``.

Training reads more than rolling out does (the expert for SFT, step labels for the oracle, stop
strings the protocol's actions end with): :func:`stepopsd_envs.contract.check_trainable_env` checks it,
and ``stepopsd train`` runs that check before any work. The corpus hooks (``corpus_variants``,
``corpus_text``, ``corpus_tags``) give the text a tokenizer for the env must read.

Window-mode prompts: the rollout's ``context_mode="window"`` builds one user message per step. An env
that has its own text for it (a framework's template its models were trained with) overrides
:meth:`TextEnv.window_prompt`; the default returns None and the rollout renders its generic message.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import gymnasium
from gymnasium import spaces

from stepopsd_envs.protocol import ParsedOutput, TagProtocol

# Tab, newline, carriage return and every printable BMP character except surrogates:
# wide enough that real observations (Wikipedia text included) are members of the space.
TEXT_CHARSET = "\t\n\r" + "".join(chr(c) for c in range(32, 0xD800) if c != 127)
MAX_TEXT_CHARS = 1 << 16


@functools.cache
def _text_space_prototype() -> spaces.Text:
    return spaces.Text(max_length=MAX_TEXT_CHARS, min_length=0, charset=TEXT_CHARSET)


def text_space() -> spaces.Text:
    """A Text space over :data:`TEXT_CHARSET` with a sampling generator of its own.

    Building the charset's lookup tables takes about 20 ms (55k characters), twice per env: a
    shallow copy of one space built per process shares those read-only tables instead.
    """
    space = copy.copy(_text_space_prototype())
    space.seed()  # its own generator, not the prototype's
    return space


# What a constructor option must be -> its test; "... or None" kinds also take None.
OPTION_KINDS = {
    "an integer": lambda value: type(value) is int,
    "a number": lambda value: type(value) in (int, float),
    "a string": lambda value: isinstance(value, str),
    "a path": lambda value: isinstance(value, (str, os.PathLike)),
    "true or false": lambda value: type(value) is bool,
    "a list of strings": lambda value: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
    "a list of paths": lambda value: isinstance(value, (list, tuple))
    and all(isinstance(v, (str, os.PathLike)) for v in value),
}


def check_option_types(**options: tuple[Any, str]) -> None:
    """Raise TypeError naming the first option whose value is not of its kind (a key of :data:`OPTION_KINDS`,
    optionally ``"... or None"``): what ``gymnasium.make`` kwargs from JSON or TOML most often get wrong.

    >>> check_option_types(top_k=("3", "an integer"))
    Traceback (most recent call last):
    TypeError: top_k must be an integer, got str '3'
    """
    for name, (value, kind) in options.items():
        optional = kind.endswith(" or None")
        if value is None and optional:
            continue
        if not OPTION_KINDS[kind.removesuffix(" or None")](value):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {shown}")


class TextEnv(gymnasium.Env[str, str]):
    """Base class for stepopsd text environments (see module docstring for the info keys)."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}
    # Constructor keyword arguments of the variants whose seeded episodes show this env's text: a
    # tokenizer built for stepopsd's envs (stepopsd.lab.tiny) plays each variant (its expert where
    # ``info`` offers one, else a random agent) and reads the prompts, outputs and observations.
    # () for an env whose episodes need data or an engine: its text then comes from corpus_text.
    corpus_variants: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def __init__(
        self,
        protocol: TagProtocol | None = None,
        *,
        invalid_action_reward: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.protocol = protocol or TagProtocol()
        self.invalid_action_reward = invalid_action_reward
        self.render_mode = render_mode
        self.observation_space, self.action_space = text_space(), text_space()
        self._last_observation = ""
        self._task_info: dict[str, Any] = {}
        self._won = False
        self._episode = "none"  # "none" before the first reset, then "running" or "terminated"

    # -- subclass interface ---------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _apply_action(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        raise NotImplementedError

    def system_prompt(self) -> str:
        """The system message an agent for this env should receive."""
        return self.protocol.instructions

    def window_prompt(self, history_steps: int) -> str | None:
        """The env's own user message for the next step of a window-mode rollout, or None (the default).

        Rendered from the env's own record of the episode: after ``reset`` it is the first step's
        message; after each ``step``, the next one's. It must show the task, the last
        ``history_steps`` steps (actions and what they returned), the current observation and,
        where the env lists them, the actions admissible now. The rollout asks for its
        ``history_steps`` and for fewer while the prompt does not fit its token budget (down to 0).

        The message is sent as the ONLY message of the prompt (no system message, as verl-agent
        and Search-R1 send theirs), so it carries the instructions; the rollout's
        ``show_admissible_actions`` does not apply to it. None: the rollout builds its generic
        message (:func:`stepopsd.rollout.window_message`) after :meth:`system_prompt`.
        """
        return None

    @classmethod
    def corpus_text(cls, options: Mapping[str, Any]) -> Iterator[str]:
        """Text this env shows or expects beyond its variants' episodes (an engine's grammar, a
        generated world), for a tokenizer that must read it; none by default. ``options``: the
        tokenizer's build options (the tiny model spec's fields, ``alfworld_data``, and ``run_env_id``,
        the env of the run the tokenizer is built for); an env reads the keys it knows."""
        return iter(())

    @classmethod
    def corpus_tags(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """Protocol tags beyond ``<think>``/``<action>`` that should each be one token when this
        env's ``corpus_text(options)`` is read; none by default."""
        return ()

    # -- gymnasium.Env --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start a new episode; ``options`` are env-specific (e.g. ``{"game": path}``)."""
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"reset options must be a dict of env-specific settings or None, "
                            f"got {type(options).__name__} {options!r:.60}")
        super().reset(seed=seed)
        self._episode = "none"  # until _start_episode succeeds
        observation, info = self._start_episode(dict(options or {}))
        self._episode = "running"
        self._won = False
        self._task_info = {k: info[k] for k in ("task", "task_id", "task_type") if k in info}
        info = {"admissible_actions": [], "won": False, **info}
        self._last_observation = observation
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Advance one turn with the model's raw output ``action`` (a str; see the call order above)."""
        if not isinstance(action, str):
            raise TypeError(f"action must be str (the model's raw output), got {type(action).__name__}")
        if self._episode == "none":
            raise RuntimeError("no episode is running: call reset() before step()")
        if self._episode == "terminated":
            raise RuntimeError("the episode has ended (terminated): call reset() before step()")
        parsed: ParsedOutput = self.protocol.parse(action)
        if not parsed.valid:
            observation, reward, terminated = parsed.feedback, self.invalid_action_reward, False
            info: dict[str, Any] = {"valid_action": False, "admissible_actions": self._admissible_actions()}
        else:
            observation, reward, terminated, info = self._apply_action(parsed.action)
            info = {"valid_action": True, **info}
            if not info["valid_action"] and not info.get("won", False):
                reward = self.invalid_action_reward
        self._won = self._won or bool(info.get("won", False))
        info = {**self._task_info, **info, "thought": parsed.thought, "action": parsed.action, "won": self._won}
        self._last_observation = observation
        if terminated:
            self._episode = "terminated"
        return observation, float(reward), bool(terminated), False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        if self.render_mode == "human":
            print(self._last_observation)
        return None

    def _admissible_actions(self) -> list[str]:
        """Commands the game accepts now; override where the game knows them."""
        return []
