"""The real ALFWorld text engine: one TextWorld PDDL env plus ALFWorld's name demangler.

Engine pitfalls handled here, in one place:

* fast-downward's PDDL translator overwrites ``sys.argv`` every time a game is loaded or reset
  (``fast_downward.pddl2sas``); :func:`preserved_argv` puts it back.
* textworld's synchronous batch mode shares state across slots, so it is never used: each
  engine is a plain ``PddlEnv``; parallelism comes from separate env instances/processes.
* Every ``PddlEnv`` loads a private copy of ``libdownward.so`` (~1.5 MB) that is never freed:
  unloading it (``fast_downward.close_lib``) makes the next ``PddlEnv`` crash in ``dlopen``. So an
  engine is made once per Gymnasium env and reused for every episode and game.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WELCOME_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
TASK_PREFIX = "Your task is to: "


@contextlib.contextmanager
def preserved_argv() -> Iterator[None]:
    """Restore ``sys.argv`` after fast-downward's translator rewrites it."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


def strip_banner(feedback: str) -> str:
    """The intro text without TextWorld's welcome banner (what verl-agent shows the agent)."""
    text = feedback.strip()
    if text.startswith(WELCOME_BANNER):
        text = text[len(WELCOME_BANNER):].strip()
    return text


def task_from_intro(intro: str) -> str:
    """The goal sentence after 'Your task is to: ' in a game's first observation."""
    start = intro.rfind(TASK_PREFIX)
    if start < 0:
        raise ValueError(f"no '{TASK_PREFIX}' in the game's intro: {intro[:200]!r}")
    return intro[start + len(TASK_PREFIX):].strip()


class AlfredEngine:
    """A TextWorld ``PddlEnv`` wrapped by ALFWorld's ``AlfredDemangler``, reused across games."""

    def __init__(self) -> None:
        if os.environ.get("ALFWORLD_DATA") == "":  # importing alfworld crashes on an empty value
            del os.environ["ALFWORLD_DATA"]
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs.pddl import PddlEnv

        infos = textworld.EnvInfos(admissible_commands=True, won=True, extras=["walkthrough"])
        self._pddl_env = PddlEnv(infos)
        self._env = AlfredDemangler(self._pddl_env, shuffle=False)
        self.game_path: Path | None = None
        self.state: Any = None

    def load(self, game: Path | dict[str, Any]) -> None:
        """Parse a ``game.tw-pddl`` file or its JSON content (the slow part: PDDL -> SAS translation)."""
        self.game_path = None  # a failed load leaves no stale game behind
        with preserved_argv():
            self._env.load(str(game) if isinstance(game, Path) else game)
        self.game_path = game if isinstance(game, Path) else None

    def reset(self, with_facts: bool = False) -> str:
        """Restart the loaded game; returns the raw intro text.

        ``with_facts`` adds the state's facts to every state of the episode (the exploring
        expert reads them; they cost time, so only expert episodes ask).
        """
        self._pddl_env.request_infos.facts = with_facts
        with preserved_argv():
            self.state = self._env.reset()
        return self.state.feedback

    def step(self, command: str) -> str:
        """Apply one command exactly as typed; unknown commands give 'Nothing happens.'."""
        self.state, _, _ = self._env.step(command)
        return self.state.feedback

    @property
    def admissible_commands(self) -> list[str]:
        return list(self.state["admissible_commands"]) if self.state is not None else []

    @property
    def won(self) -> bool:
        return bool(self.state is not None and self.state["won"])

    @property
    def walkthrough(self) -> list[str]:
        """The game file's stored walkthrough, or the PDDL planner's plan when it has none."""
        return list(self.state["extra.walkthrough"] or []) if self.state is not None else []
