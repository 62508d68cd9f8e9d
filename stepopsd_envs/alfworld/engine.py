"""The real ALFWorld text engine: one TextWorld PDDL env plus ALFWorld's name demangler.

Engine pitfalls handled here, in one place:

* fast-downward's PDDL translator overwrites ``sys.argv`` every time a game is loaded or reset
  (``fast_downward.pddl2sas``); :func:`preserved_argv` puts it back.
* textworld's synchronous batch mode shares state across slots, so it is never used: each
  engine is a plain ``PddlEnv``; parallelism comes from separate env instances/processes.
* Every ``PddlEnv`` loads a private copy of ``libdownward.so`` (~1.5 MB) that is never freed:
  unloading it (``fast_downward.close_lib``) makes the next ``PddlEnv`` crash in ``dlopen``. So an
  engine is made once per Gymnasium env and reused for every episode and game.
* textworld parses the same grammar rules and queries with TatSu again at every step (most of a
  step's time), and a load and a reset each translate the game's PDDL to SAS twice. Both are pure
  functions of their text, so the first engine made in a process caches them
  (:func:`_install_caches`); :func:`uncached` restores textworld's own functions, the reference.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepopsd_envs.alfworld.games import damaged_game

WELCOME_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
TASK_PREFIX = "Your task is to: "
PARSE_CACHE_SIZE = 8192  # distinct (text, rule) parses kept: the grammar's rules and queries, well under this
SAS_CACHE_SIZE = 64  # PDDL -> SAS translations kept (two per game): the games of a few rollout groups
_caches_installed = False


@contextlib.contextmanager
def preserved_argv() -> Iterator[None]:
    """Restore ``sys.argv`` after fast-downward's translator rewrites it."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


def strip_banner(feedback: str) -> str:
    """The intro text without TextWorld's welcome banner: the ``stepopsd-v0`` prompt's first observation
    (verl-agent shows the raw intro, banner included)."""
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


class _CachedParser:
    """A TatSu parser that keeps each parse tree per (text, settings): textworld's converters only
    read the tree, so one tree serves every later parse of the same text."""

    def __init__(self, parser) -> None:
        self.uncached = parser
        self._parse = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(self._parse_text)

    def _parse_text(self, text: str, settings: tuple) -> Any:
        return self.uncached.parse(text, **dict(settings))

    def parse(self, text, /, **settings) -> Any:
        if not isinstance(text, str) or settings.get("trace"):
            return self.uncached.parse(text, **settings)
        return self._parse(text, tuple(sorted(settings.items())))


def _parser_modules() -> tuple:
    import textworld.envs.pddl.logic
    import textworld.envs.pddl.textgen
    import textworld.logic

    return textworld.logic, textworld.envs.pddl.logic, textworld.envs.pddl.textgen


def _install_caches() -> None:
    """Cache textworld's TatSu parses and fast-downward's PDDL -> SAS translation, once per process.

    A cached translation returns the same task object to every engine: textworld only reads it (its
    actions, types, objects and initial facts); each engine's planner library loads its own SAS text.
    """
    global _caches_installed
    if _caches_installed:
        return
    import fast_downward

    for module in _parser_modules():
        module._PARSER = _CachedParser(module._PARSER)
    fast_downward.pddl2sas = functools.lru_cache(maxsize=SAS_CACHE_SIZE)(fast_downward.pddl2sas)
    _caches_installed = True


@contextlib.contextmanager
def uncached() -> Iterator[None]:
    """textworld's own parsers and translation inside the block (engines made before or inside it)."""
    import fast_downward

    _install_caches()
    modules = _parser_modules()
    cached = [module._PARSER for module in modules], fast_downward.pddl2sas
    for module in modules:
        module._PARSER = module._PARSER.uncached
    fast_downward.pddl2sas = fast_downward.pddl2sas.__wrapped__
    try:
        yield
    finally:
        for module, parser in zip(modules, cached[0]):
            module._PARSER = parser
        fast_downward.pddl2sas = cached[1]


class AlfredEngine:
    """A TextWorld ``PddlEnv`` wrapped by ALFWorld's ``AlfredDemangler``, reused across games."""

    def __init__(self) -> None:
        if os.environ.get("ALFWORLD_DATA") == "":  # importing alfworld crashes on an empty value
            del os.environ["ALFWORLD_DATA"]
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs.pddl import PddlEnv

        _install_caches()
        infos = textworld.EnvInfos(admissible_commands=True, won=True, extras=["walkthrough"])
        self._pddl_env = PddlEnv(infos)
        self._env = AlfredDemangler(self._pddl_env, shuffle=False)
        self.game_path: Path | None = None
        self.state: Any = None

    def load(self, game: Path | dict[str, Any]) -> None:
        """Parse a ``game.tw-pddl`` file or its JSON content (the slow part: PDDL -> SAS translation)."""
        self.game_path = None  # a failed load leaves no stale game behind
        try:
            with preserved_argv():
                self._env.load(str(game) if isinstance(game, Path) else game)
        except json.JSONDecodeError as error:
            raise damaged_game(game, error) from None
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
