"""credit.py: the advantage stage the trainer calls, for every method of the registry."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from algo_fixtures import byte_ids, make_group, tiny_qwen3, with_model_behaviour
from stepopsd.choices import ALGORITHM_NAMES
from stepopsd.algo.advantage import ADVANTAGE_METHODS, compute_advantages
from stepopsd.config import AlgorithmConfig
from stepopsd.trajectory import SpanKind


@pytest.fixture(scope="module")
def model():
    return tiny_qwen3(seed=0)


@pytest.fixture(scope="module")
def batch(model):
    """Group 0 mixed (2/4), group 1 all-success, group 2 mixed (1/4), group 3 all-fail; behaviour = the model."""
    groups = [make_group(0, [True, False, False, True]), make_group(1, [True] * 4),
              make_group(2, [False, True, False, False], num_steps=4), make_group(3, [False] * 4)]
    return [with_model_behaviour(model, traj) for group in groups for traj in group]


def _count_forwards(model):
    calls = []
    return calls, model.register_forward_pre_hook(lambda module, args: calls.append(1))


def test_grpo_never_runs_the_teacher(model, batch):
    calls, handle = _count_forwards(model)
    try:
        result = compute_advantages(batch, AlgorithmConfig(name="grpo"), teacher=model, tokenize=byte_ids)
    finally:
        handle.remove()
    assert calls == []
    assert compute_advantages(batch, AlgorithmConfig(name="grpo")).stats == result.stats  # no teacher needed at all
    # group 0 has R = [1, 0, 0, 1]: A = +-0.5 / std(unbiased 0.57735) = +-0.866025 on generated tokens only
    first = batch[0]
    trainable = torch.tensor(first.trainable_mask)
    assert_close(result.advantages[0], 0.866025 * trainable.float(), atol=1e-5, rtol=0)
    assert result.stats["adv/mixed_group_frac"] == 0.5 and result.stats["adv/zero_var_groups"] == 2.0


@pytest.mark.parametrize("name", sorted(ADVANTAGE_METHODS))
def test_every_method_gives_aligned_advantages_zero_off_generated_tokens(model, batch, name):
    result = compute_advantages(batch, AlgorithmConfig(name=name), teacher=model, tokenize=byte_ids, optimizer_step=3)
    assert len(result.advantages) == len(batch)
    for traj, advantages in zip(batch, result.advantages):
        assert advantages.shape == (len(traj.token_ids),) and advantages.dtype == torch.float32
        assert (advantages[~torch.tensor(traj.trainable_mask)] == 0).all()
    if name != "opd":  # opd's point is its dense signal where A = 0 (test_opd_rescores_uniform_groups_too)
        for advantages in result.advantages[4:8] + result.advantages[12:]:
            assert (advantages == 0).all()  # all-success and all-fail groups: no policy gradient


@pytest.mark.parametrize("name", ["stepopsd", "rlsd", "peer_diff"])
def test_sign_preserving_methods_keep_the_grpo_sign(model, batch, name):
    grpo = compute_advantages(batch, AlgorithmConfig(name="grpo")).advantages
    shaped = compute_advantages(batch, AlgorithmConfig(name=name, lambda_0=1.0, alpha_clip=0.9), teacher=model,
                                tokenize=byte_ids).advantages
    for plain, ours in zip(grpo, shaped):
        assert torch.equal(torch.sign(plain), torch.sign(ours))
    assert any(not torch.allclose(plain, ours) for plain, ours in zip(grpo, shaped))


def test_stepopsd_after_the_lambda_decay_is_grpo(model, batch):
    config = AlgorithmConfig(name="stepopsd", lambda_decay_steps=50)
    decayed = compute_advantages(batch, config, teacher=model, tokenize=byte_ids, optimizer_step=50)
    grpo = compute_advantages(batch, AlgorithmConfig(name="grpo"))
    for plain, ours in zip(grpo.advantages, decayed.advantages):
        assert_close(ours, plain, atol=1e-5, rtol=1e-5)  # the budget's 1e-6 epsilon is the only difference
    assert decayed.stats["shape/lambda"] == 0.0 and decayed.stats["delta/abs_mean_action"] > 0  # still diagnosed


def test_stepopsd_changes_only_target_tokens(model, batch):
    grpo = compute_advantages(batch, AlgorithmConfig(name="grpo")).advantages
    config = AlgorithmConfig(name="stepopsd", span_mode="action_only", lambda_0=1.0, step_budget="none")
    shaped = compute_advantages(batch, config, teacher=model, tokenize=byte_ids).advantages
    for traj, plain, ours in zip(batch, grpo, shaped):
        action_tokens = torch.zeros(len(traj.token_ids), dtype=torch.bool)
        for step in traj.steps:
            action_tokens[step.spans[1].token_start:step.spans[1].token_end] = True
        assert torch.equal(plain[~action_tokens], ours[~action_tokens])


def test_opd_is_additive(model, batch):
    grpo = compute_advantages(batch, AlgorithmConfig(name="grpo")).advantages
    beta_1 = compute_advantages(batch, AlgorithmConfig(name="opd", opd_beta=1.0), teacher=model, tokenize=byte_ids)
    beta_2 = compute_advantages(batch, AlgorithmConfig(name="opd", opd_beta=2.0), teacher=model, tokenize=byte_ids)
    for plain, one, two in zip(grpo, beta_1.advantages, beta_2.advantages):
        assert_close(two - plain, 2 * (one - plain), atol=1e-5, rtol=1e-4)  # A + beta * Delta


def test_hindsight_reaches_the_teacher(model, batch):
    stats = {mode: compute_advantages(batch, AlgorithmConfig(name="stepopsd", hindsight_mode=mode), teacher=model,
                                      tokenize=byte_ids).stats
             for mode in ("none", "peer_trajectory")}
    # behaviour log-probs come from this very model: with no hindsight the gap is ~0
    assert stats["none"]["delta/abs_mean_target"] < 1e-5
    assert stats["peer_trajectory"]["delta/abs_mean_target"] > 1e-3
    # the 5 failed members of mixed groups (2 in group 0, 3 in group 2) of 16 trajectories get the peer block
    assert stats["peer_trajectory"]["hindsight/frac_with_peer"] == 5 / 16
    assert stats["peer_trajectory"]["rescore/trajectories"] == 8.0  # the two uniform groups are skipped


def test_diagnostics_are_reported(model, batch):
    stats = compute_advantages(batch, AlgorithmConfig(name="stepopsd", span_mode="clean_step"), teacher=model,
                               tokenize=byte_ids, optimizer_step=10).stats
    for key in ("delta/abs_mean_thought", "delta/abs_mean_action", "delta/abs_mean_other", "shape/weight_clip_frac",
                "budget/factor_mean", "budget/clip_frac", "hindsight/frac_with_peer", "adv/mixed_group_frac",
                "adv/zero_var_groups"):
        assert key in stats
    assert stats["shape/lambda"] == pytest.approx(0.16)  # 0.2 * (1 - 10 / 50)
    assert 0.5 <= stats["budget/factor_mean"] <= 2.0 and stats["budget/steps"] == 4 * 3 + 4 * 4  # group 0: 4 x 3 steps, group 2: 4 x 4
    assert 0.0 <= stats["shape/weight_clip_frac"] <= 1.0


def test_window_mode_end_to_end(model):
    batch = [with_model_behaviour(model, t) for t in make_group(0, [True, False, False], window=True)]
    result = compute_advantages(batch, AlgorithmConfig(name="stepopsd"), teacher=model, tokenize=byte_ids)
    assert result.stats["rescore/trajectories"] == 3.0 and result.stats["delta/abs_mean_target"] > 1e-3


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="algorithm.name"):
        AlgorithmConfig(name="ppo")
    with pytest.raises(ValueError, match="algorithm.span_mode"):
        AlgorithmConfig(span_mode="everything")


def test_config_accepts_exactly_the_registered_methods():
    assert ALGORITHM_NAMES == tuple(ADVANTAGE_METHODS)


def test_teacher_methods_need_a_teacher(batch):
    with pytest.raises(ValueError, match="teacher"):
        compute_advantages(batch, AlgorithmConfig(name="stepopsd"), tokenize=byte_ids)


def test_opd_rescores_uniform_groups_too(model, batch):
    result = compute_advantages(batch, AlgorithmConfig(name="opd", opd_beta=1.0), teacher=model, tokenize=byte_ids)
    assert result.stats["rescore/trajectories"] == 16.0  # every trajectory, not only the 8 of mixed groups
    for advantages, delta in zip(result.advantages[4:8] + result.advantages[12:], result.deltas[4:8] + result.deltas[12:]):
        assert delta.abs().sum() > 0  # A = 0 there: the correctness line alone moves the teacher
        assert_close(advantages, delta)  # A + 1.0 * Delta with A = 0


def _with_mistakes(batch, mistakes: dict[str, int]):
    """Each listed trajectory's step ``k`` labelled info["mistake"] = True, every other step False."""
    labelled = []
    for traj in batch:
        steps = tuple(dataclasses.replace(step, info={**step.info, "mistake": mistakes.get(traj.trajectory_id) == step.index})
                      for step in traj.steps)
        labelled.append(dataclasses.replace(traj, steps=steps))
    return labelled


def test_oracle_puts_the_failed_trajectorys_extra_blame_on_its_labelled_step(batch):
    # g0/1 failed in the mixed group 0 (A < 0); its step 1 is labelled the mistake
    labelled = _with_mistakes(batch, {"g0/1": 1})
    config = AlgorithmConfig(name="oracle", step_budget="conserved_step_share", lambda_0=1.0, alpha_clip=0.5)
    result = compute_advantages(labelled, config)
    traj, advantages, delta = labelled[1], result.advantages[1], result.deltas[1]
    assert result.outcome_advantages[1] < 0
    per_step = []
    for step in traj.steps:
        action = step.span(SpanKind.ACTION)
        per_step.append(advantages[action.token_start:action.token_end].mean().item())
        expected_delta = -config.oracle_gap if step.index == 1 else 0.0
        assert (delta[action.token_start:action.token_end] == expected_delta).all()
    assert per_step[1] < per_step[0] < 0 and per_step[1] < per_step[2] < 0  # more blame on the mistake
    grpo = compute_advantages(labelled, AlgorithmConfig(name="grpo")).advantages
    for ours, plain in zip(result.advantages[2:], grpo[2:]):  # unlabelled trajectories: delta 0, budget only
        assert torch.equal(torch.sign(ours), torch.sign(plain))


def test_teacher_equal_to_the_policy_without_hindsight_gives_zero_delta_at_any_temperature(model):
    from algo_fixtures import make_group
    for temperature in (1.0, 0.7):
        batch = [with_model_behaviour(model, t, temperature=temperature) for t in make_group(0, [True, False])]
        result = compute_advantages(batch, AlgorithmConfig(name="stepopsd", hindsight_mode="none"), teacher=model,
                                    tokenize=byte_ids, temperature=temperature)
        assert result.stats["rescore/trajectories"] == 2.0
        assert result.stats["delta/abs_mean_target"] < 1e-5, temperature
    untempered = compute_advantages(batch, AlgorithmConfig(name="stepopsd", hindsight_mode="none"), teacher=model,
                                    tokenize=byte_ids, temperature=1.0)
    assert untempered.stats["delta/abs_mean_target"] > 1e-2  # behaviour at T = 0.7 scored at T = 1: biased


def _two_step(member: int, observations: list[str], rewards: list[float]):
    from algo_fixtures import make_trajectory
    traj = make_trajectory("Task: put a mug on the desk.", [("look", "go to desk", observations[0]),
                                                           ("place", "put mug", observations[1])],
                           success=rewards[-1] > 0, group_id=0, trajectory_id=f"g0/{member}", seed=member)
    steps = tuple(dataclasses.replace(step, reward=r) for step, r in zip(traj.steps, rewards))
    return dataclasses.replace(traj, steps=steps, reward=sum(rewards))


def test_gigpo_compares_steps_taken_from_the_same_state():
    # one group of 2, 2 steps each, the same prompt (anchor of step 0) and the same first observation
    # (anchor of step 1). Member 0 wins at step 1 (reward 1): returns [0.95, 1.0]; member 1 fails: [0, 0].
    # Anchors of 2 with returns (0.95, 0) and (1, 0): unbiased std = |x| / sqrt(2), A_step = +-0.7071 each.
    # A_episode = +-0.7071 too, so member 0 gets 1.4142 on every generated token, member 1 -1.4142.
    won = _two_step(0, ["You see a mug.", "Done."], [0.0, 1.0])
    lost = _two_step(1, ["You see a mug.", "Nothing."], [0.0, 0.0])
    result = compute_advantages([won, lost], AlgorithmConfig(name="gigpo"))
    for traj, advantages, sign in zip([won, lost], result.advantages, [1.0, -1.0]):
        for step in traj.steps:
            values = advantages[step.response_token_start:step.response_token_end]
            assert_close(values, torch.full_like(values, sign * 2 * 0.707106), atol=1e-4, rtol=0)
    # different first observations: the step-1 anchors have one member each -> A_step = 0 there
    apart = _two_step(1, ["You see a cup.", "Nothing."], [0.0, 0.0])
    result = compute_advantages([won, apart], AlgorithmConfig(name="gigpo"))
    step = won.steps[1]
    values = result.advantages[0][step.response_token_start:step.response_token_end]
    assert_close(values, torch.full_like(values, 0.707106), atol=1e-4, rtol=0)


def test_methods_carry_their_facts_and_a_teacher_method_asks_for_its_teacher():
    batch = make_group(0, [True, False])
    assert {name for name, method in ADVANTAGE_METHODS.items() if method.uses_lambda} == {"stepopsd", "rlsd", "oracle", "peer_diff"}
    assert {name for name, method in ADVANTAGE_METHODS.items() if method.uses_teacher} == {"stepopsd", "rlsd", "opd"}
    assert {name for name, method in ADVANTAGE_METHODS.items() if method.reads_labels} == {"oracle", "oracle_signed"}
    with pytest.raises(ValueError, match="'stepopsd' rescores trajectories with a teacher"):
        compute_advantages(batch, AlgorithmConfig(name="stepopsd"))


def _verl_agent_episode_rows(rewards, groups, steps):
    """verl-agent's episode part with compute_mean_std_cross_steps, from its formula: every step row
    carries its episode's score; per group mean and unbiased std over the rows; a group of one row
    takes mean 0 and std 1; (score - mean) / (std + 1e-6)."""
    rows = {}
    for reward, group, count in zip(rewards, groups, steps):
        rows.setdefault(group, []).extend([reward] * count)
    out = []
    for reward, group in zip(rewards, groups):
        values = torch.tensor(rows[group], dtype=torch.float64)
        mean, std = (0.0, 1.0) if len(values) == 1 else (values.mean().item(), values.std().item())
        out.append((reward - mean) / (std + 1e-6))
    return torch.tensor(out, dtype=torch.float32)


def test_gigpo_step_rows_episode_part_is_verl_agents_default():
    from stepopsd.algo.gigpo import step_row_episode_advantages

    # group 0: a 1-step win and a 3-step failure -> rows [1, 0, 0, 0]: mean 0.25, std 0.5 -> +1.5, -0.5
    # (per trajectory: +-0.7071); group 1: one trajectory of one step -> its raw reward;
    # group 2: one trajectory of two steps -> rows [1, 1], std 0 -> 0
    rewards, groups, steps = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 0.0], [0, 0, 1, 2, 3, 3, 3], [1, 3, 1, 2, 2, 5, 1]
    got = step_row_episode_advantages(torch.tensor(rewards), torch.tensor(groups), torch.tensor(steps))
    assert_close(got, _verl_agent_episode_rows(rewards, groups, steps))
    assert_close(got[:4], torch.tensor([1.5, -0.5, 1.0, 0.0]), atol=1e-5, rtol=0)


def test_gigpo_episode_norm_switches_the_episode_part_only():
    won = _two_step(0, ["You see a mug.", "Done."], [0.0, 1.0])
    lost = _two_step(1, ["You see a mug.", "Nothing."], [0.0, 0.0])
    short = dataclasses.replace(won, steps=won.steps[:1], trajectory_id="g0/2")  # one row, reward 1 kept
    per_trajectory = compute_advantages([won, lost, short], AlgorithmConfig(name="gigpo"))
    per_rows = compute_advantages([won, lost, short], AlgorithmConfig(name="gigpo", gigpo_episode_norm="step_rows"))
    episode_rows = _verl_agent_episode_rows([1.0, 0.0, 1.0], [0, 0, 0], [2, 2, 1])
    episode_trajectories = per_trajectory.outcome_advantages  # GRPO's, per trajectory
    for b, traj in enumerate([won, lost, short]):
        step = traj.steps[0]
        difference = (per_rows.advantages[b] - per_trajectory.advantages[b])[step.response_token_start]
        assert_close(difference, episode_rows[b] - episode_trajectories[b], atol=1e-5, rtol=0)


def test_the_lambda_schedule_can_count_iterations_from_one_as_the_authors_code():
    # lambda_0 = 0.2, decay over 50: at iteration 1 the author's schedule gives 0.2 * (1 - 1/50) = 0.196,
    # ours by optimizer steps gives 0.2 at step 0 (one iteration late at one step per iteration)
    batch = make_group(0, [True, False])
    by_steps = compute_advantages(batch, AlgorithmConfig(name="oracle"), optimizer_step=0, iteration=1)
    by_iterations = compute_advantages(batch, AlgorithmConfig(name="oracle", lambda_schedule_unit="iteration"),
                                       optimizer_step=0, iteration=1)
    assert by_steps.stats["shape/lambda"] == pytest.approx(0.2)
    assert by_iterations.stats["shape/lambda"] == pytest.approx(0.196)


def _decisive_labels(batch, labels: dict[str, dict[int, bool]]):
    """Listed trajectories' steps labelled {step: mistake?} as decisive steps; every other step ordinary."""
    labelled = []
    for traj in batch:
        marks = labels.get(traj.trajectory_id, {})
        steps = tuple(dataclasses.replace(step, info={**step.info, "decisive": step.index in marks,
                                                      "mistake": marks.get(step.index, False)})
                      for step in traj.steps)
        labelled.append(dataclasses.replace(traj, steps=steps))
    return labelled


def test_the_full_strength_oracle_is_two_sided():
    # g0/1 failed: step 1 a wrong take (mistake), step 2 a right one (harmless decisive), step 0 ordinary
    labelled = _decisive_labels(make_group(0, [True, False]), {"g0/1": {1: True, 2: False}})
    config = AlgorithmConfig(name="oracle", oracle_sides="two_sided", lambda_0=1.0, alpha_clip=0.95,
                             lambda_decay_steps=0, step_budget="conserved_step_share")
    result = compute_advantages(labelled, config)
    traj, delta, advantages = labelled[1], result.deltas[1], result.advantages[1]
    spans = [step.span(SpanKind.ACTION) for step in traj.steps]
    for span, expected in zip(spans, [0.0, -config.oracle_gap, config.oracle_gap]):
        assert (delta[span.token_start:span.token_end] == expected).all()
    per_token = [advantages[span.token_start:span.token_end].mean().item() for span in spans]
    # A < 0: w = clip(2 sigmoid(-A/|A| * Delta)) = 1.95 on the mistake, 0.05 on the right take, 1 elsewhere
    assert per_token[1] < per_token[0] < per_token[2] < 0
    one_sided = compute_advantages(labelled, dataclasses.replace(config, oracle_sides="mistakes")).deltas[1]
    assert (one_sided[spans[2].token_start:spans[2].token_end] == 0).all()


def test_the_signed_oracle_adds_a_step_reward_that_may_flip_signs():
    labelled = _decisive_labels(make_group(0, [True, False]), {"g0/1": {1: True, 2: False}, "g0/0": {0: False}})
    result = compute_advantages(labelled, AlgorithmConfig(name="oracle_signed", oracle_step_reward=2.0))
    a_won, a_lost = result.outcome_advantages.tolist()  # +0.7071, -0.7071
    for traj, advantages, outcome, rewards in [(labelled[0], result.advantages[0], a_won, [2.0, 0.0, 0.0]),
                                               (labelled[1], result.advantages[1], a_lost, [0.0, -2.0, 2.0])]:
        for step, reward in zip(traj.steps, rewards):
            values = advantages[step.response_token_start:step.response_token_end]
            generated = torch.tensor(traj.trainable_mask[step.response_token_start:step.response_token_end])
            assert_close(values[generated], torch.full((int(generated.sum()),), outcome + reward))
    assert result.stats["oracle/labelled_step_frac"] == pytest.approx(3 / 6)


# ------------------------------------------------------------------ hindsight_for and the peer_diff Delta

def test_the_default_hindsight_is_for_failures_and_failed_and_won_changes_only_wins_with_another_win(model, batch):
    def run(**fields):
        return compute_advantages(batch, AlgorithmConfig(name="stepopsd", **fields), teacher=model, tokenize=byte_ids)

    default, explicit, won_too = run(), run(hindsight_for="failed"), run(hindsight_for="failed_and_won")
    assert all(torch.equal(a, b) for a, b in zip(default.advantages + default.deltas, explicit.advantages + explicit.deltas))
    assert default.stats == explicit.stats
    for b, traj in enumerate(batch):
        changed = not torch.equal(default.deltas[b], won_too.deltas[b])
        # group 0 holds two wins (each gets the other); group 2's win is alone; group 1 is not rescored (A = 0)
        assert changed == (traj.success and traj.group_id == 0), traj.trajectory_id
        if not traj.success:
            assert torch.equal(default.advantages[b], won_too.advantages[b])
    assert won_too.stats["hindsight/frac_with_peer"] > default.stats["hindsight/frac_with_peer"]


def _action_turns(actions):
    return [(f"think {k}", action, f"You did {action}.") for k, action in enumerate(actions)]


def _peer_and_failure():
    """A win [go, take 2, deliver] and a failure [go, take 1, deliver, look] of one group: the failure's
    step 1 differs from its peer's, step 3 has no peer step, steps 0 and 2 are the peer's."""
    from algo_fixtures import make_trajectory

    win = make_trajectory("P", _action_turns(["go", "take 2", "deliver"]), success=True, trajectory_id="w")
    failure = make_trajectory("P", _action_turns(["go", "take 1", "deliver", "look"]), success=False, trajectory_id="f")
    return win, failure


def test_peer_diff_delta_is_minus_the_gap_on_steps_that_left_the_peer_and_zero_elsewhere():
    from stepopsd.algo.peer_diff import differing_steps, peer_diff_delta
    from stepopsd.algo.rescore import right_pad
    from stepopsd.algo.segment import target_mask_and_step_ids

    win, failure = _peer_and_failure()
    assert differing_steps(failure, win) == [False, True, False, True]
    segmented = [target_mask_and_step_ids(t, "action_only") for t in (win, failure)]
    width = len(failure.token_ids)
    target_mask = right_pad([m for m, _ in segmented], width, False)  # [2, T]
    step_ids = right_pad([i for _, i in segmented], width, -1)  # [2, T]
    delta = peer_diff_delta([win, failure], step_ids, target_mask, gap=5.0)  # [2, T]
    assert (delta[0] == 0).all()  # a win has no peer under the default hindsight_for
    for step in failure.steps:
        action = step.span(SpanKind.ACTION)
        expected = -5.0 if step.index in (1, 3) else 0.0
        assert (delta[1, action.token_start:action.token_end] == expected).all()
    assert delta[1][~target_mask[1]].eq(0).all()


def test_peer_diff_shapes_as_stepopsd_hand_worked():
    win, failure = _peer_and_failure()
    config = AlgorithmConfig(name="peer_diff", step_budget="none", lambda_0=0.2, alpha_clip=0.2)
    result = compute_advantages([win, failure], config)
    # R = [1, 0]: A = -+0.5 / 0.707107 = -+0.707107. Failure, Delta = -5 on steps 1 and 3:
    # w = clip(2 sigmoid(5), 0.8, 1.2) = 1.2, A~ = -0.707107 * (0.8 + 0.2 * 1.2) = -0.735391; steps 0, 2 keep A
    for step in failure.steps:
        action = step.span(SpanKind.ACTION)
        values = result.advantages[1][action.token_start:action.token_end]
        expected = -0.735391 if step.index in (1, 3) else -0.707107
        assert_close(values, torch.full_like(values, expected), atol=1e-5, rtol=0)
    assert ADVANTAGE_METHODS["peer_diff"].uses_teacher is False and not ADVANTAGE_METHODS["peer_diff"].reads_labels


def test_peer_diff_gives_a_win_less_credit_where_it_left_its_cleaner_peer_and_keeps_every_sign():
    from algo_fixtures import make_trajectory

    clean = make_trajectory("P", _action_turns(["go", "take 2", "deliver"]), success=True, trajectory_id="c")
    slip = make_trajectory("P", _action_turns(["go", "take 1", "return 1", "take 2", "deliver"]), success=True,
                           trajectory_id="s")
    failure = make_trajectory("P", _action_turns(["go", "take 3"]), success=False, trajectory_id="f")
    batch = [clean, slip, failure]
    config = AlgorithmConfig(name="peer_diff", hindsight_for="failed_and_won", step_budget="conserved_step_share",
                             lambda_0=1.0, alpha_clip=0.9)
    result = compute_advantages(batch, config)
    grpo = compute_advantages(batch, AlgorithmConfig(name="grpo")).advantages
    for ours, plain in zip(result.advantages, grpo):
        assert torch.equal(torch.sign(ours), torch.sign(plain))
    per_step = [result.advantages[1][s.span(SpanKind.ACTION).token_start:s.span(SpanKind.ACTION).token_end].mean().item()
                for s in slip.steps]
    assert 0 < max(per_step[1:]) < per_step[0]  # the slip's peer is the clean win: step 0 alone matches it
    assert (result.deltas[0] != 0).any()  # the clean win's peer is the slip (the only other win) from step 1 on
