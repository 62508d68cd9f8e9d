"""ErrandChain: a chain of independent errands, each with its own decisive choice; mistakes can be undone.

Built so that step credit must pay off. An episode is K errands (``num_errands``, 4-12), each a
separate skill: go to a place, take the one right parcel of several there (the decisive step),
deliver it. The clue naming the right parcel is in the observation where the choice is made (on
arriving, after a ``look`` or a ``return``), so a window prompt of one step shows all a reader
needs. A wrong take is recoverable: delivering it fails ("This is not the parcel for the bakery."),
the agent returns it and takes another; but each wrong take spends one of ``mistake_budget`` (M)
and the take that exceeds M ends the episode, lost. So won episodes may hold labelled mistakes.

An expert episode (3K steps)::

    go to library                  errand 0, format "weight"
    take parcel 2                  <- decisive: "Take the lightest."
    deliver parcel 2 to bakery
    go to post office              errand 1, format "colour"
    take parcel 3                  <- decisive: "Take the one after the red one."
    deliver parcel 3 to school
    ...                            success_reward on the K-th delivery, which ends the episode

After a wrong take the expert returns the parcel at once (``return parcel N``: the parcel and
the agent go back to the place) and takes the right one: 2 steps more per mistake; an agent that
first tries to deliver a wrong parcel spends 3. The env truncates at 3K + 3M steps, so every agent
can afford M recovered mistakes. Errand k uses format (o + k) mod 7, o drawn per scene:

======  =======================================================  ======================================
format  what the place shows                                     careless default
======  =======================================================  ======================================
note    "Take parcel 3."                                         parcel 1, the first listed
stamp   stamped / no stamp; "Take the one without a stamp."      the first stamped one
weight  weights; "Take the lightest."                            the heaviest
colour  colours in order; "Take the one after the red one."      the red one itself
size    sizes; "Take the largest."                               the smallest
label   labels; "Take the one labelled books."                   the one labelled urgent
count   left-to-right order; "Take the second from the left."    parcel 2 (the count read as a number)
======  =======================================================  ======================================

Commands (lower case, exact): ``go to <location>``; ``take parcel N`` (at the errand's place,
hands empty); ``deliver parcel N to <dest>`` (holding it, from anywhere; the agent ends at the
destination); ``return parcel N`` (holding it); ``look``. Rewards: ``success_reward`` on the
winning step, ``invalid_action_reward`` on a malformed or inadmissible one.

``clue_style="pointer"`` puts a sentence before the rule that names the right parcel and the careless
pull, in an order of its own per format ("The smallest is parcel 1; the largest is parcel 3. Take the
largest."): reading is copying the number the format's phrase points at, which a tiny stand-in model
learns where it does not learn the rules' lookups and comparisons (docs/benchmarks.md, ErrandChain).

Reset options: ``scene_seed`` (drawn from the env's ``np_random`` when absent), ``careless``
(add ``careless_action``), ``careless_draw`` (default 0: another integer draws the careless errands
anew, a second careless demonstrator of the same scene). ``careless_errands`` (constructor, default 1.0) is the chance that the
careless demonstrator is careless at each errand, drawn per errand from the scene seed: below 1 its
mistakes are independent across the errands of an episode, so a start cloned from it has no
episode-level "careless mode" that makes one mistake predict the next. Info keys beyond :class:`~stepopsd_envs.text_env.TextEnv`'s:

===================  ==========================================================
``expert_actions``   (reset) the winning plan, 3K commands
``clue_formats``     (reset) the K errands' clue formats, in order
``expert_action``    the expert's next command in the current state (after a wrong take:
                     return it, then take the right one); absent once the episode is over
``careless_action``  (reset with ``careless``) the expert, except that an errand's first take
                     is its format's careless default (on the errands ``careless_errands`` draws), and a wrong parcel is delivered until
                     the env rejects it (then it recovers as the expert does)
``errand``           k, the errand the step acted in (0 on reset)
``clue_format``      that errand's clue format
``decisive``         (step) this step took a parcel, right or wrong
``mistake``          (step) this step took a wrong parcel (also in won episodes)
``recovered``        (step) this step returned a wrongly taken parcel
``outcome``          (step, a delivery the env accepted) what it achieved, as its observation
                     says it: ``the <place>'s parcel for the <dest>: parcel N`` (the hindsight
                     peer view ``outcomes`` writes these lines)
===================  ==========================================================

``task_type`` is ``chain``; ``task_id`` is ``chain-<scene seed>``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stepopsd_envs.errand_clues import CLUE_FORMATS, CLUE_STYLES, Clue, join_words, pointed
from stepopsd_envs.protocol import TagProtocol, expert_text
from stepopsd_envs.text_env import TextEnv

ENV_ID = "stepopsd/ErrandChain-v0"
LOCATIONS = ("bakery", "bank", "cafe", "clinic", "florist", "garage", "harbour", "hotel", "library",
             "market", "museum", "pharmacy", "post office", "school", "station", "town hall")
TOWN_SIZE = 8
HOME = "home"
CORPUS_SCENES = 60


@dataclass(frozen=True, slots=True)
class Errand:
    place: str
    dest: str
    clue: Clue

    def describe(self) -> str:
        return f"take the right parcel at the {self.place} to the {self.dest}"

    def outcome(self, parcel: int) -> str:
        """``info["outcome"]`` of this errand's accepted delivery of ``parcel``."""
        return f"the {self.place}'s parcel for the {self.dest}: parcel {parcel}"


@dataclass(frozen=True, slots=True)
class ChainScene:
    """One task: the town and its K errands in order."""

    town: tuple[str, ...]
    errands: tuple[Errand, ...]

    @classmethod
    def generate(cls, scene_seed: int, num_errands: int = 8, num_parcels: int = 3,
                 clue_style: str = "rule") -> "ChainScene":
        rng = random.Random(scene_seed)
        town = tuple(sorted(rng.sample(LOCATIONS, TOWN_SIZE)))
        formats = list(CLUE_FORMATS)
        offset = rng.randrange(len(formats))
        errands, last_dest = [], HOME
        for k in range(num_errands):
            place = rng.choice([loc for loc in town if loc != last_dest])  # so every errand starts with a go
            dest = rng.choice([loc for loc in town if loc != place])
            clue = CLUE_FORMATS[formats[(offset + k) % len(formats)]](rng, num_parcels)
            if clue_style == "pointer":
                clue = pointed(clue, num_parcels)
            errands.append(Errand(place, dest, clue))
            last_dest = dest
        return cls(town, tuple(errands))

    def expert_actions(self) -> list[str]:
        return [command for e in self.errands for command in
                (f"go to {e.place}", f"take parcel {e.clue.answer}", f"deliver parcel {e.clue.answer} to {e.dest}")]


class ErrandChainEnv(TextEnv):
    """Run K errands, each with one decisive take among several parcels; wrong takes can be returned."""

    corpus_variants = ()  # its text comes from corpus_text, for its own runs' tokenizers only

    @classmethod
    def corpus_text(cls, options: Mapping[str, Any]) -> Iterator[str]:
        """Seeded episodes (every third careless) for a run of this env (``options["run_env_id"]``)."""
        if options.get("run_env_id") != ENV_ID:
            return
        envs = {(n, style): cls(num_parcels=n, clue_style=style) for n in range(2, 6) for style in CLUE_STYLES}
        yield envs[3, "rule"].system_prompt()
        for scene in range(CORPUS_SCENES):
            yield from _episode_text(envs[2 + scene % 4, CLUE_STYLES[scene % 2]], scene, careless=scene % 3 == 0)
        for env in envs.values():
            env.close()

    def __init__(self, num_errands: int = 8, num_parcels: int = 3, mistake_budget: int = 3,
                 success_reward: float = 1.0, invalid_action_reward: float = 0.0, clue_style: str = "rule",
                 careless_errands: float = 1.0, protocol: TagProtocol | None = None,
                 render_mode: str | None = None) -> None:
        super().__init__(protocol, invalid_action_reward=invalid_action_reward, render_mode=render_mode)
        if clue_style not in CLUE_STYLES:
            raise ValueError(f"clue_style must be one of {', '.join(CLUE_STYLES)}, got {clue_style!r}")
        if not 4 <= num_errands <= 12:
            raise ValueError(f"num_errands must be in [4, 12], got {num_errands}")
        if not 2 <= num_parcels <= 5:
            raise ValueError(f"num_parcels must be in [2, 5], got {num_parcels}")
        if mistake_budget < 0:
            raise ValueError(f"mistake_budget must be >= 0, got {mistake_budget}")
        if not (isinstance(careless_errands, (int, float)) and 0 <= careless_errands <= 1):
            raise ValueError(f"careless_errands must be a number in [0, 1], got {careless_errands!r}")
        self.num_errands, self.num_parcels, self.mistake_budget = num_errands, num_parcels, mistake_budget
        self.clue_style, self.careless_errands = clue_style, float(careless_errands)
        self.success_reward = success_reward
        self.step_limit = 3 * num_errands + 3 * mistake_budget  # a recovery costs a non-oracle 3 steps
        self.scene: ChainScene | None = None
        self._errand = 0  # read by step() before TextEnv.step checks the call order

    # -- TextEnv --------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        scene_seed = options.get("scene_seed")
        if scene_seed is None:
            scene_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.scene = scene = ChainScene.generate(int(scene_seed), self.num_errands, self.num_parcels,
                                                        self.clue_style)
        self._careless = bool(options.get("careless", False))
        draw = int(options.get("careless_draw", 0))  # another draw: the same scene, other careless errands
        draws = random.Random(f"careless-{scene_seed}" + (f"-{draw}" if draw else ""))  # apart from the layout's draws
        self._careless_here = tuple(draws.random() < self.careless_errands for _ in range(self.num_errands))
        self._errand, self._here, self._holding = 0, HOME, None
        self._rejected = False  # the env has refused the parcel held
        self._took_here = False  # the current errand has had a take (the careless habit acts once)
        self._wrong_takes, self._steps, self._over = 0, 0, False
        steps = "; ".join(f"{k + 1}. {e.describe()}" for k, e in enumerate(scene.errands))
        task = (f"run {self.num_errands} errands in order; at each place a note says which parcel is the right "
                f"one. You may take a wrong parcel at most {self.mistake_budget} times. The errands: {steps}.")
        info = {"task": task, "task_id": f"chain-{scene_seed}", "task_type": "chain",
                "admissible_actions": self._admissible_actions(), "expert_actions": scene.expert_actions(),
                "clue_formats": [e.clue.format for e in scene.errands],
                "errand": 0, "clue_format": scene.errands[0].clue.format, **self._demonstrators()}
        # the first errand is named again last, as each delivery names the next: a reader of the nearest
        # sentence needs no lookup in the list (a 4-layer tiny model does not learn that lookup in an SFT pass)
        observation = (f"You are at {HOME}. The town has a {join_words(list(scene.town))}.\n\nYour task is to: {task}\n\n"
                       f"First: {scene.errands[0].describe()}.")
        return observation, info

    def _apply_action(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self.scene is not None, "call reset() before step()"
        if action not in self._admissible_actions():
            return "Nothing happens.", 0.0, False, {"valid_action": False,
                                                    "admissible_actions": self._admissible_actions()}
        handlers = {"go": self._go, "take": self._take, "deliver": self._deliver, "return": self._return,
                    "look": self._look}
        observation = handlers[action.split()[0]](action)
        won = self._errand == self.num_errands
        self._over = won or self._wrong_takes > self.mistake_budget
        reward = self.success_reward if won else 0.0
        return observation, reward, self._over, {"won": won, "admissible_actions": self._admissible_actions()}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Advance one turn with the model's raw output; adds the step labels and the demonstrators."""
        self._labels = {"decisive": False, "mistake": False, "recovered": False}
        self._outcome = None
        errand = self._errand
        observation, reward, terminated, _, info = super().step(action)  # checks action and call order
        assert self.scene is not None
        self._steps += 1
        truncated = not terminated and self._steps >= self.step_limit
        info.update(self._labels, errand=errand, clue_format=self.scene.errands[errand].clue.format)
        if self._outcome is not None:
            info["outcome"] = self._outcome
        if not terminated:
            info.update(self._demonstrators())
        return observation, reward, terminated, truncated, info

    def _admissible_actions(self) -> list[str]:
        if self.scene is None:
            return []
        if self._over:
            return ["look"]
        errand = self.scene.errands[self._errand]
        actions = [f"go to {loc}" for loc in self.scene.town if loc != self._here]
        if self._holding is None and self._here == errand.place:
            actions += [f"take parcel {p}" for p in range(1, self.num_parcels + 1)]
        if self._holding is not None:
            actions += [f"deliver parcel {self._holding} to {errand.dest}", f"return parcel {self._holding}"]
        return sorted([*actions, "look"])

    # -- the commands ---------------------------------------------------------------------
    def _go(self, action: str) -> str:
        self._here = action[len("go to "):]
        return f"You arrive at the {self._here}. {self._describe()}"

    def _look(self, action: str) -> str:
        where = HOME if self._here == HOME else f"the {self._here}"
        return f"You are at {where}. {self._describe()}"

    def _take(self, action: str) -> str:
        errand, parcel = self.scene.errands[self._errand], int(action.split()[2])
        self._holding, self._rejected, self._took_here = parcel, False, True
        self._labels["decisive"] = True
        taken = f"You take parcel {parcel}, for the {errand.dest}."
        if parcel == errand.clue.answer:
            return taken
        self._labels["mistake"] = True
        self._wrong_takes += 1
        if self._wrong_takes > self.mistake_budget:
            return (f"{taken} It is the wrong one, and {self._wrong_takes} wrong parcels are more than the "
                    f"{self.mistake_budget} allowed: the errands are called off.")
        return taken

    def _deliver(self, action: str) -> str:
        errand, parcel = self.scene.errands[self._errand], self._holding
        self._here = errand.dest
        if parcel != errand.clue.answer:
            self._rejected = True
            return (f"You carry parcel {parcel} to the {errand.dest}. This is not the parcel for the {errand.dest}. "
                    f"Wrong parcels taken: {self._wrong_takes}; at most {self.mistake_budget} are allowed.")
        self._errand, self._holding, self._took_here = self._errand + 1, None, False
        self._outcome = errand.outcome(parcel)
        delivered = f"You deliver parcel {parcel} to the {errand.dest}."
        if self._errand == self.num_errands:
            return f"{delivered} All {self.num_errands} errands are done."
        upcoming = self.scene.errands[self._errand]
        return f"{delivered} Errand {self._errand} of {self.num_errands} done. Next: {upcoming.describe()}."

    def _return(self, action: str) -> str:
        errand, parcel = self.scene.errands[self._errand], self._holding
        self._labels["recovered"] = parcel != errand.clue.answer
        self._holding, self._rejected, self._here = None, False, errand.place
        return f"You carry parcel {parcel} back to the {errand.place} and put it back. {self._describe()}"

    def _describe(self) -> str:
        """What the agent sees here: the clue only at the errand's place with empty hands, where it chooses."""
        errand = self.scene.errands[self._errand]
        if self._holding is not None:
            return f"You are holding parcel {self._holding}, for the {errand.dest}."
        if self._here != errand.place:
            return f"Nothing here is waiting for you. Your errand: {errand.describe()}."
        clue = errand.clue
        return (f"On the counter lie {self.num_parcels} parcels for the {errand.dest}: {clue.listing}. "
                f"A note on them says: {clue.text}")

    # -- the demonstrators ----------------------------------------------------------------
    def _demonstrators(self) -> dict[str, str]:
        expert = {"expert_action": self._expert_action()}
        return {**expert, "careless_action": self._careless_action()} if self._careless else expert

    def _expert_action(self) -> str:
        errand = self.scene.errands[self._errand]
        if self._holding == errand.clue.answer:
            return f"deliver parcel {self._holding} to {errand.dest}"
        if self._holding is not None:
            return f"return parcel {self._holding}"
        if self._here != errand.place:
            return f"go to {errand.place}"
        return f"take parcel {errand.clue.answer}"

    def _careless_action(self) -> str:
        """The expert with one habit per format; it trusts its parcel until the env refuses it."""
        errand = self.scene.errands[self._errand]
        if self._holding is not None and not self._rejected:
            return f"deliver parcel {self._holding} to {errand.dest}"
        if self._holding is None and self._here == errand.place and not self._took_here \
                and self._careless_here[self._errand]:
            return f"take parcel {errand.clue.careless}"
        return self._expert_action()


def _episode_text(env: ErrandChainEnv, scene_seed: int, careless: bool) -> Iterator[str]:
    """The reset observation, then each output (rendered as the scripted expert's) and observation."""
    observation, info = env.reset(options={"scene_seed": scene_seed, "careless": careless})
    yield observation
    demonstrator = "careless_action" if careless else "expert_action"
    terminated = truncated = False
    while not (terminated or truncated):
        output = expert_text(env.protocol, info[demonstrator])
        observation, _, terminated, truncated, info = env.step(output)
        yield output
        yield observation
