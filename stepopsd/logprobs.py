"""Per-token log-probabilities from a causal LM: the one place this arithmetic lives.

Every log-prob the method compares (behaviour, teacher, KL reference, the PPO ratio) is taken
from the same tempered distribution the sampler drew from: logits / T, with T <= 0 (greedy
decoding) scoring the untempered distribution, as the sampler records it.
"""

from __future__ import annotations

import torch


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
