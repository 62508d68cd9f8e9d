"""Per-token log-probabilities from a causal LM: the one place this arithmetic lives.

Every log-prob the method compares (behaviour, teacher, KL reference, the PPO ratio) is taken
from the same tempered distribution the sampler drew from: logits / T, with T <= 0 (greedy
decoding) scoring the untempered distribution, as the sampler records it.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache

MIN_SHARED_PREFIX = 16  # columns rows must share before a separate forward of them pays for itself


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T; T <= 0 (greedy) leaves the logits as they are."""
    return logits / temperature if temperature > 0 else logits


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-prob of each next token under softmax(logits / temperature).

    logits [B, T, V] from a causal LM over ids [B, T]; returns [B, T] where position t holds
    log p(ids[t] | ids[<t]) and position 0 holds 0 (it has no context).
    """
    logp = torch.log_softmax(tempered(logits[:, :-1].float(), temperature), dim=-1)  # [B, T-1, V]
    picked = logp.gather(-1, token_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    return torch.cat([picked.new_zeros(picked.shape[0], 1), picked], dim=1)  # [B, T]


def right_padded_logits(model: torch.nn.Module, input_ids: torch.Tensor,
                        logits_to_keep: int | torch.Tensor = 0) -> torch.Tensor:
    """Logits [B, T', V] of right-padded rows [B, T] from one forward without an attention mask.

    Under causal attention no real token reaches the padding after it, so the logits of real
    tokens are those of the masked forward (:func:`sequence_logprobs`, the reference) and attention
    takes its faster causal path. ``logits_to_keep`` as transformers reads it: the last n columns
    (0: all of them) or a tensor of column indices.
    """
    device = next(model.parameters()).device
    return model(input_ids=input_ids.to(device), use_cache=False, logits_to_keep=logits_to_keep).logits


def prefix_cache(model: torch.nn.Module, prefix_ids: torch.Tensor):
    """The KV cache of one forward over ``prefix_ids`` [P] (batch 1), for :func:`logits_after_prefix`."""
    device = next(model.parameters()).device
    return getattr(model(input_ids=prefix_ids[None].to(device), use_cache=True, logits_to_keep=1), cache_keyword(model))


def logits_after_prefix(model: torch.nn.Module, cache, prefix_length: int, input_ids: torch.Tensor,
                        logits_to_keep: int) -> torch.Tensor:
    """Logits [B, logits_to_keep, V] of the last columns of right-padded rows [B, W] that continue the cached
    prefix (:func:`prefix_cache`, left untouched: each call runs on ``B`` views of it)."""
    device = next(model.parameters()).device
    return model(input_ids=input_ids.to(device), use_cache=True, logits_to_keep=logits_to_keep,
                 **{cache_keyword(model): expanded_cache(cache, input_ids.shape[0], prefix_length)}).logits


def shared_prefix_logits(model: torch.nn.Module, input_ids: torch.Tensor, prefix_length: int,
                         logits_to_keep: int) -> torch.Tensor:
    """:func:`right_padded_logits` of right-padded rows [B, T] whose first ``prefix_length`` ids are the same in
    every row, with that prefix forwarded once: its forward builds a KV cache, then the ids after it run on
    ``B`` views of that cache (a backward reaches the prefix through both). The last ``logits_to_keep``
    columns, all after the prefix, are returned [B, logits_to_keep, V]: the reference's to float rounding."""
    width = input_ids.shape[1]
    if not 0 < prefix_length <= width - logits_to_keep or logits_to_keep <= 0:
        raise ValueError(f"a shared prefix of {prefix_length} of {width} columns leaves no room for the last "
                         f"{logits_to_keep} columns' logits")
    cache = prefix_cache(model, input_ids[0, :prefix_length])
    return logits_after_prefix(model, cache, prefix_length, input_ids[:, prefix_length:], logits_to_keep)


def common_prefix_columns(input_ids: torch.Tensor) -> int:
    """How many leading columns of [B, T] are the same in every row."""
    differs = (input_ids != input_ids[:1]).any(dim=0)  # [T]
    return int(differs.nonzero()[0]) if differs.any() else input_ids.shape[1]


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """One masked forward of right-padded rows [B, T] -> token log-probs [B, T] (on the model's device).

    The reference :func:`right_padded_logits` is tested against. SFT keeps it: the unmasked forward
    differs by rounding, which would change the start models the archived benchmarks were trained from.
    """
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.to(device), use_cache=False).logits  # [B, T, V]
    return token_logprobs(logits, input_ids, temperature)


def expanded_cache(cache: DynamicCache, rows: int, length: int) -> DynamicCache:
    """A fresh cache: ``rows`` copies of the first ``length`` positions of a batch-1 cache (left untouched)."""
    return DynamicCache(ddp_cache_data=[
        (layer.keys[:, :, :length].expand(rows, -1, -1, -1), layer.values[:, :, :length].expand(rows, -1, -1, -1))
        for layer in cache.layers
    ])


def cache_keyword(model) -> str:
    """The forward's KV-cache argument (and output field): transformers 5.24 renamed ``past_key_values``
    to ``cache`` (the old name warns, and goes in 5.40); older releases and remote-code models know only it.
    A PEFT wrapper passes keyword arguments through: its base model's forward decides."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
