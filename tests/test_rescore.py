"""rescore.py (Eq. 2) on a tiny random Qwen3: the shared-prefix path equals one forward per window;
teacher.py: the stale teacher really is stale."""

from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from algo_fixtures import byte_ids, make_group, tiny_qwen3, with_model_behaviour
from stepopsd.algo.rescore import (
    ScoreWindow, context_windows, logprob_gap, step_windows, teacher_logprobs, teacher_logprobs_naive,
)
from stepopsd.algo.segment import target_mask_and_step_ids
from stepopsd.algo.teacher import Teacher, refresh_due

HINDSIGHT = byte_ids("<hindsight>\nfinal_correctness: incorrect\n<peer_correct_trajectory>\nstep 1\naction: go\n"
                     "</peer_correct_trajectory>\n</hindsight>\n")


@pytest.fixture(scope="module")
def model():
    return tiny_qwen3(seed=0)


def _forward_counter(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("window_mode", [False, True])
@pytest.mark.parametrize("hindsight", [HINDSIGHT, []], ids=["hindsight", "no-hindsight"])
@pytest.mark.parametrize("make_windows", [step_windows, context_windows])
def test_efficient_path_matches_one_forward_per_window(model, window_mode, hindsight, make_windows):
    traj = make_group(0, [False], num_steps=5, window=window_mode, seed=1)[0]
    target_mask, _ = target_mask_and_step_ids(traj, "action_only")
    windows = make_windows(traj, target_mask)
    fast, fast_scored = teacher_logprobs(model, traj.token_ids, windows, hindsight)
    slow, slow_scored = teacher_logprobs_naive(model, traj.token_ids, windows, hindsight)
    assert torch.equal(fast_scored, slow_scored) and fast_scored.sum() > 0
    assert_close(fast, slow, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window_mode", [False, True])
def test_chunked_rows_and_eager_attention_agree(model, window_mode):
    traj = make_group(0, [False], num_steps=5, seed=2, window=window_mode)[0]
    windows = step_windows(traj, target_mask_and_step_ids(traj, "clean_step")[0])
    reference, _ = teacher_logprobs_naive(model, traj.token_ids, windows, HINDSIGHT)
    chunked, _ = teacher_logprobs(model, traj.token_ids, windows, HINDSIGHT, max_rows_per_pass=2)
    assert_close(chunked, reference, atol=1e-5, rtol=0)
    eager = tiny_qwen3(seed=0, attn_implementation="eager")
    eager_fast, _ = teacher_logprobs(eager, traj.token_ids, windows, HINDSIGHT)
    assert_close(eager_fast, reference, atol=1e-5, rtol=0)


class _PastKeyValuesModel(torch.nn.Module):
    """A causal LM whose forward predates transformers' ``cache`` argument (and output field)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                logits_to_keep=0):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            cache=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)
        return SimpleNamespace(logits=output.logits, past_key_values=output.cache)


def test_a_model_with_the_older_cache_argument_name_scores_the_same(model):
    traj = make_group(0, [False], num_steps=4, seed=4)[0]
    windows = step_windows(traj, target_mask_and_step_ids(traj, "clean_step")[0])
    current, _ = teacher_logprobs(model, traj.token_ids, windows, HINDSIGHT)
    older, _ = teacher_logprobs(_PastKeyValuesModel(model), traj.token_ids, windows, HINDSIGHT)
    assert torch.equal(current, older)


def test_forward_passes_are_shared_not_per_step(model):
    full = make_group(0, [False], num_steps=6, seed=3)[0]
    windowed = make_group(0, [False], num_steps=6, window=True, seed=3)[0]
    calls, handle = _forward_counter(model)
    try:
        teacher_logprobs(model, full.token_ids, step_windows(full, target_mask_and_step_ids(full, "action_only")[0]), HINDSIGHT)
        assert len(calls) == 2  # one prefix forward + one batched pass over the 6 hindsight rows
        calls.clear()
        teacher_logprobs(model, full.token_ids, step_windows(full, target_mask_and_step_ids(full, "action_only")[0]))
        assert len(calls) == 1  # no hindsight: the prefix forward scores every step
        calls.clear()
        windows = step_windows(windowed, target_mask_and_step_ids(windowed, "action_only")[0])
        teacher_logprobs(model, windowed.token_ids, windows, HINDSIGHT)
        assert len(calls) == 2  # six windows: their shared prompt once, then one padded batch on its cache
        calls.clear()
        teacher_logprobs_naive(model, windowed.token_ids, windows, HINDSIGHT)
        assert len(calls) == 6
    finally:
        handle.remove()


@pytest.mark.parametrize("window_mode", [False, True])
def test_gap_is_zero_when_the_teacher_is_the_behaviour_policy_without_hindsight(model, window_mode):
    traj = with_model_behaviour(model, make_group(0, [False], num_steps=4, window=window_mode, seed=4)[0])
    target_mask, _ = target_mask_and_step_ids(traj, "clean_step")
    logprobs, scored = teacher_logprobs(model, traj.token_ids, step_windows(traj, target_mask))
    delta = logprob_gap(logprobs, torch.tensor(traj.behaviour_logprobs), target_mask & scored)
    assert delta.abs().max() < 1e-5
    with_hindsight, _ = teacher_logprobs(model, traj.token_ids, step_windows(traj, target_mask), HINDSIGHT)
    gap = logprob_gap(with_hindsight, torch.tensor(traj.behaviour_logprobs), target_mask)
    assert gap.abs().max() > 1e-3  # the hindsight block really is in the teacher's context
    assert not gap.requires_grad


def test_windows():
    traj = make_group(0, [False], num_steps=3, seed=5)[0]
    target_mask, _ = target_mask_and_step_ids(traj, "final_answer_only")
    last = traj.steps[-1]
    assert step_windows(traj, target_mask) == [ScoreWindow(0, last.response_token_start, last.response_token_end)]
    target_mask, _ = target_mask_and_step_ids(traj, "whole_response")
    first = traj.steps[0]
    assert context_windows(traj, target_mask) == [ScoreWindow(0, first.response_token_start, last.response_token_end)]


def test_logprob_gap_hand_worked():
    # teacher - behaviour on the mask: -1 - (-3) = 2; -2 - (-0.5) = -1.5; unmasked -> 0
    gap = logprob_gap(torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-3.0, -0.5, -1.0]), torch.tensor([True, True, False]))
    assert gap.tolist() == [2.0, -1.5, 0.0]


def test_a_window_with_no_context_and_no_hindsight_is_refused(model):
    with pytest.raises(ValueError, match="neither context nor hindsight"):
        teacher_logprobs(model, [1, 2, 3], [ScoreWindow(0, 0, 3)])


# ----------------------------------------------------------------------------- teacher.py


def _policy_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_stale_teacher_is_stale_until_refreshed():
    policy = tiny_qwen3(seed=1)
    teacher = Teacher(policy, mode="stale", refresh_steps=2)
    ids = torch.tensor([byte_ids("hello teacher")])
    assert torch.equal(_policy_logits(teacher.model, ids), _policy_logits(policy, ids))  # step 0: the initial model
    assert not any(p.requires_grad for p in teacher.model.parameters())
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    policy.train()
    policy(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    policy.eval()
    assert not teacher.sync(1)  # one step old: not due yet
    assert not torch.allclose(_policy_logits(teacher.model, ids), _policy_logits(policy, ids), atol=1e-4)
    assert teacher.sync(2)
    assert torch.equal(_policy_logits(teacher.model, ids), _policy_logits(policy, ids))
    assert teacher.model is not policy


def test_live_teacher_is_the_policy():
    policy = tiny_qwen3(seed=1)
    teacher = Teacher(policy, mode="live")
    assert teacher.model is policy and not teacher.sync(100)


def test_refresh_schedule():
    assert [refresh_due(step, 0, 10) for step in (0, 9, 10, 11)] == [False, False, True, True]
    with pytest.raises(ValueError, match="teacher_mode"):
        Teacher(tiny_qwen3(), mode="ema")
