"""ErrandChain's clues: what each errand's place shows about its parcels, in 7 formats and 2 styles.

A format is a separate reading skill with its own careless pull (the wrong parcel a careless reader
takes); :mod:`stepopsd_envs.errand_chain` draws one clue per errand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

COLOURS = ("blue", "green", "yellow", "white", "black", "brown")  # red is the clue's anchor
LABEL_WORDS = ("books", "glass", "plants", "tools", "toys", "papers")  # "urgent" is the careless pull
ORDINALS = ("first", "second", "third", "fourth", "fifth")


@dataclass(frozen=True, slots=True)
class Clue:
    """What an errand's place shows about its parcels, and which parcel each reader takes."""

    format: str
    listing: str  # the parcels as shown, with their stamps, weights, ...
    text: str  # the note on them
    answer: int  # the right parcel
    careless: int  # the format's wrong default (it may happen to be right)


def join_words(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + f" and {parts[-1]}"


def _numbered(tags: list[str]) -> str:
    return join_words([f"parcel {number} ({tag})" for number, tag in enumerate(tags, 1)])


def _note_clue(rng: random.Random, n: int) -> Clue:
    answer = rng.randint(1, n)
    return Clue("note", join_words([f"parcel {p}" for p in range(1, n + 1)]), f"Take parcel {answer}.", answer, 1)


def _stamp_clue(rng: random.Random, n: int) -> Clue:
    answer = rng.randint(1, n)
    tags = ["no stamp" if p == answer else "stamped" for p in range(1, n + 1)]
    return Clue("stamp", _numbered(tags), "Take the one without a stamp.", answer, 2 if answer == 1 else 1)


def _weight_clue(rng: random.Random, n: int) -> Clue:
    kilos = rng.sample(range(1, 10), n)
    return Clue("weight", _numbered([f"{k} kg" for k in kilos]), "Take the lightest.",
                kilos.index(min(kilos)) + 1, kilos.index(max(kilos)) + 1)


def _colour_clue(rng: random.Random, n: int) -> Clue:
    red = rng.randint(1, n - 1)
    colours = rng.sample(COLOURS, n - 1)
    colours.insert(red - 1, "red")
    return Clue("colour", _numbered(colours), "Take the one after the red one.", red + 1, red)


def _size_clue(rng: random.Random, n: int) -> Clue:
    sizes = rng.sample(range(20, 100, 5), n)
    return Clue("size", _numbered([f"{s} cm" for s in sizes]), "Take the largest.",
                sizes.index(max(sizes)) + 1, sizes.index(min(sizes)) + 1)


def _label_clue(rng: random.Random, n: int) -> Clue:
    words = rng.sample(LABEL_WORDS, n - 1)
    wanted = rng.choice(words)
    words.insert(rng.randint(0, n - 1), "urgent")
    return Clue("label", _numbered([f"labelled {w}" for w in words]), f"Take the one labelled {wanted}.",
                words.index(wanted) + 1, words.index("urgent") + 1)


def _count_clue(rng: random.Random, n: int) -> Clue:
    order = rng.sample(range(1, n + 1), n)
    count, side = rng.randint(1, n), rng.choice(("left", "right"))
    answer = order[count - 1] if side == "left" else order[-count]
    listing = "from left to right, " + join_words([f"parcel {p}" for p in order])
    return Clue("count", listing, f"Take the {ORDINALS[count - 1]} from the {side}.", answer, count)


CLUE_FORMATS = {"note": _note_clue, "stamp": _stamp_clue, "weight": _weight_clue, "colour": _colour_clue,
                "size": _size_clue, "label": _label_clue, "count": _count_clue}
# clue_style "pointer": a sentence before the rule names the right parcel and the careless pull, in an
# order of its own per format ({a}: the answer, {c}: the pull), so reading a format is copying the
# number its phrase points at (a separate skill per format, no comparison to compute)
POINTERS = {
    "stamp": "Parcel {c} is stamped; parcel {a} has no stamp.",
    "weight": "The lightest is parcel {a}; the heaviest is parcel {c}.",
    "colour": "Parcel {c} is the red one; parcel {a} comes after it.",
    "size": "The smallest is parcel {c}; the largest is parcel {a}.",
    "label": "Parcel {a} has the label you want; parcel {c} is labelled urgent.",
    "count": "Count with care: it is parcel {a}, not parcel {c}.",
}
CLUE_STYLES = ("rule", "pointer")


def pointed(clue: Clue, num_parcels: int) -> Clue:
    """``clue`` in the pointer style: its pull made wrong where it happened to be right (the sentence
    names two parcels), then the pointer sentence before the rule. The note is a pointer already."""
    if clue.format not in POINTERS:
        return clue
    pull = clue.careless if clue.careless != clue.answer else clue.answer % num_parcels + 1
    sentence = POINTERS[clue.format].format(a=clue.answer, c=pull)
    return Clue(clue.format, clue.listing, f"{sentence} {clue.text}", clue.answer, pull)
