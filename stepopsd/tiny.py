"""Tiny local models: a ~1M-parameter Qwen3 and a BPE tokenizer trained on env text, no hub.

``build_tiny_model(out_dir)`` writes a folder that loads through the same
``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` path as a real model, for tests,
CI and the CPU quickstart. Deterministic given the seed (and the ALFWorld files, only when given).

Tokenizer pitfalls handled here: the tokenizer uses Qwen2's normalizer and
pre-tokenizer, and ``tokenizer_config.json`` names ``TokenizersBackend`` so transformers 5.x
keeps them; ``head_dim`` is passed explicitly (Qwen3Config defaults it to 128).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Qwen2/Qwen3's pre-tokenizer split (transformers' models/qwen2/tokenization_qwen2.py).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<think>", "</think>", "<action>", "</action>")
SEARCH_TAG_TOKENS = ("<search>", "</search>", "<answer>", "</answer>", "<information>", "</information>")

# Qwen-style ChatML; assistant turns wrapped in {% generation %} so return_assistant_tokens_mask works.
# Prefix-stable: an earlier turn renders the same whatever follows it.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True, slots=True)
class TinyModelSpec:
    """Size of the tiny Qwen3 model and its tokenizer (defaults: ~1.2M parameters)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 8192
    seed: int = 0
    searchqa_text: bool = False  # also train the tokenizer on a generated Search-QA world's transcripts
    searchqa_world: dict = field(default_factory=dict)  # and on this world's passages (the env's world= keys), so its names are whole tokens
    alfworld_text: bool = False  # also on ALFWorld prompts of generated scenes (every object and receptacle name)

    def __post_init__(self) -> None:
        from stepopsd.configtree import at_least, check_fields

        check_fields("model.tiny", self, {
            "vocab_size": at_least(1), "hidden_size": at_least(1), "intermediate_size": at_least(1),
            "num_hidden_layers": at_least(1), "num_attention_heads": at_least(1),
            "num_key_value_heads": (lambda kv: kv >= 1 and self.num_attention_heads % kv == 0,
                                    f"divide num_attention_heads ({self.num_attention_heads})"),
            "head_dim": (lambda dim: dim >= 2 and dim % 2 == 0, "be even and at least 2 (rotary embeddings)"),
            "max_position_embeddings": at_least(1),
        })
        if self.searchqa_world:  # the envs package is imported only by a spec that needs it
            from stepopsd_envs.searchqa.world import WORLD_OPTIONS

            check_fields("model.tiny", self, {"searchqa_world": (lambda world: set(world) <= set(WORLD_OPTIONS),
                                                                f"take only the keys {', '.join(WORLD_OPTIONS)}")})


# --------------------------------------------------------------------------- training text


def builtin_env_corpus(num_scenes: int = 400) -> Iterator[str]:
    """Expert and random conversations of the built-in envs (FetchItem at every room size,
    ForkedErrand in both modes), and each expert episode rendered as a hindsight block, as a
    teacher sees a successful peer."""
    from stepopsd.algo.hindsight import hindsight_block
    from stepopsd.episodes import expert_output_fn, random_output_fn
    from stepopsd_envs.decisive import ForkedErrandEnv
    from stepopsd_envs.fetch import PLACES, FetchItemEnv

    envs = [FetchItemEnv(num_places=n) for n in range(2, len(PLACES) + 1)]
    envs += [ForkedErrandEnv(mode=mode) for mode in ("observable", "hidden")]
    yield envs[0].system_prompt()
    for scene in range(num_scenes):
        env = envs[scene % len(envs)]
        expert = scene % 4 != 0
        output_fn = expert_output_fn(env) if expert else random_output_fn(env, seed=scene)
        observation, info = env.reset(seed=scene)
        yield observation
        peer_lines = []
        for index in range(12):
            output = output_fn(observation, info)
            observation, _, terminated, _, info = env.step(output)
            yield output
            yield observation
            peer_lines += [f"step {index + 1}", f"thought: {info.get('thought', '')}",
                           f"action: {info.get('action', '')}", f"observation: {observation}"]
            if terminated:
                break
        if expert:
            yield hindsight_block("correct" if scene % 2 else "incorrect", "\n".join(peer_lines))


def searchqa_world_corpus(seed: int = 0, num_entities: int = 300) -> Iterator[str]:
    """Search-R1 transcripts of a generated QA world (:mod:`stepopsd_envs.searchqa.world`): the
    instructions, each question, the expert's turns (as the SFT expert writes them) with the passages
    its searches find, the answer. Any seed gives the same syllables and sentence templates, so one
    world serves every world."""
    from stepopsd.episodes import EXPERT_THOUGHT
    from stepopsd_envs.searchqa.protocol import INSTRUCTIONS, SearchR1Protocol
    from stepopsd_envs.searchqa.retrievers import Hit, format_information
    from stepopsd_envs.searchqa.world import generate_world

    protocol = SearchR1Protocol()
    world = generate_world(seed, num_entities, num_questions=num_entities)
    passages = {passage.id: passage for passage in world.passages}
    yield INSTRUCTIONS
    for question in world.train + world.test:
        turns = [f"Question: {question.question}\n"]
        for query, supporting in zip(question.expert_queries, question.supporting_ids):
            search = f"<search> {query} </search>"
            hits = [Hit(passages[passage_id], 0.0) for passage_id in supporting]
            turns.append(protocol.format(search, thought=EXPERT_THOUGHT.format(action=search))
                         + f"\n\n<information>{format_information(hits).strip()}</information>\n\n")
        answer = f"<answer> {question.answer} </answer>"
        turns.append(protocol.format(answer, thought=EXPERT_THOUGHT.format(action=answer)))
        yield "".join(turns)


def searchqa_world_passages(world: dict) -> Iterator[str]:
    """The passages of the generated world ``world`` (the SearchQA env's ``world=`` keys): the default
    world's transcripts alone leave another world's names 3-8 tokens long, too long for a tiny model
    to copy into its answer."""
    from stepopsd_envs.searchqa.world import WORLD_OPTIONS, generate_world

    generated = generate_world(**{WORLD_OPTIONS[key]: int(value) for key, value in world.items()})
    for passage in generated.passages:
        yield passage.contents


def _protocol_feedback_text() -> str:
    """The protocol's corrective feedback texts, so invalid steps tokenise compactly."""
    from stepopsd_envs.protocol import TagProtocol

    protocol = TagProtocol()
    return "\n".join(protocol.parse(bad).feedback for bad in ("", "<action></action>", "<action>a</action><action>b</action>"))


def alfworld_corpus(data_dir: Path | None) -> Iterator[str]:
    """ALFWorld grammar sentences and every game's task, objects and walkthrough (read only)."""
    try:
        import alfworld
    except ImportError:
        return
    grammar = Path(alfworld.__file__).parent / "data" / "alfred.twl2"
    if grammar.is_file():
        yield from _grammar_sentences(grammar.read_text(encoding="utf-8"))
    if data_dir is None or not data_dir.is_dir():
        return
    for game_path in sorted(data_dir.rglob("game.tw-pddl")):
        game = json.loads(game_path.read_text(encoding="utf-8"))
        yield "\n".join(game.get("walkthrough", []))
        task = re.search(r"Your task is to: [^\"\\]*", game.get("grammar", ""))
        if task:
            yield task.group(0)
        names = _OBJECT_PATTERN.findall(game.get("pddl_problem", "").split("(:init")[0])
        yield ", ".join(f"a {name.lower()} {i % 5 + 1}" for i, name in enumerate(names))


def alfworld_scene_corpus(num_scenes: int = 400) -> Iterator[str]:
    """verl-agent's ALFWorld prompts over scenes drawn as the game generator draws them: the fixed
    instruction text, and every receptacle and object name of ALFWorld's tables in the commands and
    observations an episode shows. Without it those names reach the tokenizer only as grammar
    placeholders and split into letters ("microwave" in 8 tokens), which makes ALFWorld prompts
    long and the names hard for a tiny model to copy. Needs alfworld (its tables); nothing otherwise."""
    try:
        from stepopsd_envs.alfworld.generate import SceneConfig, alfred_tables, sample_scene
        from stepopsd_envs.alfworld.protocol import build_alfworld_prompt
        alfred_tables()
    except ImportError:
        return
    config = SceneConfig(num_receptacles=5, num_distractors=2)
    task_types = ("Pick", "Clean", "Heat", "Cool", "Look", "PickTwo")
    for index in range(num_scenes):
        scene = sample_scene(task_types[index % len(task_types)], index, config)
        if scene is None:
            continue
        counts: Counter[str] = Counter()
        names = {}
        for entity_id, kind in [*scene.receptacles, *((oid, otype) for oid, otype, _ in scene.objects)]:
            counts[kind] += 1
            names[entity_id] = f"{kind.lower()} {counts[kind]}"
        places = [names[rid] for rid, _ in scene.receptacles]
        intro = (f"You are in the middle of a room. Looking quickly around you, you see "
                 f"{', '.join(f'a {place}' for place in places[:-1])}, and a {places[-1]}.\n\n"
                 f"Your task is to: {scene.task_sentence}")
        yield "user\nassistant\n"  # the chat roles the template writes around every turn
        history: list[tuple[str, str]] = []
        observation = intro
        for rid, _ in scene.receptacles:
            place = names[rid]
            held = [names[oid] for oid, _, spot in scene.objects if spot == rid]
            seen = ", ".join(f"a {thing}" for thing in held) or "nothing"
            actions = [f"go to {other}" for other in places if other != place] + [
                f"open {place}", f"examine {place}", *(f"take {thing} from {place}" for thing in held),
                *(f"move {thing} to {place}" for thing in held), *(f"heat {thing} with {place}" for thing in held),
                *(f"cool {thing} with {place}" for thing in held), "inventory", "look"]
            yield build_alfworld_prompt(scene.task_sentence, observation, actions, history)
            history.append((observation, f"go to {place}"))
            observation = f"You arrive at {place}. On the {place}, you see {seen}."
            yield f"You open the {place}. The {place} is open. In it, you see {seen}."


_OBJECT_PATTERN = re.compile(r"^\s*([A-Za-z]+)_bar_\S* - (?:object|receptacle)$", re.MULTILINE)


def _grammar_sentences(grammar: str) -> Iterator[str]:
    for rhs in re.findall(r'"rhs":\s*"((?:[^"\\]|\\.)*)"', grammar):
        yield rhs.replace("\\n", "\n")


# --------------------------------------------------------------------------- builders


def train_tokenizer(texts: Iterator[str], vocab_size: int, tags: tuple[str, ...] = TAG_TOKENS):
    """A byte-level BPE ``tokenizers.Tokenizer`` with Qwen's normalizer and pre-tokenizer; each of
    ``tags`` is one token."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *tags],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tag_pattern = re.compile("|".join(re.escape(t) for t in (*SPECIAL_TOKENS, *tags)))
    tokenizer.train_from_iterator((tag_pattern.sub(" ", text) for text in texts), trainer=trainer)
    return tokenizer


def wrap_tokenizer(tokenizer):
    """The transformers tokenizer (TokenizersBackend) with ChatML markup and chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_model(out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec(),
                     alfworld_data: Path | None = None) -> Path:
    """Train the tokenizer, initialise the Qwen3 model, save both to ``out_dir``; returns it.

    The tokenizer's text is what the package itself ships or generates (the built-in envs, the
    hindsight block, ALFWorld's grammar when alfworld is installed, a generated Search-QA world
    with ``spec.searchqa_text`` and ``spec.searchqa_world``), so the same spec gives the
    same model on every machine; ALFWorld game files are read only when ``alfworld_data`` is given.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    texts = [*builtin_env_corpus(), *alfworld_corpus(alfworld_data),
             *(searchqa_world_corpus() if spec.searchqa_text else ()),
             *(searchqa_world_passages(spec.searchqa_world) if spec.searchqa_world else ()),
             *(alfworld_scene_corpus() if spec.alfworld_text else ())]
    tags = TAG_TOKENS + SEARCH_TAG_TOKENS if spec.searchqa_text or spec.searchqa_world else TAG_TOKENS
    hf_tokenizer = wrap_tokenizer(train_tokenizer(iter(texts), spec.vocab_size, tags))
    eos_id, pad_id = hf_tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen3Config(
        vocab_size=_round_up(len(hf_tokenizer), 64),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    hf_tokenizer.save_pretrained(out_dir)
    sources = {"fetch_texts": True, "alfworld_data": str(alfworld_data) if alfworld_data else None,
               "searchqa_world": spec.searchqa_text, "searchqa_world_passages": spec.searchqa_world,
               "alfworld_scenes": spec.alfworld_text}
    (out_dir / "tiny_build.json").write_text(json.dumps({"spec": asdict(spec), "sources": sources}, indent=2))
    return out_dir


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
