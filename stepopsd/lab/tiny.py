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
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import gymnasium

from stepopsd.algo.hindsight import hindsight_block, render_peer
from stepopsd.config import TinyModelSpec
from stepopsd.episodes import expert_output_fn, play_text_episode, random_output_fn
from stepopsd.run_dir import written_whole
from stepopsd_envs.contract import offers_expert
from stepopsd_envs.plugins import env_class, registered_env_ids

# Qwen2/Qwen3's pre-tokenizer split (transformers' models/qwen2/tokenization_qwen2.py).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<think>", "</think>", "<action>", "</action>")

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


# --------------------------------------------------------------------------- training text

PLUGIN_SCENES = 100  # episodes of a run's own (plugin) env in its tokenizer's text


def corpus_env_ids() -> list[str]:
    """The envs whose text every tiny tokenizer reads: those registered in the ``stepopsd``
    namespace (a plugin env's text is added only to its own runs' tokenizers, so the same spec gives
    the same tokenizer whatever plugins a machine has installed)."""
    return [env_id for env_id in registered_env_ids() if gymnasium.spec(env_id).namespace == "stepopsd"]


def env_episode_corpus(env_ids: Sequence[str], num_scenes: int = 400) -> Iterator[str]:
    """Episodes of the envs' ``corpus_variants``, dealt round robin: scene s plays variant s mod V
    with seed s, by the env's expert, or a random agent on every fourth scene (and where the env has
    no expert); each expert episode is also rendered as the hindsight block a teacher sees with a
    successful peer. Every distinct system prompt comes once."""
    variants = [cls(**kwargs) for cls in map(env_class, env_ids) for kwargs in cls.corpus_variants]
    if not variants:
        return
    has_expert = [_has_expert(env) for env in variants]
    yield from dict.fromkeys(env.system_prompt() for env in variants)
    for scene in range(num_scenes):
        env = variants[scene % len(variants)]
        expert = scene % 4 != 0 and has_expert[scene % len(variants)]
        played = play_text_episode(env, expert_output_fn(env) if expert else random_output_fn(env, seed=scene),
                                   seed=scene, options={"expert": True} if expert else None, max_steps=12)
        yield played.prompt
        for step in played.steps:
            yield step.response
            yield step.observation
        if expert:
            yield hindsight_block("correct" if scene % 2 else "incorrect", render_peer(played))
    for env in variants:
        env.close()


def _has_expert(env) -> bool:
    try:
        return offers_expert(env.reset(seed=0, options={"expert": True})[1])
    except (TypeError, ValueError):  # an env whose reset refuses options it does not know has no expert option
        return False


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
                     alfworld_data: Path | None = None, run_env_id: str | None = None) -> Path:
    """Train the tokenizer, initialise the Qwen3 model, save both to ``out_dir``; returns it.

    The tokenizer's text comes from the envs themselves (:func:`corpus_env_ids`: each env's
    ``corpus_variants`` episodes with their hindsight blocks, and its ``corpus_text``: ALFWorld's
    grammar when alfworld is installed, a generated Search-QA world with ``spec.searchqa_text`` and
    ``spec.searchqa_world``, ...), so the same spec gives the same model on every machine; ALFWorld
    game files are read only when ``alfworld_data`` is given, a plugin env's episodes only when it
    is ``run_env_id`` (the env a run trains).
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    builtin = corpus_env_ids()
    own = [run_env_id] if run_env_id and run_env_id not in builtin else []
    options = {**asdict(spec), "alfworld_data": str(alfworld_data) if alfworld_data else None, "run_env_id": run_env_id}
    classes = _importable_env_classes(builtin + own)
    texts = [*env_episode_corpus([env_id for env_id in builtin if env_id in classes]),
             *env_episode_corpus([env_id for env_id in own if env_id in classes], num_scenes=PLUGIN_SCENES),
             *(text for cls in classes.values() for text in cls.corpus_text(options))]
    tags = TAG_TOKENS + tuple(dict.fromkeys(tag for cls in classes.values() for tag in cls.corpus_tags(options)
                                            if tag not in TAG_TOKENS))
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
    sources = {"envs": list(classes), "alfworld_data": options["alfworld_data"],
               "searchqa_world": spec.searchqa_text, "searchqa_world_passages": spec.searchqa_world,
               "alfworld_scenes": spec.alfworld_text}
    with written_whole(out_dir) as partial:
        partial.mkdir(parents=True)
        model.save_pretrained(partial)
        hf_tokenizer.save_pretrained(partial)
        (partial / "tiny_build.json").write_text(json.dumps({"spec": asdict(spec), "sources": sources}, indent=2))
    return out_dir


def _importable_env_classes(env_ids: Sequence[str]) -> dict[str, type]:
    """env id -> class, for the envs whose module imports here (an env of a missing extra adds no text)."""
    classes = {}
    for env_id in env_ids:
        try:
            classes[env_id] = env_class(env_id)
        except ImportError:
            continue
    return classes


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
