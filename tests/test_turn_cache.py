"""The KV cache kept across turns (stepopsd.turn_cache) against the reference: one generate() per turn.

Same seeds, same tasks: greedy gives identical ids; sampling with the same torch generator gives
identical ids too (one multinomial over the batch per step, as generate draws), and every recorded
log-prob agrees within 1e-4.
"""

import dataclasses

import pytest
import torch

from model_fixtures import tiny_model_dir, tiny_policy  # noqa: F401  (pytest fixtures)
from stepopsd.policy import SamplingConfig, load_policy, sample
from stepopsd.rollout import RolloutConfig, Task, make_envs, rollout
from stepopsd.turn_cache import TurnCache, supports_turn_cache

FETCH = "stepopsd/FetchItem-v0"
LOGPROB_TOLERANCE = 1e-4


def _both(policy, config: RolloutConfig, tasks: int = 2):
    envs = make_envs(FETCH, tasks * config.group_size)
    task_list = [Task(seed=40 + t) for t in range(tasks)]
    return [rollout(policy, envs, task_list, dataclasses.replace(config, turn_cache=cached)) for cached in (False, True)]


def _assert_same(reference, cached):
    assert len(reference) == len(cached)
    for ref, got in zip(reference, cached):
        assert got.token_ids == ref.token_ids, ref.trajectory_id
        assert got.trainable_mask == ref.trainable_mask
        assert [s.response for s in got.steps] == [s.response for s in ref.steps]
        gaps = [abs(a - b) for a, b in zip(ref.behaviour_logprobs, got.behaviour_logprobs)]
        assert max(gaps) <= LOGPROB_TOLERANCE, ref.trajectory_id


def _ends_often(policy):
    """Make rows end at different steps: many ids count as end-of-turn."""
    eos = policy.tokenizer.eos_token_id
    policy.model.generation_config.eos_token_id = [eos, *range(10, 10 + 60)]
    return policy


@pytest.mark.parametrize("context_mode", ["full", "window"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_rollout_equals_generate(tiny_policy, context_mode, temperature):
    config = RolloutConfig(group_size=2, context_mode=context_mode, history_steps=2, max_turns=3,
                           sampling=SamplingConfig(temperature=temperature, max_new_tokens=12))
    reference, cached = _both(_ends_often(tiny_policy), config)
    if temperature > 0:  # rows really end at different steps (the untrained model's greedy ids never end)
        assert len({s.response_token_end - s.response_token_start for t in reference for s in t.steps}) > 3
    _assert_same(reference, cached)


def test_cached_rollout_equals_generate_with_stop_strings_top_p_and_top_k(tiny_policy):
    sampling = SamplingConfig(temperature=0.8, top_p=0.9, top_k=40, max_new_tokens=16, stop_strings=("e",))
    reference, cached = _both(tiny_policy, RolloutConfig(group_size=2, max_turns=4, sampling=sampling))
    assert any(s.info["finish_reason"] == "stop" for t in reference for s in t.steps)
    _assert_same(reference, cached)


def test_cached_rollout_equals_generate_across_a_context_overflow(tiny_policy):
    config = RolloutConfig(group_size=2, max_turns=6, max_context_tokens=360, history_steps=1,
                           sampling=SamplingConfig(max_new_tokens=24))
    reference, cached = _both(tiny_policy, config, tasks=1)
    assert sum(t.metadata["history_truncations"] for t in reference) > 0  # new segments: held caches dropped
    _assert_same(reference, cached)


def test_a_turn_feeds_only_the_ids_after_the_held_ones(tiny_policy):
    tokenizer, config = tiny_policy.tokenizer, SamplingConfig(max_new_tokens=6)
    shared = tokenizer.encode("You are in the middle of a room. Looking quickly around you, you see a drawer.")
    prompts = [shared + tokenizer.encode(f" Task {i}.") for i in range(2)] + [shared] * 2
    sampler = TurnCache(tiny_policy, config, min_shared_prefix=8)
    first = sampler([0, 1, 2, 3], prompts)
    # one group: the shared prefix (all but the shortest prompt's last id) is encoded once, not four times
    prefix = len(shared) - 1
    assert sampler.reused_tokens == 4 * prefix
    assert sampler.fed_tokens < prefix + sum(len(p) - prefix for p in prompts) + 4 * 6
    fed_before = sampler.fed_tokens
    observation = tokenizer.encode(" You see an apple.")
    follow_up = [list(p) + list(s.token_ids) + observation for p, s in zip(prompts, first)]
    sampler([1, 3], [follow_up[1], follow_up[3]])
    assert set(sampler.held) == {1, 3}  # episodes 0 and 2 ended: their caches are gone
    held_before = [len(prompts[i]) + min(len(first[i].token_ids), 5) for i in (1, 3)]  # the last sampled id is not fed
    assert sampler.reused_tokens == 4 * prefix + sum(held_before)
    new_ids = sum(len(follow_up[i]) for i in (1, 3)) - sum(held_before)
    assert sampler.fed_tokens - fed_before <= new_ids + 2 * 6


def test_a_prompt_that_does_not_extend_the_held_ids_reuses_only_the_common_part(tiny_policy):
    tokenizer, config = tiny_policy.tokenizer, SamplingConfig(temperature=0.0, max_new_tokens=5)
    prompt = tokenizer.encode("go to drawer 1 and open it, then take the apple from drawer 1")
    sampler = TurnCache(tiny_policy, config)
    sampler([7], [prompt])
    changed = prompt[:6] + tokenizer.encode(" cabinet 2")
    assert sampler([7], [changed])[0].token_ids == sample(tiny_policy, [changed], config)[0].token_ids
    assert sampler.reused_tokens == 6


def test_models_whose_cache_cannot_be_held_fall_back_to_generate(tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.use_sliding_window, config.sliding_window, config.max_window_layers = True, 16, 0
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    policy = load_policy(tiny_model_dir)
    policy.model.config = config
    assert not supports_turn_cache(policy.model)
    sampler = TurnCache(policy, SamplingConfig(max_new_tokens=4))
    prompts = [policy.tokenizer.encode("open drawer 1")]
    torch.manual_seed(3)
    expected = sample(policy, prompts, SamplingConfig(max_new_tokens=4))
    torch.manual_seed(3)
    assert sampler([0], prompts) == expected and sampler.held == {}
