"""Batched sampling that keeps each episode's KV cache from one turn to the next.

:func:`stepopsd.policy.sample` (``model.generate``) re-reads every prompt in full at every turn;
in full-context mode a turn's prompt is the previous turn's prompt, its response and one new
observation block, so most of that prefill is repeated work. :class:`TurnCache` is the fast path
beside it: the keys and values of the ids an episode has already been through are kept, and a
turn feeds only the ids after them. Prompts with no usable cache (the first turn, window mode, a
new segment after a context overflow) that share a long prefix (a group's rollouts of one task,
the system prompt and task text of window prompts) have that prefix encoded once.

The sampling itself is ``generate``'s: the same logits warpers (temperature, top-k, top-p, from
transformers), one ``torch.multinomial`` over the batch per step, the same stopping, so on the
same seed the ids match the reference and the log-probs agree to float rounding
(tests/test_turn_cache.py). Layout of one call, per row (pads masked out)::

    [pad | held ids of this episode] [pad | new ids of this turn] [generated ids]
     <------------- P ------------->  <----------- N ----------->  <- max_new ->
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stepopsd.config import SamplingConfig
from stepopsd.logprobs import cache_keyword
from stepopsd.policy import Policy, Sample, cut_sample, left_pad, sample


@dataclass(frozen=True, slots=True)
class _Held:
    """The keys and values of ``ids`` (one [kv_heads, len(ids), head_dim] tensor per layer)."""

    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    def prefix(self, length: int) -> _Held:
        return _Held(self.ids[:length], tuple(k[:, :length] for k in self.keys),
                     tuple(v[:, :length] for v in self.values))


@dataclass(frozen=True, slots=True)
class _Prefilled:
    """A static cache after the prompts' new ids went through: rows hold each past right-aligned in
    columns [0, width_past) and its new ids right-aligned in [width_past, width_past + width_new)."""

    cache: object  # transformers.StaticCache
    mask: torch.Tensor  # [B, width_past + width_new + extra]
    logits: torch.Tensor  # [B, V] at each row's last prompt id
    past_lengths: list[int]
    width_past: int
    width_new: int


def supports_turn_cache(model) -> bool:
    """Whether every layer of ``model`` keeps a plain full-attention cache (no sliding window, no state)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    try:
        cache = StaticCache(config=model.config, max_cache_len=1)
    except Exception:  # an architecture whose cache StaticCache cannot describe
        return False
    return all(type(layer) is StaticLayer for layer in cache.layers)


class TurnCache:
    """A responder's sampler: ``sampler(episodes, prompts)`` -> one Sample per prompt, reusing held caches.

    ``episodes`` names each prompt's episode; an episode's cache is used when its new prompt
    starts with the ids it holds, and dropped when the episode is not in a call (it ended).
    Models the cache cannot describe (:func:`supports_turn_cache`) are sampled with the reference
    :func:`stepopsd.policy.sample`.
    """

    def __init__(self, policy: Policy, config: SamplingConfig, *, min_shared_prefix: int = 32) -> None:
        self.policy, self.config, self.min_shared_prefix = policy, config, min_shared_prefix
        self.enabled = supports_turn_cache(policy.model)
        self.cache_argument = cache_keyword(policy.model)
        self.held: dict[int, _Held] = {}
        self.fed_tokens = 0  # ids run through the model (prefill and decode), for the benchmarks
        self.reused_tokens = 0  # prompt ids served from a held or shared cache instead

    def __call__(self, episodes: Sequence[int], prompts: Sequence[Sequence[int]]) -> list[Sample]:
        if not self.enabled:
            return sample(self.policy, prompts, self.config)
        prompts = [tuple(p) for p in prompts]
        pasts = [_reusable(self.held.get(e), p) for e, p in zip(episodes, prompts)]
        pasts = self._shared_prefixes(prompts, pasts)
        self.reused_tokens += sum(len(p.ids) for p in pasts if p is not None)
        samples, held = self._generate(prompts, pasts)
        self.held = dict(zip(episodes, held))
        return samples

    def _shared_prefixes(self, prompts: list[tuple[int, ...]], pasts: list[_Held | None]) -> list[_Held | None]:
        """Rows with no held cache whose prompts share >= min_shared_prefix ids get that prefix encoded once."""
        fresh = sorted((i for i, past in enumerate(pasts) if past is None), key=lambda i: prompts[i])
        clusters: list[list[int]] = []
        for i in fresh:
            if clusters and common_prefix_length(prompts[clusters[-1][0]], prompts[i]) >= self.min_shared_prefix:
                clusters[-1].append(i)
            else:
                clusters.append([i])
        clusters = [c for c in clusters if len(c) > 1]
        if not clusters:
            return pasts
        # every member keeps at least one id of its own to feed: the prefix stops one short of the shortest
        lengths = [min(min(common_prefix_length(prompts[c[0]], prompts[i]) for i in c),
                       min(len(prompts[i]) for i in c) - 1) for c in clusters]
        kept = [(c, n) for c, n in zip(clusters, lengths) if n >= self.min_shared_prefix]
        if not kept:
            return pasts
        prefixes = [prompts[c[0]][:n] for c, n in kept]
        held = self._encode(prefixes)
        pasts = list(pasts)
        for (cluster, _), shared in zip(kept, held):
            for i in cluster:
                pasts[i] = shared
        return pasts

    @torch.no_grad()
    def _encode(self, prompts: list[tuple[int, ...]]) -> list[_Held]:
        """One forward over ``prompts`` (no past), keeping every id's keys and values."""
        filled = self._prefill(prompts, [None] * len(prompts), extra=0)
        width = filled.width_new
        return [_take(filled.cache, row, [(width - len(prompt), width)], prompt) for row, prompt in enumerate(prompts)]

    def _prefill(self, prompts, pasts, extra: int) -> _Prefilled:
        """Load the held pasts into a fresh static cache and run the new ids."""
        from transformers import StaticCache

        model, device = self.policy.model, self.policy.device
        past_lengths = [len(p.ids) if p is not None else 0 for p in pasts]
        new_ids = [prompt[length:] for prompt, length in zip(prompts, past_lengths)]
        width_past, width_new = max(past_lengths), max(len(ids) for ids in new_ids)
        cache = StaticCache(config=model.config, max_cache_len=width_past + width_new + extra)
        mask = torch.zeros((len(prompts), width_past + width_new + extra), dtype=torch.long, device=device)
        if width_past:
            reference = next(p for p in pasts if p is not None)
            for layer in range(len(reference.keys)):
                keys = reference.keys[layer].new_zeros((len(prompts), *reference.keys[layer].shape[:1], width_past,
                                                         reference.keys[layer].shape[-1]))  # [B, H, P, D]
                values = reference.values[layer].new_zeros((len(prompts), *reference.values[layer].shape[:1],
                                                             width_past, reference.values[layer].shape[-1]))
                for row, past in enumerate(pasts):
                    if past is not None:
                        keys[row, :, width_past - len(past.ids):] = past.keys[layer]
                        values[row, :, width_past - len(past.ids):] = past.values[layer]
                cache.update(keys, values, layer)
            for row, length in enumerate(past_lengths):
                mask[row, width_past - length:width_past] = 1
        input_ids, new_mask = left_pad(new_ids, self.policy.tokenizer.pad_token_id)  # [B, N]
        mask[:, width_past:width_past + width_new] = new_mask.to(device)
        positions = (mask[:, :width_past + width_new].cumsum(-1) - 1).clamp(min=0)[:, width_past:]  # [B, N]
        self.fed_tokens += sum(len(ids) for ids in new_ids)
        out = model(input_ids=input_ids.to(device), attention_mask=mask[:, :width_past + width_new],
                    position_ids=positions, use_cache=True, logits_to_keep=1, **{self.cache_argument: cache})
        return _Prefilled(cache, mask, out.logits[:, -1].to(dtype=torch.float32), past_lengths, width_past, width_new)

    @torch.no_grad()
    def _generate(self, prompts: list[tuple[int, ...]], pasts: list[_Held | None]) -> tuple[list[Sample], list[_Held]]:
        model, device, config = self.policy.model, self.policy.device, self.config
        batch = len(prompts)
        filled = self._prefill(prompts, pasts, extra=config.max_new_tokens)
        cache, mask, logits = filled.cache, filled.mask, filled.logits
        past_lengths, width_past, width_new = filled.past_lengths, filled.width_past, filled.width_new
        warpers = _warpers(config)
        eos = torch.tensor(self.policy.eos_token_ids, device=device)
        pad_id = self.policy.tokenizer.pad_token_id
        stopping = _StopStrings(self.policy.tokenizer, config.stop_strings, batch)
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        generated: list[torch.Tensor] = []  # per step [B]
        logprobs: list[torch.Tensor] = []  # per step [B]
        length = width_past + width_new
        while True:
            scaled = torch.log_softmax(logits / (config.temperature if config.temperature > 0 else 1.0), dim=-1)
            if config.temperature > 0:
                scores = warpers(None, logits)
                next_ids = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)  # [B]
            else:
                next_ids = torch.argmax(logits, dim=-1)
            next_ids = torch.where(unfinished, next_ids, torch.full_like(next_ids, pad_id))
            logprobs.append(scaled.gather(-1, next_ids[:, None]).squeeze(-1))
            generated.append(next_ids)
            unfinished &= ~torch.isin(next_ids, eos)
            unfinished &= ~stopping.completed(next_ids.tolist(), unfinished)
            if not unfinished.any() or len(generated) == config.max_new_tokens:
                break
            mask[:, length] = 1
            positions = mask[:, :length + 1].sum(-1, keepdim=True) - 1  # [B, 1]
            self.fed_tokens += batch
            out = model(input_ids=next_ids[:, None], attention_mask=mask[:, :length + 1], position_ids=positions,
                        use_cache=True, **{self.cache_argument: cache})
            logits = out.logits[:, -1].to(dtype=torch.float32)
            length += 1
        ids = torch.stack(generated, dim=1).tolist()  # [B, S]
        picked = torch.stack(logprobs, dim=1).cpu().tolist()  # [B, S]
        samples = [cut_sample(self.policy, ids[row], picked[row], config) for row in range(batch)]
        fed_steps = len(generated) - 1  # the last sampled id never went through the model
        held = []
        for row, (prompt, past_length, kept) in enumerate(zip(prompts, past_lengths, samples)):
            fed = min(len(kept.token_ids), fed_steps)
            end = width_past + width_new
            columns = [(width_past - past_length, width_past), (end - (len(prompt) - past_length), end), (end, end + fed)]
            held.append(_take(cache, row, columns, prompt + kept.token_ids[:fed]))
        return samples, held


def _take(cache, row: int, columns: Sequence[tuple[int, int]], ids: Sequence[int]) -> _Held:
    """One row's keys and values over the [start, end) column ranges that hold ``ids``, in order."""
    def gather(tensor: torch.Tensor) -> torch.Tensor:  # [B, H, C, D] -> [H, len(ids), D]
        return torch.cat([tensor[row, :, start:end] for start, end in columns], dim=1).clone()

    return _Held(tuple(ids), tuple(gather(layer.keys) for layer in cache.layers),
                 tuple(gather(layer.values) for layer in cache.layers))


def _reusable(held: _Held | None, prompt: tuple[int, ...]) -> _Held | None:
    """``held`` when ``prompt`` extends its ids by at least one id (trimmed to leave one id to feed), else None."""
    if held is None:
        return None
    length = min(common_prefix_length(held.ids, prompt), len(prompt) - 1)
    return held.prefix(length) if length > 0 else None


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix of two sequences (ids, or the characters of two strings)."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _warpers(config: SamplingConfig):
    """transformers' own logits warpers, in ``generate``'s order, for the sampling settings."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if config.temperature > 0 and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k > 0:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    return warpers


class _StopStrings:
    """Which rows' generated text now holds a stop string (checked on each row's tail only)."""

    def __init__(self, tokenizer, stop_strings: Sequence[str], batch: int) -> None:
        self.tokenizer, self.stop_strings = tokenizer, tuple(stop_strings)
        self.tail = max((len(s) for s in self.stop_strings), default=0) + 1  # ids: each decodes to >= 1 char
        self.rows: list[list[int]] = [[] for _ in range(batch)]

    def completed(self, next_ids: list[int], unfinished: torch.Tensor) -> torch.Tensor:
        done = torch.zeros_like(unfinished)
        if not self.stop_strings:
            return done
        for row, (token, live) in enumerate(zip(next_ids, unfinished.tolist())):
            self.rows[row].append(token)
            if live:
                text = self.tokenizer.decode(self.rows[row][-self.tail:])
                done[row] = any(stop in text for stop in self.stop_strings)
        return done
