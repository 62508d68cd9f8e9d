"""A generated multi-hop QA world for stepopsd/SearchQA-v0: invented entities, passages, questions.

Every name is built from syllables, so no real-world knowledge helps, and everything is drawn from
one seed: a world is code, not a download. It holds countries, cities, organisations, people and
works; each gets a ~100-word encyclopedia-style passage stating its facts (a person's birth year,
profession, birthplace and employer; a city's country, river and founding year; an organisation's
headquarters, founding year and founder; a work's form, creator and year; a country's language and
year of independence). About half of them have a namesake (a person of the same family, ``Upper X``
beside the city ``X``, an organisation or a work sharing a name word) whose passage is a distractor:
nothing refers to a namesake and no question asks about one, but a search for a name finds it too.

Questions have one exact short answer, stated in one passage, in two families (``data_source``):

* ``world-single``: one search finds the answer's passage ("In which city was Orvane Pelisk born?").
* ``world-multi``: bridge questions ("In which city was the author of the novel Lanterns of Ossiva
  born?"): the first search finds the bridge entity (the author) in the subject's passage, the
  second, naming the bridge, finds the answer in the bridge's passage.

Each question keeps what the scripted expert and the step labels of
:class:`~stepopsd_envs.searchqa.env.SearchQAEnv` need: per hop the expert's query (the subject's
name, then the bridge's name) and the passages that state the hop's fact.

>>> world = generate_world(seed=0, num_entities=40, num_questions=20)
>>> len(world.train), len(world.test), sorted({q.data_source for q in world.test})
(16, 4, ['world-multi', 'world-single'])
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stepopsd_envs.cache import cache_root
from stepopsd_envs.searchqa.retrievers import Passage

WORLD_VERSION = 1  # part of the cache folder's name: bump when a seed's world changes
KINDS = ("country", "city", "organisation", "person", "work")
MIN_ENTITIES = 20
NAMESAKE_SHARE = 0.5  # chance that an entity (not a country) gets a namesake distractor

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st",
          "tr", "th", "sh", "vr")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia")
CODAS = ("", "", "", "n", "r", "s", "l", "th", "nd", "sk", "rn")

OCCUPATIONS = ("cartographer", "chemist", "novelist", "composer", "painter", "astronomer", "engineer",
               "botanist", "architect", "historian", "physician", "mathematician")
ORG_TYPES = ("Institute", "Observatory", "Trading Company", "Conservatory", "Academy", "Press", "Foundry",
             "Library", "Shipyard", "Museum")
WORK_FORMS = {"novel": "author", "symphony": "composer", "painting": "painter", "treatise": "author",
              "cantata": "composer", "poem": "poet"}  # form -> its creator's role
TITLE_NOUNS = ("Lanterns", "Ashes", "Songs", "Letters", "Gardens", "Winters", "Bells", "Harbours", "Mirrors",
               "Tides", "Orchards", "Lamps")
CITY_PREFIXES = ("Upper", "Lower", "New", "Old", "Port", "East", "West")

FACTS = {  # kind -> the sentences that state its facts (every fact below is asked about)
    "country": "{name} is a country whose official language is {language}. It became independent in {founded}.",
    "city": "{name} is a city in {country}, on the river {river}. It was founded in {founded}.",
    "organisation": ("The {name} is headquartered in {headquarters}. It was founded in {founded} by "
                     "{founder}."),
    "person": ("{name} (born {birth_year}), {occupation}, was born in the city of {birthplace}. {short} "
               "worked for the {employer} for most of a long career."),
    "work": "{name} is a {form} by {creator}, completed in {year}.",
}
FILLERS = {  # kind -> sentences without facts, to make ~100-word passages; {short} names the entity
    "country": ("The coast of {short} is broken by long inlets where fishing villages shelter from winter gales.",
                "Most of the interior of {short} is upland pasture crossed by old drove roads.",
                "Travellers to {short} often remark on the painted shutters of its farmhouses.",
                "The parliament of {short} meets in a plain stone hall that was once a granary.",
                "Folk songs from {short} are sung in a slow style with a single drone.",
                "The currency of {short} carries images of birds rather than rulers."),
    "city": ("The old quarter of {short} is known for its covered markets and narrow, winding streets.",
             "Several bridges connect the two halves of {short}, the oldest built of timber.",
             "Visitors to {short} often climb the bell tower for a view over the rooftops.",
             "The people of {short} hold a lantern procession every autumn.",
             "Tanneries once lined the waterfront of {short}, though few remain today.",
             "The main square of {short} is paved with grey and white stones in a spiral pattern."),
    "organisation": ("Over the years the {short} has kept a small archive open to visiting scholars.",
                     "Members of the {short} meet each spring to elect a governing council.",
                     "A fire damaged the first building of the {short}, which was rebuilt in brick.",
                     "Apprentices trained by the {short} went on to found similar bodies elsewhere.",
                     "The emblem of the {short} shows a key crossed with a quill.",
                     "Accounts of the {short} describe long debates over its charter."),
    "person": ("{short} kept careful notebooks throughout life, and several volumes are still consulted today.",
               "Colleagues remembered {short} as a patient teacher who answered every letter.",
               "In later years {short} travelled widely, lecturing in small towns and collecting local stories.",
               "A portrait of {short} hangs in the reading room of a provincial library.",
               "{short} rarely gave interviews and preferred to let the work speak for itself.",
               "Early biographers disagreed about the education of {short}, but most agree it was informal."),
    "work": ("{short} was received coolly at first but found admirers within a generation.",
             "Critics have praised {short} for its restraint and its sudden changes of mood.",
             "Several passages of {short} were revised after its first presentation.",
             "{short} is often studied alongside the letters its creator wrote in the same years.",
             "A damaged early copy of {short} survives in a private collection.",
             "Later generations borrowed freely from {short}, sometimes without acknowledgement."),
}
FILLERS_PER_PASSAGE = 5

QUESTIONS = {  # (kind, relation) -> question about {x}: a name, or a bridge's description
    ("country", "language"): "What is the official language of {x}?",
    ("country", "founded"): "In which year did {x} become independent?",
    ("city", "country"): "In which country is {x}?",
    ("city", "river"): "On which river does {x} lie?",
    ("city", "founded"): "In which year was {x} founded?",
    ("organisation", "headquarters"): "In which city is {x} headquartered?",
    ("organisation", "founded"): "In which year was {x} founded?",
    ("organisation", "founder"): "Who founded {x}?",
    ("person", "birth_year"): "In which year was {x} born?",
    ("person", "occupation"): "What was the profession of {x}?",
    ("person", "birthplace"): "In which city was {x} born?",
    ("person", "employer"): "Which organisation did {x} work for?",
    ("work", "creator"): "Who is the {role} of {x}?",
    ("work", "year"): "In which year was {x} completed?",
}
BRIDGES = {  # (kind, relation) whose value is another entity's name -> how a question describes that entity
    ("city", "country"): "the country where {x} lies",
    ("organisation", "headquarters"): "the city where {x} is headquartered",
    ("organisation", "founder"): "the founder of {x}",
    ("person", "birthplace"): "the city where {x} was born",
    ("person", "employer"): "the organisation {x} worked for",
    ("work", "creator"): "the {role} of {x}",
}


@dataclass(frozen=True, slots=True)
class Entity:
    """One invented thing, described by the passage ``passage_id``."""

    passage_id: str
    kind: str  # one of KINDS
    name: str
    facts: dict[str, str]  # relation -> value; a BRIDGES relation's value is another entity's name


@dataclass(frozen=True, slots=True)
class WorldQuestion:
    """A question with its exact answer and, per hop, the expert's query and the passages stating the fact."""

    question: str
    answer: str
    data_source: str  # world-single | world-multi
    expert_queries: tuple[str, ...]
    supporting_ids: tuple[tuple[str, ...], ...]
    bridge: str  # the bridge entity's name; "" for single-hop


@dataclass(frozen=True, slots=True)
class World:
    """The corpus (one passage per entity, namesakes included) and disjoint train / test questions."""

    passages: tuple[Passage, ...]
    train: tuple[WorldQuestion, ...]
    test: tuple[WorldQuestion, ...]


# The world= keys (of the SearchQA env and model.tiny.searchqa_world; world_folder's arguments), as
# generate_world's parameters.
WORLD_OPTIONS = {"seed": "seed", "entities": "num_entities", "questions": "num_questions", "fillers": "fillers"}


def generate_world(seed: int = 0, num_entities: int = 1000, num_questions: int = 2000,
                   test_fraction: float = 0.2, fillers: int = FILLERS_PER_PASSAGE) -> World:
    """The world of ``seed``: ``num_entities`` entities (plus namesakes) and ``num_questions`` questions.

    Half the questions are multi-hop; ``test_fraction`` of each family goes to the test split.
    ``fillers`` (0-6) filler sentences follow each passage's facts: 5 give ~100-word articles, 0 a
    ~20-word statement of the facts (short contexts for tiny models).
    """
    if num_entities < MIN_ENTITIES:
        raise ValueError(f"num_entities must be >= {MIN_ENTITIES}, got {num_entities}")
    if not 0 <= fillers <= len(FILLERS["person"]):
        raise ValueError(f"fillers must be in [0, {len(FILLERS['person'])}], got {fillers}")
    if num_questions < 2 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"need num_questions >= 2 and 0 < test_fraction < 1, got {num_questions}, {test_fraction}")
    rng = random.Random(seed)
    entities = _main_entities(rng, num_entities)
    namesakes = _namesakes(rng, entities)
    passages = tuple(_passage(entity, rng, fillers) for entity in entities + namesakes)
    by_name = {entity.name: entity for entity in entities}
    train: list[WorldQuestion] = []
    test: list[WorldQuestion] = []
    families = (("world-single", _single_hop(entities)), ("world-multi", _multi_hop(entities, by_name)))
    for (family, candidates), count in zip(families, (num_questions - num_questions // 2, num_questions // 2)):
        if count > len(candidates):
            raise ValueError(f"num_questions={num_questions} needs {count} {family} questions but "
                             f"{num_entities} entities give only {len(candidates)}; generate more entities")
        chosen = rng.sample(candidates, count)
        test_count = round(count * test_fraction)
        test += chosen[:test_count]
        train += chosen[test_count:]
    rng.shuffle(train)
    rng.shuffle(test)
    return World(passages, tuple(train), tuple(test))


def _new_word(rng: random.Random, used: set[str], syllables: tuple[int, int] = (2, 3)) -> str:
    """An invented capitalised word not in ``used`` (and now added to it)."""
    while True:
        count = rng.randint(*syllables)
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(count)) + rng.choice(CODAS)
        if len(word) >= 4 and word.capitalize() not in used:
            used.add(word.capitalize())
            return word.capitalize()


def _kind_counts(num_entities: int) -> dict[str, int]:
    counts = {"country": max(2, num_entities // 25), "city": max(2, num_entities // 5),
              "organisation": max(2, num_entities * 3 // 20), "work": max(2, num_entities // 4)}
    return {**counts, "person": num_entities - sum(counts.values())}


def _main_entities(rng: random.Random, num_entities: int) -> list[Entity]:
    """Countries, cities, organisations, people and works; each fact names an entity made before it."""
    counts, used, ids = _kind_counts(num_entities), set(), itertools.count()
    word = lambda: _new_word(rng, used)  # noqa: E731
    make = lambda kind, name, **facts: Entity(str(next(ids)), kind, name, facts)  # noqa: E731
    countries = [make("country", word(), language=word(), founded=str(rng.randint(1600, 1950)))
                 for _ in range(counts["country"])]
    rivers = [word() for _ in range(max(2, counts["city"] // 3))]
    cities = [make("city", word(), country=rng.choice(countries).name, river=rng.choice(rivers),
                   founded=str(rng.randint(900, 1650))) for _ in range(counts["city"])]
    given_names = [word() for _ in range(max(8, counts["person"] // 4))]
    person_names = [f"{rng.choice(given_names)} {word()}" for _ in range(counts["person"])]
    birth_years = [rng.randint(1750, 1950) for _ in person_names]
    organisations = []
    for _ in range(counts["organisation"]):
        founder = rng.randrange(len(person_names))
        organisations.append(make("organisation", f"{word()} {rng.choice(ORG_TYPES)}",
                                  headquarters=rng.choice(cities).name, founder=person_names[founder],
                                  founded=str(birth_years[founder] + rng.randint(25, 60))))
    persons = [make("person", name, birth_year=str(year), occupation=rng.choice(OCCUPATIONS),
                    birthplace=rng.choice(cities).name, employer=rng.choice(organisations).name)
               for name, year in zip(person_names, birth_years)]
    works = []
    for _ in range(counts["work"]):
        creator = rng.choice(persons)
        works.append(make("work", f"{rng.choice(TITLE_NOUNS)} of {word()}", form=rng.choice(list(WORK_FORMS)),
                          creator=creator.name, year=str(int(creator.facts["birth_year"]) + rng.randint(20, 70))))
    return countries + cities + organisations + persons + works


def _namesakes(rng: random.Random, entities: list[Entity]) -> list[Entity]:
    """Distractors: entities whose names share a word with a real one; their facts point at real entities."""
    names = {entity.name for entity in entities}
    by_kind = {kind: [entity for entity in entities if entity.kind == kind] for kind in KINDS}
    namesakes = []
    for entity in entities:
        if entity.kind == "country" or rng.random() >= NAMESAKE_SHARE:
            continue
        name, facts = _namesake_name(rng, entity), dict(entity.facts)
        for relation in facts:  # keep the form of a work, redraw every other fact from the same kind
            if relation != "form":
                facts[relation] = rng.choice(by_kind[entity.kind]).facts[relation]
        if name not in names:
            names.add(name)
            namesakes.append(Entity(str(len(entities) + len(namesakes)), entity.kind, name, facts))
    return namesakes


def _namesake_name(rng: random.Random, entity: Entity) -> str:
    first, _, rest = entity.name.partition(" ")
    if entity.kind == "city":
        return f"{rng.choice(CITY_PREFIXES)} {entity.name}"
    if entity.kind == "organisation":
        return f"{first} {rng.choice([kind for kind in ORG_TYPES if kind != rest])}"
    if entity.kind == "work":
        return f"{rng.choice([noun for noun in TITLE_NOUNS if noun != first])} {rest}"
    return f"{first[::-1].capitalize()} {rest}"  # a relative: same family name, the given name reversed


def _passage(entity: Entity, rng: random.Random, fillers: int) -> Passage:
    """The entity's article: its facts, then ``fillers`` filler sentences."""
    short = entity.name.split()[-1] if entity.kind == "person" else entity.name
    sentences = [FACTS[entity.kind].format(name=entity.name, short=short, **entity.facts)]
    sentences += [filler.format(short=short) for filler in rng.sample(FILLERS[entity.kind], fillers)]
    return Passage(entity.passage_id, entity.name, " ".join(sentences))


def _mention(entity: Entity) -> str:
    """How a question names the entity: ``Tarvelo``, ``the Vaskel Institute``, ``the novel Ashes of Ossiva``."""
    if entity.kind == "organisation":
        return f"the {entity.name}"
    if entity.kind == "work":
        return f"the {entity.facts['form']} {entity.name}"
    return entity.name


def _role(entity: Entity) -> str:
    return WORK_FORMS.get(entity.facts.get("form", ""), "")


def _single_hop(entities: list[Entity]) -> list[WorldQuestion]:
    return [WorldQuestion(template.format(x=_mention(entity), role=_role(entity)), entity.facts[relation],
                          "world-single", (entity.name,), ((entity.passage_id,),), "")
            for entity in entities for (kind, relation), template in QUESTIONS.items() if kind == entity.kind]


def _multi_hop(entities: list[Entity], by_name: dict[str, Entity]) -> list[WorldQuestion]:
    """Bridge questions: subject -> bridge entity (first passage) -> answer (the bridge's passage)."""
    questions = []
    for subject in entities:
        for (kind, relation), phrase in BRIDGES.items():
            if kind != subject.kind:
                continue
            bridge = by_name[subject.facts[relation]]
            described = phrase.format(x=_mention(subject), role=_role(subject))
            for (target_kind, target_relation), template in QUESTIONS.items():
                # skip answers that are the subject itself ("Who founded the organisation X worked for?" -> X)
                if target_kind != bridge.kind or bridge.facts[target_relation] == subject.name:
                    continue
                questions.append(WorldQuestion(
                    template.format(x=described), bridge.facts[target_relation], "world-multi",
                    (subject.name, bridge.name),
                    ((subject.passage_id,), (bridge.passage_id,)), bridge.name))
    return questions


def _qa_row(question: WorldQuestion, split: str, index: int) -> dict:
    """A Search-R1 QA row; the expert's queries and the supporting passages go under ``metadata``."""
    return {"id": f"world-{split}-{index}", "question": question.question, "golden_answers": [question.answer],
            "data_source": question.data_source, "extra_info": {"split": split, "index": index},
            "metadata": {"expert_queries": list(question.expert_queries),
                         "supporting_ids": [list(ids) for ids in question.supporting_ids],
                         "bridge": question.bridge}}


def write_world(world: World, out_dir: str | Path) -> tuple[Path, Path, Path]:
    """Write ``corpus.jsonl`` (``{"id", "contents"}`` rows), ``train.jsonl`` and ``test.jsonl`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_path, train_path, test_path = out_dir / "corpus.jsonl", out_dir / "train.jsonl", out_dir / "test.jsonl"
    corpus_path.write_text("".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in world.passages),
                           encoding="utf-8")
    for path, split, questions in ((train_path, "train", world.train), (test_path, "test", world.test)):
        path.write_text("".join(json.dumps(_qa_row(q, split, n)) + "\n" for n, q in enumerate(questions)),
                        encoding="utf-8")
    return corpus_path, train_path, test_path


def world_folder(seed: int = 0, entities: int = 1000, questions: int = 2000, fillers: int = FILLERS_PER_PASSAGE,
                 indexes: tuple[str, ...] = ("bm25",), cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a world's files in the cache, written on first use; returns it.

    ``CACHE/v1-seed-S-entities-E-questions-Q-fillers-F`` (``CACHE`` = ``cache_dir`` or
    ``$STEPOPSD_CACHE/searchqa-world``) holds ``corpus.jsonl``, ``train.jsonl``, ``test.jsonl`` and
    one index folder per name in ``indexes`` (``bm25``: Lucene; ``dense``: faiss with the default
    encoder). Parallel workers may race on a first use: each builds in a folder of its own and the
    first to finish is kept.
    """
    from stepopsd_envs.searchqa.datasets import iter_corpus
    from stepopsd_envs.searchqa.indexing import build_bm25_index, build_dense_index

    builders = {"bm25": build_bm25_index, "dense": build_dense_index}
    unknown = set(indexes) - set(builders)
    if unknown:
        raise ValueError(f"indexes must name {sorted(builders)}, got {sorted(unknown)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root("searchqa-world")
    folder = root / f"v{WORLD_VERSION}-seed-{seed}-entities-{entities}-questions-{questions}-fillers-{fillers}"
    if not (folder / "test.jsonl").is_file():
        world = generate_world(seed, entities, questions, fillers=fillers)  # bad sizes fail before any folder
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        write_world(world, staging)
        try:
            staging.rename(folder)
        except OSError:  # another worker's world is there already
            shutil.rmtree(staging)
    for name in indexes:
        if not (folder / name / "meta.json").is_file():
            try:
                builders[name](iter_corpus(folder / "corpus.jsonl"), folder / name)
            except OSError:
                if not (folder / name / "meta.json").is_file():  # not another worker's finished index
                    raise
    return folder
