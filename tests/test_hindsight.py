"""hindsight.py: which trajectories get a peer, the block text, middle truncation to a token budget."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algo_fixtures import byte_ids, make_group, make_trajectory
from stepopsd.algo.hindsight import TRUNCATION_NOTE, choose_peer, hindsight_block, hindsight_text, render_peer, truncate_middle

PEER = make_trajectory("T", [("look first", "go desk", "You see a mug."), ("", "take mug", "Done.")], success=True)


def test_peer_is_the_first_successful_member_for_failed_members_of_mixed_groups():
    group = make_group(0, [False, True, True, False])
    assert choose_peer(group[0], group) is group[1]
    assert choose_peer(group[3], group) is group[1]
    assert choose_peer(group[1], group) is None  # successful trajectories get no peer


@pytest.mark.parametrize("outcomes", [[False, False, False], [True, True, True]])
def test_no_peer_in_uniform_groups(outcomes):
    group = make_group(0, outcomes)
    assert all(choose_peer(traj, group) is None for traj in group)


def test_render_peer():
    assert render_peer(PEER) == (
        "step 1\nthought: look first\naction: go desk\nobservation: You see a mug.\n"
        "step 2\naction: take mug\nobservation: Done."
    )


def test_block_layout_matches_algorithm_md():
    assert hindsight_block("incorrect", "PEER") == (
        "<hindsight>\nfinal_correctness: incorrect\n<peer_correct_trajectory>\nPEER\n"
        "</peer_correct_trajectory>\n</hindsight>\n"
    )
    assert hindsight_block(None, None) == ""


def test_modes():
    group = [make_group(0, [False])[0], PEER]
    failed = group[0]
    assert hindsight_text(failed, group, "none") == ""
    assert hindsight_text(failed, group, "correctness") == "<hindsight>\nfinal_correctness: incorrect\n</hindsight>\n"
    assert hindsight_text(PEER, group, "correctness") == "<hindsight>\nfinal_correctness: correct\n</hindsight>\n"
    with_peer = hindsight_text(failed, group, "peer_trajectory")
    assert with_peer == hindsight_block("incorrect", render_peer(PEER))
    assert hindsight_text(failed, group, "peer_trajectory", correctness_line=False) == hindsight_block(None, render_peer(PEER))
    # the successful trajectory has no peer: at most the correctness line
    assert hindsight_text(PEER, group, "peer_trajectory") == "<hindsight>\nfinal_correctness: correct\n</hindsight>\n"
    with pytest.raises(ValueError, match="hindsight_mode"):
        hindsight_text(failed, group, "gold")


def test_peer_text_is_truncated_to_its_budget_and_says_so():
    group = [make_group(0, [False], num_steps=2)[0], make_group(1, [True], num_steps=30)[0]]
    text = hindsight_text(group[0], group, "peer_trajectory", peer_token_budget=200, count_tokens=lambda s: len(byte_ids(s)))
    peer_text = text.split("<peer_correct_trajectory>\n")[1].split("\n</peer_correct_trajectory>")[0]
    assert len(byte_ids(peer_text)) <= 200
    assert TRUNCATION_NOTE.format(budget=200) in peer_text
    full = render_peer(group[1])
    assert full.startswith(peer_text.split("\n[...")[0]) and full.endswith(peer_text.split("...]\n")[1])


def test_truncate_middle_hand_worked():
    # the note is 64 chars; budget 60 -> not even the note fits, the note alone comes back
    note = TRUNCATION_NOTE.format(budget=60)
    assert len(note) == 64 and truncate_middle("x" * 100, 60, len) == note
    # budget 90: note (64) + 2 newlines leaves 24 chars, 12 from each end
    text = "abcdefghij" + "-" * 80 + "0123456789"
    note = TRUNCATION_NOTE.format(budget=90)
    assert truncate_middle(text, 90, len) == f"abcdefghij--\n{note}\n--0123456789"
    assert truncate_middle("short", 90, len) == "short"


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=0, max_size=400), st.integers(1, 300))
def test_truncation_fits_the_budget_and_keeps_both_ends(text, budget):
    count = lambda s: len(s.encode("utf-8"))  # noqa: E731
    result = truncate_middle(text, budget, count)
    note = TRUNCATION_NOTE.format(budget=budget)
    if count(text) <= budget:
        assert result == text
    elif result != note:
        assert count(result) <= budget
        head, tail = result.split(f"\n{note}\n")
        assert text.startswith(head) and text.endswith(tail) and len(head) == len(tail)


def test_the_teacher_and_the_hindsight_rows_render_a_peer_the_same_way():
    from stepopsd.algo.hindsight import peer_hindsight_block

    failed, peer = make_group(0, [False, True])
    teacher_sees = hindsight_text(failed, [failed, peer], "peer_trajectory", peer_token_budget=64,
                                  count_tokens=lambda text: len(byte_ids(text)))
    assert teacher_sees == peer_hindsight_block(peer, "incorrect", 64, lambda text: len(byte_ids(text)))
    assert teacher_sees == hindsight_block("incorrect", truncate_middle(render_peer(peer), 64, lambda t: len(byte_ids(t))))


def test_the_actions_view_writes_one_line_per_step_and_keeps_a_long_peer_whole():
    from stepopsd.algo.hindsight import PEER_VIEWS, peer_hindsight_block
    from stepopsd.choices import PEER_VIEWS as PEER_VIEW_CHOICES
    from stepopsd.config import AlgorithmConfig
    from stepopsd.lab.hindsight_rows import hindsight_sft_trajectories

    assert tuple(PEER_VIEWS) == PEER_VIEW_CHOICES and AlgorithmConfig().peer_view == "steps"
    with pytest.raises(ValueError, match="peer_view"):
        AlgorithmConfig(peer_view="observations")
    failed, peer = make_group(0, [False, True], num_steps=12)
    count = lambda text: len(byte_ids(text))  # noqa: E731
    actions = "\n".join(f"step {k + 1}: {step.action}" for k, step in enumerate(peer.steps))
    assert PEER_VIEWS["actions"](peer) == actions
    budget = count(actions)
    assert count(render_peer(peer)) > budget  # the steps view of the same peer loses its middle to this budget
    teacher_sees = hindsight_text(failed, [failed, peer], "peer_trajectory", peer_token_budget=budget,
                                  count_tokens=count, peer_view="actions")
    assert teacher_sees == hindsight_block("incorrect", actions)
    assert teacher_sees == peer_hindsight_block(peer, "incorrect", budget, count, "actions")
    assert TRUNCATION_NOTE.format(budget=budget) in hindsight_text(failed, [failed, peer], "peer_trajectory",
                                                                   peer_token_budget=budget, count_tokens=count)
    # the SFT rows that teach a tiny teacher to read the block show it in the same view
    won = dataclasses.replace(peer, trajectory_id="other win", steps=peer.steps[:-1] + peer.steps[-1:])
    rows = hindsight_sft_trajectories([peer], byte_ids, peers=[won], peer_rule="self_if_alone",
                                      peer_token_budget=budget, peer_view="actions")
    block = byte_ids(peer_hindsight_block(peer, "incorrect", budget, count, "actions"))
    assert rows and all(_holds(row.token_ids, block) for row in rows)


def test_the_outcomes_view_writes_what_the_env_reported_and_refuses_a_peer_without_it():
    from stepopsd.algo.hindsight import PEER_VIEWS

    failed, peer = make_group(0, [False, True], num_steps=4)
    with pytest.raises(ValueError, match=r"trajectory g0/1 .*no step has info\['outcome'\]"):
        PEER_VIEWS["outcomes"](peer)
    peer = dataclasses.replace(peer, steps=tuple(
        dataclasses.replace(step, info={**step.info, "outcome": f"errand {k} done"}) if k % 2 else step
        for k, step in enumerate(peer.steps)))
    assert PEER_VIEWS["outcomes"](peer) == "errand 1 done\nerrand 3 done"
    assert hindsight_text(failed, [failed, peer], "peer_trajectory", peer_view="outcomes") == hindsight_block(
        "incorrect", "errand 1 done\nerrand 3 done")


def _holds(ids, part) -> bool:
    return any(list(ids[i:i + len(part)]) == list(part) for i in range(len(ids) - len(part) + 1))


# ---------------------------------------------------------------- hindsight_for: won trajectories get a peer too

def _first_success_if_failed_in_mixed(traj, group):
    """The rule before hindsight_for existed, restated: the reference the default must match."""
    if traj.success or not 0 < sum(t.success for t in group) < len(group):
        return None
    return next(t for t in group if t.success)


def _win(trajectory_id: str, num_steps: int, invalid_steps: int = 0, group_id: int = 0):
    """A won member of group ``group_id`` with ``num_steps`` steps, the first ``invalid_steps`` of them invalid."""
    traj = make_group(group_id, [True], num_steps=num_steps, seed=num_steps)[0]
    steps = tuple(dataclasses.replace(s, valid_action=s.index >= invalid_steps) for s in traj.steps)
    return dataclasses.replace(traj, trajectory_id=trajectory_id, steps=steps)


def test_peer_rules_are_the_configs_choices():
    from stepopsd.algo.hindsight import PEER_RULES
    from stepopsd.choices import HINDSIGHT_TARGETS
    from stepopsd.config import AlgorithmConfig

    assert tuple(PEER_RULES) == HINDSIGHT_TARGETS and AlgorithmConfig().hindsight_for == "failed"
    with pytest.raises(ValueError, match="hindsight_for"):
        AlgorithmConfig(hindsight_for="won")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=6), st.integers(0, 3))
def test_the_default_rule_is_the_old_rule_and_failures_keep_it_under_failed_and_won(outcomes, seed):
    group = make_group(seed, outcomes, seed=seed)
    for traj in group:
        expected = _first_success_if_failed_in_mixed(traj, group)
        assert choose_peer(traj, group) is expected and choose_peer(traj, group, "failed") is expected
        text = hindsight_text(traj, group, "peer_trajectory", count_tokens=lambda s: len(byte_ids(s)))
        assert text == hindsight_text(traj, group, "peer_trajectory", hindsight_for="failed",
                                      count_tokens=lambda s: len(byte_ids(s)))
        if not traj.success:
            assert choose_peer(traj, group, "failed_and_won") is expected


def test_a_win_gets_the_shortest_other_win_then_the_one_with_fewest_invalid_actions():
    long, short_sloppy, short_clean, failed = (_win("long", 5), _win("sloppy", 3, invalid_steps=1), _win("clean", 3),
                                               make_group(0, [False])[0])
    group = [long, short_sloppy, failed, short_clean]
    assert choose_peer(long, group, "failed_and_won") is short_clean  # fewest steps, then fewest invalid actions
    assert choose_peer(short_clean, group, "failed_and_won") is short_sloppy  # never itself: the next cleanest
    assert choose_peer(short_sloppy, group, "failed_and_won") is short_clean
    assert choose_peer(failed, group, "failed_and_won") is long  # failures: the first win, as by default
    tied = [_win("a", 3), _win("b", 3), _win("c", 4)]
    assert choose_peer(tied[2], tied, "failed_and_won") is tied[0]  # a tie goes to batch order


def test_a_lone_win_gets_no_peer_and_a_uniform_win_group_gives_each_win_another():
    lone = make_group(0, [False, True, False])
    assert choose_peer(lone[1], lone, "failed_and_won") is None
    assert hindsight_text(lone[1], lone, "peer_trajectory", hindsight_for="failed_and_won") == (
        "<hindsight>\nfinal_correctness: correct\n</hindsight>\n")
    wins = make_group(1, [True, True])
    assert choose_peer(wins[0], wins, "failed_and_won") is wins[1] and choose_peer(wins[1], wins, "failed_and_won") is wins[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 5), st.integers(0, 2)), min_size=1, max_size=6))
def test_a_wins_peer_is_another_win_and_none_is_cleaner(members):
    from stepopsd.algo.hindsight import cleanliness

    group = [_win(f"m{i}", steps, min(invalid, steps)) if won
             else dataclasses.replace(make_group(0, [False], num_steps=steps)[0], trajectory_id=f"m{i}")
             for i, (won, steps, invalid) in enumerate(members)]
    for traj in (t for t in group if t.success):
        peer = choose_peer(traj, group, "failed_and_won")
        others = [t for t in group if t.success and t is not traj]
        if not others:
            assert peer is None
            continue
        assert peer is not traj and peer.trajectory_id != traj.trajectory_id and peer.success
        assert cleanliness(peer) == min(cleanliness(t) for t in others)


def test_a_wins_block_says_correct_above_its_peer():
    group = [_win("slow", 5), _win("fast", 2), make_group(0, [False])[0]]
    text = hindsight_text(group[0], group, "peer_trajectory", hindsight_for="failed_and_won")
    assert text == hindsight_block("correct", render_peer(group[1]))
    assert "incorrect" not in text
