"""hindsight_rows.py: SFT rows that put the teacher's exact hindsight window before each expert step."""

import dataclasses

import pytest
import torch

from algo_fixtures import byte_ids, make_group
from model_fixtures import tiny_model_dir, tiny_policy  # noqa: F401  (pytest fixtures)
from stepopsd.algo.hindsight import hindsight_text
from stepopsd.batch import build_batch
from stepopsd.lab.hindsight_rows import hindsight_sft_trajectories


def test_each_row_is_the_window_a_failed_peers_teacher_reads():
    success, failure = make_group(0, [True, False], num_steps=3)
    rows = hindsight_sft_trajectories([success, failure], byte_ids)
    assert len(rows) == 3  # one per step of the successful trajectory; the failed one gives none
    # the block a failed member of this group is shown: "incorrect" + the successful peer
    block = list(byte_ids(hindsight_text(failure, [success, failure], "peer_trajectory")))
    for row, step in zip(rows, success.steps):
        context = list(success.token_ids[step.context_start:step.response_token_start])
        response = list(success.token_ids[step.response_token_start:step.response_token_end])
        assert list(row.token_ids) == context + block + response
        trainable = [i for i, flag in enumerate(row.trainable_mask) if flag]
        assert trainable == list(range(len(context) + len(block), len(row.token_ids)))


def test_rows_batch_as_whole_sequences_trained_on_the_response_only():
    success, _ = make_group(1, [True, False], num_steps=2)
    rows = hindsight_sft_trajectories([success], byte_ids, correctness_line=False)
    batch = build_batch(rows, [torch.zeros(len(row.token_ids)) for row in rows])
    assert batch.num_rows == 2
    for b, row in enumerate(rows):
        assert batch.trainable_mask[b].sum() == sum(row.trainable_mask)
        assert b"final_correctness" not in bytes(t for t in row.token_ids if t < 256)


def test_forked_errand_configs_show_the_teacher_the_whole_peer(tiny_policy):
    """truncate_middle keeps a peer's head and tail: a budget below the peer's length cuts out the
    middle, where ForkedErrand's decisive parcel choice is, and the teacher can no longer read it."""
    import dataclasses

    from stepopsd.algo.hindsight import render_peer
    from stepopsd.config import load_train_config
    from stepopsd.policy import encode
    from stepopsd.rollout import make_envs
    from stepopsd.lab.sft import expert_trajectories
    from stepopsd.tasks import game_tasks

    for name in ("credit-lab", "learning-errand"):
        config = load_train_config(name, {})
        envs = make_envs(config.env.env_id, 8, **config.env.train_kwargs)
        tasks = game_tasks(envs[0], 48, first_seed=11, options={"expert": True})
        won = [t for t in expert_trajectories(tiny_policy, envs, tasks, dataclasses.replace(config.rollout, group_size=1))
               if t.success]
        longest = max(len(encode(tiny_policy, render_peer(t))) for t in won)
        assert any("take parcel" in step.action for step in won[0].steps)
        assert longest <= config.algorithm.peer_token_budget, (name, longest)


# ------------------------------------------------------------ sft.hindsight_peer: a different won episode of the scene

def _rows_peer_blocks(rows, trajectories):
    """Per row: the trajectory it was cut from and the hindsight block it shows (rows hold context + block + response)."""
    by_id = {t.trajectory_id: t for t in trajectories}
    out = []
    for row in rows:
        traj = by_id[row.trajectory_id.rsplit("/hindsight/", 1)[0]]
        step = traj.steps[int(row.trajectory_id.rsplit("/", 1)[1])]
        context = step.response_token_start - step.context_start
        out.append((traj, bytes(t for t in row.token_ids[context:row.steps[0].response_token_start]).decode()))
    return out


def test_other_episode_rows_show_a_different_won_episode_of_the_same_task_never_their_own():
    from stepopsd.algo.hindsight import peer_hindsight_block

    expert, expert_b = make_group(0, [True], num_steps=3)[0], make_group(1, [True], num_steps=2)[0]
    replay = dataclasses.replace(make_group(0, [True], num_steps=4, seed=7)[0], trajectory_id=expert.trajectory_id)
    same_actions = dataclasses.replace(expert, trajectory_id="copy")  # a replay that did nothing else is no peer
    lost = make_group(1, [False], num_steps=2, seed=3)[0]
    rows = hindsight_sft_trajectories([expert, expert_b], byte_ids, peers=[same_actions, lost, replay],
                                      peer_rule="other_episode")
    assert len(rows) == expert.num_steps  # task1 has no other won episode: no rows for it
    for traj, block in _rows_peer_blocks(rows, [expert]):
        assert block == peer_hindsight_block(replay, "incorrect", 1024, lambda text: len(byte_ids(text)))
        assert block != peer_hindsight_block(traj, "incorrect", 1024, lambda text: len(byte_ids(text)))
    # the default keeps today's rows: with no other episode of its task, a row shows its own episode
    default = hindsight_sft_trajectories([expert, expert_b], byte_ids)
    assert [block for _, block in _rows_peer_blocks(default, [expert, expert_b])] == [
        peer_hindsight_block(t, "incorrect", 1024, lambda text: len(byte_ids(text))) for t in (expert,) * 3 + (expert_b,) * 2]


def _errandchain_episodes(policy, scenes: int):
    from stepopsd.config import load_train_config
    from stepopsd.lab.hindsight_rows import slip_replays
    from stepopsd.lab.sft import expert_trajectories
    from stepopsd.rollout import make_envs
    from stepopsd.tasks import game_tasks

    config = load_train_config("learning-errandchain", {})
    envs = make_envs(config.env.env_id, 4, **config.env.train_kwargs)
    tasks = game_tasks(envs[0], scenes, first_seed=5, options={"expert": True})
    one_by_one = dataclasses.replace(config.rollout, group_size=1)
    experts = expert_trajectories(policy, envs, tasks, one_by_one)
    replays = slip_replays(policy, envs, tasks, one_by_one, "take", seed=0)
    return config, experts, replays


def test_errandchain_slip_replays_are_won_episodes_of_the_same_scene_with_one_recovered_mistake(tiny_policy):
    _, experts, replays = _errandchain_episodes(tiny_policy, scenes=6)  # 6 scenes over 4 envs: two chunks
    for expert, replay in zip(experts, replays):
        assert expert.success and replay.success and replay.task_id == expert.task_id
        assert [s.action for s in replay.steps] != [s.action for s in expert.steps]
        assert [s.info["mistake"] for s in replay.steps].count(True) == 1  # one slip, in every chunk
        assert [s.info["recovered"] for s in replay.steps].count(True) == 1 and replay.num_steps == expert.num_steps + 2
    assert _errandchain_episodes(tiny_policy, scenes=6)[2] == replays  # seeded: the same slips again


def test_errandchain_rows_never_show_their_own_episode_and_their_peer_shares_the_scene(tiny_policy):
    from stepopsd.algo.hindsight import peer_hindsight_block
    from stepopsd.policy import encode

    config, experts, replays = _errandchain_episodes(tiny_policy, scenes=3)
    tokenize = lambda text: encode(tiny_policy, text)  # noqa: E731
    rows = hindsight_sft_trajectories(experts, tokenize, peers=replays, peer_rule="other_episode",
                                      peer_token_budget=config.algorithm.peer_token_budget)
    assert len(rows) == sum(t.num_steps for t in experts)
    count = lambda text: len(tokenize(text))  # noqa: E731
    for row in rows:
        expert = next(t for t in experts if row.trajectory_id.startswith(f"{t.trajectory_id}/hindsight/"))
        scene_replay = next(r for r in replays if r.task_id == expert.task_id)
        ids = list(row.token_ids)
        own, peer = (list(tokenize(peer_hindsight_block(t, "incorrect", config.algorithm.peer_token_budget, count)))
                     for t in (expert, scene_replay))
        assert _contains(ids, peer) and not _contains(ids, own)


def _contains(ids, part) -> bool:
    return any(ids[i:i + len(part)] == part for i in range(len(ids) - len(part) + 1))


@pytest.mark.integration
def test_the_warm_start_trains_other_episode_rows_on_errandchain(tiny_policy):
    from stepopsd.config import load_train_config
    from stepopsd.lab.warm_start import sft_warm_start

    config = load_train_config("learning-errandchain", {
        "run.sft_expert_episodes": 3, "sft.steps": 1, "sft.careless_rate": 0.0, "sft.hindsight_rows": True,
        "sft.hindsight_peer": "other_episode"})
    report = sft_warm_start(tiny_policy, config)
    assert report.won == 3 and report.hindsight_rows == 3 * 12  # 4 errands x 3 steps, every scene's replay won


# ------------------------------------------------------------ sft.hindsight_contexts = "careless": the expert's action as target

def _careless_rows(policy, scenes: int, swap_share: float):
    from stepopsd.config import load_train_config
    from stepopsd.lab.hindsight_rows import corrected_rows, expert_response, slip_replays
    from stepopsd.lab.sft import expert_trajectories
    from stepopsd.policy import encode
    from stepopsd.rollout import make_envs
    from stepopsd.tasks import game_tasks

    config = load_train_config("learning-errandchain-eight", {})
    envs = make_envs(config.env.env_id, 4, **config.env.train_kwargs)
    tasks = game_tasks(envs[0], scenes, first_seed=5, options={"expert": True})
    one_by_one = dataclasses.replace(config.rollout, group_size=1)
    careless = expert_trajectories(policy, envs, [dataclasses.replace(t, options={**t.options, "careless": True})
                                                  for t in tasks], one_by_one, careless_verb="take", careless_choice="env")
    replays = slip_replays(policy, envs, tasks, one_by_one, "take", seed=0)
    tokenize = lambda text: encode(policy, text)  # noqa: E731
    rows = corrected_rows(careless, replays, tokenize, expert_response(policy, envs[0].unwrapped.protocol),
                          verb="take", swap_share=swap_share, seed=1, peer_view="actions")
    return careless, replays, rows, tokenize


def _row_step(row, episodes):
    traj_id, index = row.trajectory_id.rsplit("/hindsight/", 1)
    traj = next(t for t in episodes if t.trajectory_id == traj_id)
    return traj, traj.steps[int(index)]


def test_careless_rows_target_the_experts_action_where_the_episode_slipped(tiny_policy):
    from stepopsd.algo.hindsight import peer_hindsight_block
    from stepopsd.lab.sft import expert_sample
    from stepopsd_envs.protocol import TagProtocol

    careless, replays, rows, tokenize = _careless_rows(tiny_policy, scenes=3, swap_share=0.0)
    assert len(rows) == sum(t.num_steps for t in careless)  # every step, the slips and their repairs included
    slipped = 0
    for row in rows:
        traj, step = _row_step(row, careless)
        target = step.acted_on("expert_action")
        assert row.steps[0].action == target
        response = list(row.token_ids[row.steps[0].response_token_start:])
        assert response == list(expert_sample(tiny_policy, TagProtocol(), target).token_ids)
        peer = next(r for r in replays if r.task_id == traj.task_id)
        block = tokenize(peer_hindsight_block(peer, "correct" if traj.success else "incorrect", 1024,
                                              lambda text: len(tokenize(text)), "actions"))
        context = list(traj.token_ids[step.context_start:step.response_token_start])
        assert list(row.token_ids[:row.steps[0].response_token_start]) == context + list(block)
        assert sum(row.trainable_mask) == len(response)
        slipped += step.action != target
    assert slipped > 0  # the careless takes (and the deliveries of a wrong parcel) are rows with the right action


def test_a_swapped_peer_decides_the_take_targets_and_nothing_else(tiny_policy):
    from stepopsd.lab.hindsight_rows import peer_choice, swapped_parcels

    careless, replays, rows, _ = _careless_rows(tiny_policy, scenes=3, swap_share=1.0)
    moved = 0
    for row in rows:
        traj, step = _row_step(row, careless)
        expert = step.acted_on("expert_action")
        peer = swapped_parcels(next(r for r in replays if r.task_id == traj.task_id), 1)
        if expert.startswith("take "):
            assert row.steps[0].action == peer_choice(peer, step.info["errand"], "take")
            moved += row.steps[0].action != expert
        else:
            assert row.steps[0].action == expert  # go, deliver, return: what the episode's own state asks
    assert moved > 0


def test_careless_replays_are_the_same_scenes_with_other_careless_errands_and_rows_draw_their_peer(tiny_policy):
    """sft.hindsight_peer_draws: the careless demonstrator on each scene again with careless_draw 1..n; its
    wins hold recovered mistakes (a wrong take, then the right one), as RL's winning peers do. A careless
    row's peer is drawn among the scene's other wins, seeded."""
    from stepopsd.config import load_train_config
    from stepopsd.lab.hindsight_rows import careless_replays, corrected_rows, expert_response, slip_replays
    from stepopsd.lab.sft import expert_trajectories
    from stepopsd.policy import encode
    from stepopsd.rollout import make_envs
    from stepopsd.tasks import game_tasks

    config = load_train_config("learning-errandchain-eight", {})
    envs = make_envs(config.env.env_id, 4, **config.env.train_kwargs)
    tasks = game_tasks(envs[0], 4, first_seed=5, options={"expert": True})
    one_by_one = dataclasses.replace(config.rollout, group_size=1)
    replays = careless_replays(tiny_policy, envs, tasks, one_by_one, draws=3)
    assert len(replays) == 12 and [r.task_id for r in replays] == [t.task_id for t in replays[:4]] * 3
    won = [r for r in replays if r.success]
    assert any(sum(bool(s.info.get("mistake")) for s in r.steps) >= 1 for r in won)  # wins with recovered mistakes
    careless = expert_trajectories(tiny_policy, envs, [dataclasses.replace(t, options={**t.options, "careless": True})
                                                       for t in tasks], one_by_one, careless_verb="take",
                                   careless_choice="env")
    tokenize = lambda text: encode(tiny_policy, text)  # noqa: E731
    respond = expert_response(tiny_policy, envs[0].unwrapped.protocol)
    peers = slip_replays(tiny_policy, envs, tasks, one_by_one, "take", seed=0) + replays  # as the warm start's
    scene = next(t for t in careless if any(r.task_id == t.task_id for r in won))  # a scene with two won peers
    first_rows = {}
    for seed in range(8):
        rows = corrected_rows([scene], peers, tokenize, respond, verb="take", seed=seed, peer_view="actions")
        assert rows == corrected_rows([scene], peers, tokenize, respond, verb="take", seed=seed, peer_view="actions")
        first_rows[seed] = rows[0].token_ids
    assert len(set(first_rows.values())) == 2  # both peers drawn over 8 seeds
