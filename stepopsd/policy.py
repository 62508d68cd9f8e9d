"""The transformers policy: load, chat formatting, batched sampling with each token's log-prob.

Every token id that leaves this module is one the model produced or the tokenizer rendered
from a chat template; nothing is decoded and re-tokenised. The recorded log-probs are those of
the temperature-scaled distribution (before top-p truncation), as in verl; rescoring them
(:mod:`stepopsd.logprobs`, :func:`stepopsd.algo.rescore.teacher_logprobs`) gives the same values.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from stepopsd.config import SamplingConfig
from stepopsd.run_dir import written_whole


@dataclass(frozen=True, slots=True)
class Sample:
    """One generated continuation: its ids, their sampling log-probs, its text and why it ended."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str  # "eos" | "stop" | "length"


@dataclass(slots=True)
class Policy:
    """A causal LM with its tokenizer and the chat-template options used to prompt it."""

    model: torch.nn.Module
    tokenizer: object
    enable_thinking: bool | None = None  # Qwen3: passed to the chat template when set

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """End-of-turn ids: the tokenizer's eos plus the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return tuple(sorted(i for i in ids if i is not None))


class ModelFolderError(ValueError):
    """A model folder (or hub id) that cannot be a policy: unreadable, not a causal LM, no tokenizer or no
    chat template; one line naming it."""


def load_policy(path: str | Path, *, dtype: str = "float32", device: str = "cpu", device_map: str | None = None,
                lora_rank: int = 0, lora_alpha: int = 16, enable_thinking: bool | None = None) -> Policy:
    """Load any causal LM + tokenizer with ``from_pretrained`` (local folder or hub id).

    Raises :class:`ModelFolderError` (a ``ValueError``), before the weights load where it can: the
    folder is not a causal LM with a tokenizer and a chat template, or cannot be read.
    ``lora_rank > 0`` wraps the model in peft LoRA adapters on the attention projections.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                   "bf16": torch.bfloat16, "float16": torch.float16}[dtype]
    model_config = _from_pretrained(AutoConfig, path)
    _check_causal_lm(model_config, path)
    tokenizer = _from_pretrained(AutoTokenizer, path)
    _check_tokenizer(tokenizer, model_config, path)
    model = _from_pretrained(AutoModelForCausalLM, path, config=model_config, dtype=torch_dtype, device_map=device_map)
    if device_map is None:
        model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if lora_rank > 0:
        model = _add_lora(model, lora_rank, lora_alpha)
    return Policy(model=model, tokenizer=tokenizer, enable_thinking=enable_thinking)


def save_policy(policy: Policy, out_dir: str | Path) -> None:
    """Save model and tokenizer with ``save_pretrained`` (reloadable by :func:`load_policy`), whole or not
    at all (:func:`~stepopsd.run_dir.written_whole`)."""
    with written_whole(out_dir) as partial:
        policy.model.save_pretrained(partial)
        policy.tokenizer.save_pretrained(partial)


def _from_pretrained(auto_class, path: str | Path, **kwargs):
    from safetensors import SafetensorError

    try:
        return auto_class.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, SafetensorError) as error:  # a missing or damaged file, an unknown hub id or type
        raise ModelFolderError(f"could not load a model from {path}: {' '.join(str(error).split())}") from error


def _check_causal_lm(model_config, path: str | Path) -> None:
    """Raise :class:`ModelFolderError` unless config.json names a causal-LM class (or none at all)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    # AutoModelForCausalLM would load an encoder such as BertModel as BertLMHeadModel with untrained
    # heads; the classes the folder was saved as say what it is
    architectures = model_config.architectures or []
    if architectures and not any(name in causal or name.endswith("ForCausalLM") for name in architectures):
        raise ModelFolderError(f"{path} holds a {', '.join(architectures)}, not a causal language model "
                               "(config.json architectures); give a ...ForCausalLM model folder")


def _check_tokenizer(tokenizer, model_config, path: str | Path) -> None:
    """Raise :class:`ModelFolderError` when the tokenizer is empty, has no chat template, or has
    ids past the model's embedding table."""
    if len(tokenizer.get_vocab()) <= len(tokenizer.added_tokens_decoder):
        raise ModelFolderError(f"{path} has no tokenizer (its vocabulary is empty: no tokenizer.json, vocab or "
                               "tokenizer.model); copy the tokenizer files of the model it was trained from into it")
    if not tokenizer.chat_template:
        raise ModelFolderError(f"{path}: the tokenizer has no chat template (chat_template.jinja or "
                               "tokenizer_config.json's chat_template); stepopsd prompts every model through it")
    vocab_size = getattr(model_config.get_text_config(), "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ModelFolderError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                               f"{vocab_size}; the tokenizer belongs to another model")


def _add_lora(model, rank: int, alpha: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("lora_rank > 0 needs peft: pip install peft") from error
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    return get_peft_model(model, config)


# --------------------------------------------------------------------------- chat formatting


def render_chat(policy: Policy, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """The chat template's text for ``messages`` (Qwen3 thinking switch applied when set)."""
    kwargs = {} if policy.enable_thinking is None else {"enable_thinking": policy.enable_thinking}
    return policy.tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def encode(policy: Policy, text: str) -> list[int]:
    """Token ids of rendered template text (markup already in the text, none added)."""
    return policy.tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(policy: Policy, system: str, user: str) -> list[int]:
    """Ids of a system + user conversation ending in the assistant generation prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return encode(policy, render_chat(policy, messages, add_generation_prompt=True))


_MARKER = "\u2063STEPOPSD-ASSISTANT\u2063"


def user_turn_ids(policy: Policy, user: str, *, after_eos: bool) -> list[int]:
    """Ids that follow a generated assistant turn: its end markup, the user message, the next prompt.

    Rendered by the chat template itself (the text after a marker assistant message), so it
    matches the template exactly. ``after_eos`` drops the end-of-turn token the model already
    generated.
    """
    messages = [{"role": "user", "content": "."}, {"role": "assistant", "content": _MARKER},
                {"role": "user", "content": user}]
    rendered = render_chat(policy, messages, add_generation_prompt=True)
    tail = rendered[rendered.rindex(_MARKER) + len(_MARKER):]
    ids = encode(policy, tail)
    if after_eos and ids and ids[0] in policy.eos_token_ids:
        ids = ids[1:]
    return ids


# --------------------------------------------------------------------------- sampling


class _LogprobRecorder:
    """Logits processor that keeps the log-prob of each sampled token, one [B, V] at a time."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature if temperature > 0 else 1.0
        self.previous: torch.Tensor | None = None  # [B, V] log-probs of the last step
        self.picked: list[torch.Tensor] = []  # per step [B]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.record(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def record(self, last_ids: torch.Tensor) -> None:
        self.picked.append(self.previous.gather(-1, last_ids.unsqueeze(-1)).squeeze(-1))


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids [B, T] and attention mask [B, T]."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


@torch.no_grad()
def sample(policy: Policy, prompts: Sequence[Sequence[int]], config: SamplingConfig) -> list[Sample]:
    """One batched ``generate`` call over token-id prompts; returns one Sample per prompt."""
    from transformers import GenerationConfig, LogitsProcessorList

    tokenizer = policy.tokenizer
    input_ids, attention_mask = left_pad(prompts, tokenizer.pad_token_id)  # [B, T]
    greedy = config.temperature <= 0
    generation_config = GenerationConfig(
        do_sample=not greedy,
        temperature=None if greedy else config.temperature,
        top_p=None if greedy else config.top_p,
        top_k=None if greedy else config.top_k,
        max_new_tokens=config.max_new_tokens,
        stop_strings=list(config.stop_strings) or None,
        eos_token_id=list(policy.eos_token_ids),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    recorder = _LogprobRecorder(config.temperature)
    sequences = policy.model.generate(
        input_ids=input_ids.to(policy.device),
        attention_mask=attention_mask.to(policy.device),
        generation_config=generation_config,
        logits_processor=LogitsProcessorList([recorder]),
        tokenizer=tokenizer if config.stop_strings else None,
    )  # [B, T + N]
    generated = sequences[:, input_ids.shape[1]:]  # [B, N]
    recorder.record(generated[:, -1])
    logprobs = torch.stack(recorder.picked, dim=1).cpu()  # [B, N]
    return [cut_sample(policy, generated[row].tolist(), logprobs[row].tolist(), config) for row in range(len(prompts))]


def cut_sample(policy: Policy, ids: list[int], logprobs: list[float], config: SamplingConfig) -> Sample:
    """The Sample of one generated row: its ids up to where the turn ends (:func:`response_end`), nothing after."""
    end, reason = response_end(policy.tokenizer, ids, policy.eos_token_ids, config.stop_strings)
    kept = ids[:end]
    text_ids = kept[:-1] if reason == "eos" else kept  # the end-of-turn markup is not response text
    return Sample(tuple(kept), tuple(logprobs[:end]), policy.tokenizer.decode(text_ids), reason)


def response_end(tokenizer, ids: Sequence[int], eos_ids: Sequence[int], stop_strings: Sequence[str]) -> tuple[int, str]:
    """Where a generated turn ends: after the first end-of-turn id or completed stop string.

    Returns (number of ids kept, "eos" | "stop" | "length"). Ids generated after that point
    are dropped, never re-tokenised.
    """
    end, reason = len(ids), "length"
    eos_positions = [i for i, token in enumerate(ids) if token in eos_ids]
    if eos_positions:
        end, reason = eos_positions[0] + 1, "eos"
    stop_end = _first_stop(tokenizer, list(ids[:end]), stop_strings)
    if stop_end is not None:
        end, reason = stop_end, "stop"
    return end, reason


def _first_stop(tokenizer, ids: list[int], stop_strings: Sequence[str]) -> int | None:
    """Smallest n such that decode(ids[:n]) contains a stop string, or None (binary search)."""
    if not stop_strings or not any(stop in tokenizer.decode(ids) for stop in stop_strings):
        return None
    return bisect_left(range(len(ids)), True, lo=1,
                       key=lambda count: any(stop in tokenizer.decode(ids[:count]) for stop in stop_strings))
