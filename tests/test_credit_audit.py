"""credit_audit.py: blame-ranking AUCs on hand-made trajectories with known answers."""

import dataclasses

import pytest
import torch

from algo_fixtures import byte_ids, make_group, tiny_qwen3, with_model_behaviour
from stepopsd.config import AlgorithmConfig
from stepopsd.lab.credit_audit import (audit_credit, audited_trajectories, clip_table, ranking_auc, shaped_step_credit,
                                   step_auc, step_means)
from stepopsd.lab.stats import bootstrap_ci


def _labelled(group, mistakes: dict[str, int]):
    """Every step labelled: info["mistake"] True on the listed trajectory's step, False elsewhere."""
    out = []
    for traj in group:
        steps = tuple(dataclasses.replace(s, info={**s.info, "mistake": mistakes.get(traj.trajectory_id) == s.index})
                      for s in traj.steps)
        out.append(dataclasses.replace(traj, steps=steps))
    return out


def test_ranking_auc_hand_worked():
    # positives 0.8 and 0.3, negatives 0.5, 0.3, 0.1: 0.8 beats all 3; 0.3 beats 0.1, ties 0.3 -> (3 + 1.5) / 6
    assert ranking_auc([0.8, 0.3, 0.5, 0.3, 0.1], [True, True, False, False, False]) == pytest.approx(0.75)
    assert ranking_auc([1.0, 2.0], [True, True]) is None


def test_bootstrap_ci_brackets_the_mean():
    low, high = bootstrap_ci([0.0, 1.0] * 20)
    assert low < 0.5 < high and 0.2 < low and high < 0.8


def test_only_failed_members_of_mixed_groups_with_both_labels_are_audited():
    mixed = _labelled(make_group(0, [True, False, False]), {"g0/1": 2})  # g0/2 failed but has no mistake label
    uniform = _labelled(make_group(1, [False, False]), {"g1/0": 0, "g1/1": 0})
    assert [t.trajectory_id for t in audited_trajectories(mixed + uniform)] == ["g0/1"]


def test_peer_diff_blames_the_steps_whose_action_differs_from_the_peers():
    """The model-free baseline a teacher must beat: each failure differs from its group's first win at one step."""
    def copying(traj, peer, differing: int):
        steps = tuple(dataclasses.replace(s, action=peer.steps[s.index].action + ("?" if s.index == differing else ""))
                      for s in traj.steps)
        return dataclasses.replace(traj, steps=steps)

    win, lost_a, lost_b = make_group(0, [True, False, False], num_steps=4)
    batch = [win, copying(lost_a, win, 2), copying(lost_b, win, 0)]
    labelled = _labelled(batch, {"g0/1": 2, "g0/2": 1})  # g0/2's label is not where it differs
    result = audit_credit(labelled, AlgorithmConfig())
    per_trajectory = result.per_trajectory["peer_diff"]["delta"]
    assert per_trajectory == [1.0, 1 / 3]  # g0/1: the one differing step is its mistake; g0/2: it ranks below
    assert result.table["grpo"]["delta"]["mean"] == 0.5


def test_oracle_ranks_the_mistake_first_and_the_paper_budget_erases_it():
    batch = _labelled(make_group(0, [True, False, False], num_steps=4), {"g0/1": 2, "g0/2": 0})
    batch += _labelled(make_group(1, [False, True], num_steps=3), {"g1/0": 1})
    result = audit_credit(batch, AlgorithmConfig(alpha_clip=0.2, lambda_0=0.2))
    assert result.num_audited == 3
    oracle, grpo = result.table["oracle"], result.table["grpo"]
    for column in ("delta", "none", "conserved_step_share"):
        assert oracle[column]["mean"] == 1.0 and oracle[column]["n"] == 3
    assert oracle["equal_step_mean_abs"]["mean"] == 0.5  # every step rescaled to one mean: all tie
    assert all(grpo[column]["mean"] == 0.5 for column in grpo)


def test_teacher_arms_run_and_the_no_hindsight_control_is_uninformative():
    model = tiny_qwen3()
    batch = [with_model_behaviour(model, t) for t in make_group(0, [True, False, False], num_steps=3)]
    batch += [with_model_behaviour(model, t) for t in make_group(1, [False, True], num_steps=3)]
    batch = _labelled(batch, {"g0/1": 1, "g0/2": 2, "g1/0": 0})
    result = audit_credit(batch, AlgorithmConfig(), teacher=model, tokenize=byte_ids)
    assert set(result.table) == {"grpo", "oracle", "peer_diff", "gigpo", "none", "correctness", "peer_trajectory",
                                 "other_group_peer"}
    assert result.table["none"]["delta"]["mean"] == 0.5  # teacher == behaviour, no hindsight: Delta is float noise
    for name, arm in result.table.items():
        for column, cell in arm.items():
            if name == "gigpo" and column != "none":
                assert cell["n"] == 0  # gigpo has no Delta and no budget
            else:
                assert 0.0 <= cell["mean"] <= 1.0 and cell["n"] == 3


def test_the_weight_clip_decides_whether_one_sharp_doubt_outranks_several_mild_ones():
    # step 0 (the mistake): one token doubted by 5 nats; step 1: three tokens doubted by 0.6 nats each.
    # Delta's mean ranks step 0 first (-1.25 vs -0.45); at alpha_clip 0.2 both gaps saturate the clip,
    # so step 1 (three clipped tokens) gets more blame; at 0.9 the sharp doubt counts again.
    delta = torch.tensor([-5.0, 0.0, 0.0, 0.0, -0.6, -0.6, -0.6, 0.0])  # [T]
    target_mask = torch.ones(8, dtype=torch.bool)
    step_ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    labels = [True, False]

    def auc(alpha: float) -> float:
        config = AlgorithmConfig(alpha_clip=alpha, lambda_0=0.2)
        return step_auc(shaped_step_credit(delta, target_mask, step_ids, -1.0, 2, config, "conserved_step_share"), labels)

    assert step_auc([-m for m in step_means(delta, target_mask, step_ids, 2)], labels) == 1.0
    assert auc(0.2) == 0.0 and auc(0.9) == 1.0


def test_clip_grid_adds_one_column_per_alpha():
    batch = _labelled(make_group(0, [True, False, False], num_steps=4), {"g0/1": 2, "g0/2": 0})
    result = audit_credit(batch, AlgorithmConfig(), clip_grid=(0.05, 0.5))
    assert result.table["oracle"]["alpha_clip=0.05"]["mean"] == 1.0 and result.table["oracle"]["alpha_clip=0.5"]["n"] == 2
    assert "alpha_clip=0.5" not in result.table["gigpo"]
    assert clip_table(result.table).splitlines()[2].startswith("| grpo | 0.500")


# ------------------------------------------------------------------------ the swapped-peer control

def _errand_peer():
    """An ErrandChain-like win: errand 0 taken right; errand 1 a wrong take returned, then the right one."""
    from algo_fixtures import make_trajectory

    listing = "On the counter lie 3 parcels for the cafe: parcel 1 (red), parcel 2 (blue) and parcel 3 (green)."
    turns = [("Next step of the plan: go to library.", "go to library", f"You arrive at the library. {listing}"),
             ("Next step of the plan: take parcel 2.", "take parcel 2", "You take parcel 2, for the cafe."),
             ("Next step of the plan: deliver parcel 2 to cafe.", "deliver parcel 2 to cafe",
              "You deliver parcel 2 to the cafe. Errand 1 of 2 done. Next: the school."),
             ("Next step of the plan: go to school.", "go to school", f"You arrive at the school. {listing}"),
             ("Next step of the plan: take parcel 1.", "take parcel 1", "You take parcel 1, for the cafe."),
             ("Next step of the plan: return parcel 1.", "return parcel 1",
              f"You carry parcel 1 back to the school and put it back. {listing}"),
             ("Next step of the plan: take parcel 3.", "take parcel 3", "You take parcel 3, for the cafe."),
             ("Next step of the plan: deliver parcel 3 to cafe.", "deliver parcel 3 to cafe",
              "You deliver parcel 3 to the cafe. All 2 errands are done.")]
    return make_trajectory("Run errands.", turns, success=True, trajectory_id="peer")


def test_swapped_peer_changes_every_take_and_its_own_lines_only():
    import re

    from stepopsd.lab.hindsight_rows import swapped_parcels

    peer = _errand_peer()
    for seed in range(20):
        swapped = swapped_parcels(peer, seed)
        assert swapped == swapped_parcels(peer, seed)  # deterministic by seed
        assert swapped.token_ids == peer.token_ids and swapped.success and swapped.trajectory_id == peer.trajectory_id
        new = {k: int(re.match(r"take parcel (\d)", swapped.steps[k].action).group(1)) for k in (1, 4, 6)}
        assert all(new[k] != int(peer.steps[k].action.split()[2]) and 1 <= new[k] <= 3 for k in new)
        expected = {0: None, 1: 1, 2: 1, 3: None, 4: 4, 5: 4, 6: 6, 7: 6}  # step -> the take whose parcel it names
        for k, (before, after) in enumerate(zip(peer.steps, swapped.steps)):
            if expected[k] is None:
                assert after == before  # nothing else changes
                continue
            old, now = f"parcel {peer.steps[expected[k]].action.split()[2]}", f"parcel {new[expected[k]]}"
            assert after.action == before.action.replace(old, now) and after.thought == before.thought.replace(old, now)
            assert after.response == before.response.replace(old, now)
            assert after.observation == before.observation.replace(old, now, 1)  # the counter's listing stays
            assert dataclasses.replace(after, action=before.action, thought=before.thought, response=before.response,
                                       observation=before.observation) == before
    assert len({swapped_parcels(peer, seed).steps[1].action for seed in range(20)}) == 2  # both other parcels drawn


def test_a_swapped_peer_reports_the_swapped_parcel_in_its_outcomes():
    """The outcomes view of a swapped peer names the parcel its swapped deliveries carry."""
    import re

    from stepopsd.algo.hindsight import render_peer_outcomes
    from stepopsd.lab.hindsight_rows import swapped_parcels

    peer = _errand_peer()
    delivered = {2: "the bank's parcel for the cafe: parcel 2", 7: "the school's parcel for the cafe: parcel 3"}
    peer = dataclasses.replace(peer, steps=tuple(
        dataclasses.replace(step, info={**step.info, "outcome": delivered[k]}) if k in delivered else step
        for k, step in enumerate(peer.steps)))
    assert render_peer_outcomes(peer) == "\n".join(delivered.values())
    for seed in range(5):
        swapped = swapped_parcels(peer, seed)
        kept = [re.match(r"deliver (parcel \d)", swapped.steps[k].action).group(1) for k in delivered]
        assert render_peer_outcomes(swapped) == "\n".join(
            line.rsplit(": ", 1)[0] + f": {parcel}" for line, parcel in zip(delivered.values(), kept))


def test_the_controls_are_a_registry_and_a_peer_without_takes_swaps_to_itself():
    from stepopsd.lab.credit_audit import CONTROLS, HINDSIGHT_CONTROLS

    assert set(HINDSIGHT_CONTROLS) < set(CONTROLS) and "swapped_peer" in CONTROLS
    model = tiny_qwen3()
    batch = _labelled([with_model_behaviour(model, t) for t in make_group(0, [True, False, False], num_steps=3)],
                      {"g0/1": 1, "g0/2": 2})
    result = audit_credit(batch, AlgorithmConfig(), teacher=model, tokenize=byte_ids,
                          controls=("peer_trajectory", "swapped_peer"))
    assert set(result.table) == {"grpo", "oracle", "peer_diff", "gigpo", "peer_trajectory", "swapped_peer"}
    # the fixture's actions take no parcel: the swapped peer is the peer, and so are its AUCs
    assert result.per_trajectory["swapped_peer"] == result.per_trajectory["peer_trajectory"]
    with pytest.raises(ValueError, match="unknown hindsight control 'gold'"):
        audit_credit(batch, AlgorithmConfig(), teacher=model, tokenize=byte_ids, controls=("gold",))


def test_the_swapped_peer_control_shows_the_teacher_the_swapped_choices():
    from stepopsd.algo.hindsight import hindsight_text, render_peer
    from stepopsd.lab.credit_audit import CONTROLS
    from stepopsd.lab.hindsight_rows import swapped_parcels

    peer = _errand_peer()
    failed = dataclasses.replace(make_group(0, [False])[0], trajectory_id="failed")
    groups = {0: [failed, peer]}
    group = CONTROLS["swapped_peer"].group(failed, groups, 3)
    assert group[0] is failed and group[1] == swapped_parcels(peer, 3)
    assert render_peer(swapped_parcels(peer, 3)) in hindsight_text(failed, group, "peer_trajectory", peer_token_budget=4096)
