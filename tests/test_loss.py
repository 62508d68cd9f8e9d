"""loss.py: PPO-clip with per-token advantages, token mean, k3 KL, entropy."""

import math

import torch
from torch.testing import assert_close

from stepopsd.algo.loss import k3_kl, policy_loss, token_entropy, token_weights

# four trainable tokens and one padding token:
#   a: ratio 1,   A = +1 -> -1                      (not clipped)
#   b: ratio 1.5, A = +1 -> -min(1.5, 1.2) = -1.2   (clipped)
#   c: ratio 0.5, A = -1 -> -min(-0.5, -0.8) = 0.8  (clipped)
#   d: ratio 1.5, A = -2 -> -min(-3, -2.4) = 3      (not clipped)
# token mean (-1 - 1.2 + 0.8 + 3) / 4 = 0.4, clip fraction 2/4
OLD = torch.log(torch.tensor([[0.5, 0.2, 0.4, 0.2, 0.3]]))
NEW_PROBS = torch.tensor([[0.5, 0.3, 0.2, 0.3, 0.9]])
ADVANTAGES = torch.tensor([[1.0, 1.0, -1.0, -2.0, 5.0]])
MASK = torch.tensor([[True, True, True, True, False]])


def test_ppo_clip_hand_worked():
    logprobs = torch.log(NEW_PROBS).requires_grad_()
    loss, stats = policy_loss(logprobs, OLD, ADVANTAGES, MASK)
    assert_close(loss, torch.tensor(0.4))
    assert stats["loss/clip_frac"] == 0.5 and stats["loss/tokens"] == 4.0
    loss.backward()
    # d loss / d logp = -A * ratio / 4 where unclipped, 0 where clipped or masked
    assert_close(logprobs.grad, torch.tensor([[-0.25, 0.0, 0.0, 0.75, 0.0]]))


def test_num_tokens_makes_micro_batches_sum_to_the_full_batch():
    logprobs = torch.log(NEW_PROBS)
    full, _ = policy_loss(logprobs, OLD, ADVANTAGES, MASK)
    halves = [policy_loss(logprobs[:, cols], OLD[:, cols], ADVANTAGES[:, cols], MASK[:, cols], num_tokens=4)[0]
              for cols in (slice(0, 2), slice(2, 5))]
    assert_close(halves[0] + halves[1], full)


def test_trajectory_mean_weighs_every_trajectory_the_same():
    # trajectory 0: two rows, 3 + 1 trainable tokens; trajectory 1: one row, 2 tokens
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    rows = torch.tensor([0, 0, 1])
    assert torch.equal(token_weights(mask, rows, "token_mean"), mask.float())
    weights = token_weights(mask, rows, "trajectory_mean")
    assert_close(weights, torch.tensor([[0.25, 0.25, 0.25, 0], [0.25, 0, 0, 0], [0, 0.5, 0.5, 0]]))
    # a long failure (A = -1 on 4 tokens) against a short success (A = +1 on 2 tokens): the token
    # mean pushes a token both share down on balance, the trajectory mean leaves it balanced
    logprobs = torch.zeros(3, 4, requires_grad=True)
    advantages = torch.tensor([[-1.0] * 4, [-1.0] * 4, [1.0] * 4])
    for aggregation, net in (("token_mean", -2 / 6), ("trajectory_mean", 0.0)):
        loss, _ = policy_loss(logprobs, torch.zeros(3, 4), advantages, mask, weights=token_weights(mask, rows, aggregation))
        grad, = torch.autograd.grad(loss, logprobs)
        assert_close(-grad.sum(), torch.tensor(net))  # total push up on log-probs


def test_k3_kl_hand_worked_and_in_the_loss():
    # ref - logp = log 2: 2 - log 2 - 1 = 0.306853; equal log-probs: 0
    logprobs = torch.log(torch.tensor([[0.25, 0.5]]))
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    assert_close(k3_kl(logprobs, ref), torch.tensor([[1 - math.log(2), 0.0]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = policy_loss(logprobs, logprobs, torch.zeros(1, 2), mask, ref_logprobs=ref, kl_coef=0.1)
    assert_close(loss, torch.tensor(0.1 * (1 - math.log(2)) / 2))
    assert stats["loss/kl_ref"] == stats["loss/kl_ref"] and abs(stats["loss/kl_ref"] - 0.153426) < 1e-5


def test_entropy_bonus():
    # uniform next-token distributions over 4 symbols: entropy log 4 at every position but the first
    entropy = token_entropy(torch.zeros(1, 3, 4))
    assert_close(entropy, torch.tensor([[0.0, math.log(4), math.log(4)]]))
    mask = torch.tensor([[False, True, True]])
    loss, stats = policy_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), mask,
                              entropy=entropy, entropy_coef=0.01)
    assert_close(loss, torch.tensor(-0.01 * math.log(4)))
    assert abs(stats["loss/entropy"] - math.log(4)) < 1e-6


def test_zero_advantage_gives_zero_policy_gradient():
    logprobs = torch.log(NEW_PROBS).requires_grad_()
    loss, _ = policy_loss(logprobs, OLD, torch.zeros_like(ADVANTAGES), MASK)
    loss.backward()
    assert (logprobs.grad == 0).all()
