import dataclasses

import pytest
import torch

from model_fixtures import tiny_model_dir, tiny_policy  # noqa: F401  (pytest fixtures)
from stepopsd.policy import SamplingConfig, load_policy
from stepopsd.rollout import RolloutConfig, Task, make_envs, rollout
from stepopsd.lab.sft import SFTConfig, expert_trajectories, generated_token_nll, sft, sft_batch
from stepopsd.policy import save_policy

FETCH = "stepopsd/FetchItem-v0"


def test_window_mode_nll_scores_each_step_in_its_own_prompt(tiny_policy):
    """Window-mode trajectories hold one prompt per step: SFT must score each step after its own
    prompt only, as the rollout generated it, never after the previous steps' prompts."""
    config = RolloutConfig(context_mode="window", history_steps=1)
    [traj] = expert_trajectories(tiny_policy, make_envs(FETCH, 1), [Task(seed=0)], config)
    assert sum(step.context_start > 0 for step in traj.steps) == len(traj.steps) - 1
    with torch.no_grad():
        loss = generated_token_nll(tiny_policy, sft_batch(tiny_policy, [traj]))
        total, count = 0.0, 0
        for step in traj.steps:
            row = torch.tensor([traj.token_ids[step.context_start:step.response_token_end]])
            logp = torch.log_softmax(tiny_policy.model(input_ids=row).logits[0, :-1], -1)
            picked = logp.gather(-1, row[0, 1:, None])[:, 0]
            generated = picked[step.response_token_start - step.context_start - 1:]
            total, count = total + generated.sum().item(), count + len(generated)
    torch.testing.assert_close(loss.item(), -total / count, rtol=1e-5, atol=1e-5)


def test_nll_ignores_observation_tokens(tiny_policy):
    [traj] = expert_trajectories(tiny_policy, make_envs(FETCH, 1), [Task(seed=1)], RolloutConfig())
    with torch.no_grad():
        loss = generated_token_nll(tiny_policy, sft_batch(tiny_policy, [traj]))
        logits = tiny_policy.model(input_ids=torch.tensor([traj.token_ids])).logits[0, :-1]
        logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(traj.token_ids[1:])[:, None])[:, 0]
        mask = torch.tensor(traj.trainable_mask[1:])
    torch.testing.assert_close(loss, -logp[mask].mean())


def test_sft_lowers_the_loss_and_saves_a_reloadable_model(tiny_policy, tmp_path):
    envs = make_envs(FETCH, 8)
    trajectories = expert_trajectories(tiny_policy, envs, [Task(seed=s) for s in range(8)], RolloutConfig())
    losses = sft(tiny_policy, trajectories, SFTConfig(steps=12, batch_rows=4, lr=3e-3))
    assert losses[-1] < 0.6 * losses[0]
    save_policy(tiny_policy, tmp_path / "sft")
    reloaded = load_policy(tmp_path / "sft")
    with torch.no_grad():
        assert torch.equal(generated_token_nll(reloaded, sft_batch(reloaded, trajectories[:2])),
                           generated_token_nll(tiny_policy, sft_batch(tiny_policy, trajectories[:2])))


def test_sft_needs_an_expert(tiny_policy):
    from stepopsd.lab.sft import expert_responder
    from stepopsd.rollout import TurnRequest

    respond = expert_responder(tiny_policy, make_envs(FETCH, 1)[0].unwrapped.protocol)
    with pytest.raises(ValueError, match="expert"):
        respond([TurnRequest(0, [1], "obs", {"task": "t"})])


def test_a_reactive_expert_action_wins_over_the_plan(tiny_policy):
    from stepopsd.lab.sft import expert_responder
    from stepopsd.rollout import TurnRequest

    respond = expert_responder(tiny_policy, make_envs(FETCH, 1)[0].unwrapped.protocol)
    reset_infos = [{"expert_actions": ["look", "go to desk 1"]},  # a plan only (FetchItem)
                   {"expert_actions": ["go to desk 1"], "expert_action": "go to shelf 1"}]  # both (ALFWorld)
    first = respond([TurnRequest(e, [1], "obs", info) for e, info in enumerate(reset_infos)])
    second = respond([TurnRequest(0, [1], "obs", {}), TurnRequest(1, [1], "obs", {"expert_action": "open shelf 1"})])
    assert ["<action>look</action>" in first[0].text, "<action>go to desk 1</action>" in second[0].text] == [True, True]
    assert "<action>go to shelf 1</action>" in first[1].text and "<action>open shelf 1</action>" in second[1].text


def _success(policy, envs, tasks, config) -> float:
    trajectories = rollout(policy, envs, tasks, config)
    return sum(t.success for t in trajectories) / len(trajectories)


@pytest.mark.slow
def test_sft_makes_the_tiny_model_win_held_out_episodes(tiny_policy):
    """The earlier quickstart's SFT (about 8 minutes on 2 cores): window prompts listing the
    admissible actions, 256 plain expert episodes, 300 steps of 64 rows, 12-step episodes."""
    envs = make_envs(FETCH, 64, num_places=2, max_episode_steps=12)
    config = RolloutConfig(context_mode="window", history_steps=1, show_admissible_actions=True,
                           sampling=SamplingConfig(temperature=0, max_new_tokens=40))
    train = [t for i in range(4) for t in expert_trajectories(
        tiny_policy, envs, [Task(seed=s, options={"expert": True}) for s in range(64 * i, 64 * i + 64)], config)]
    held_out = [Task(seed=10_000 + s) for s in range(64)]
    before = _success(tiny_policy, envs, held_out, config)
    sft(tiny_policy, train, SFTConfig(steps=300, batch_rows=64, lr=3e-3))
    after = _success(tiny_policy, envs, held_out, config)
    assert after >= before + 0.3, (before, after)


@pytest.mark.slow
def test_sft_on_the_exploring_expert_makes_the_tiny_model_win_held_out_alfworld_games(tmp_path):
    """quickstart-alfworld's warm start (about 25 minutes; the tests run one thread): 300 generated Heat/Cool games
    in small rooms, ALFWorld's exploring expert, 2400 SFT steps of 8 rows, then the careless-habit phase.
    Measured: 36.1% greedy on 36 held-out games (Heat 72.2, Cool 0.0; an earlier recipe cloning the
    planner's walkthrough stayed at 0%)."""
    from accelerate import Accelerator

    from stepopsd.config import load_train_config
    from stepopsd.evaluate import evaluate_policy
    from stepopsd.run_dir import RunDir
    from stepopsd.lab.warm_start import prepare_start_model

    config = load_train_config("quickstart-alfworld", {"run.progress": False})
    start = prepare_start_model(config, RunDir(tmp_path), Accelerator(cpu=True), fresh_run=True)
    before = evaluate_policy(load_policy(tmp_path / "tiny_model"), config)["All"]
    after = evaluate_policy(load_policy(start), config)["All"]
    assert after >= before + 25.0, (before, after)


@pytest.mark.integration
def test_warm_start_adds_one_hindsight_row_per_expert_step(tiny_policy):
    from stepopsd.config import load_train_config
    from stepopsd.tasks import game_tasks, seed_for
    from stepopsd.lab.warm_start import sft_warm_start

    config = load_train_config("test-fetch", {"run.sft_expert_episodes": 3, "sft.steps": 2})
    plain = sft_warm_start(tiny_policy, config)
    assert (plain.episodes, plain.won, plain.hindsight_rows, len(plain.losses)) == (3, 3, 0, 2)
    with_rows = sft_warm_start(tiny_policy, load_train_config("test-fetch", {
        "run.sft_expert_episodes": 3, "sft.steps": 2, "sft.hindsight_rows": True}))
    envs = make_envs(FETCH, 3)
    tasks = game_tasks(envs[0], 3, first_seed=seed_for(config.run.seed, -1), options={"expert": True})
    expert = expert_trajectories(tiny_policy, envs, tasks, RolloutConfig())  # the warm start's episodes
    assert with_rows.hindsight_rows == sum(t.num_steps for t in expert)


@pytest.mark.integration
def test_careless_hindsight_contexts_give_one_row_per_careless_step(tiny_policy):
    """sft.hindsight_contexts = "careless": the rows are cut from the careless episodes (each shown a slip
    replay of its scene), not from the won expert ones."""
    from stepopsd.config import load_train_config
    from stepopsd.lab.warm_start import sft_warm_start
    from stepopsd.tasks import game_tasks, seed_for

    overrides = {"run.sft_expert_episodes": 4, "sft.steps": 1, "sft.careless_rate": 0.5, "sft.hindsight_rows": True,
                 "sft.hindsight_contexts": "careless", "algorithm.peer_view": "actions"}
    config = load_train_config("learning-errandchain-eight", overrides)
    report = sft_warm_start(tiny_policy, config)
    envs = make_envs(config.env.env_id, 2, **config.env.train_kwargs)
    tasks = game_tasks(envs[0], 2, first_seed=seed_for(config.run.seed, -1), options={"expert": True, "careless": True})
    careless = expert_trajectories(tiny_policy, envs, tasks, dataclasses.replace(config.rollout, group_size=1),
                                   careless_verb="take", careless_choice="env")
    assert report.careless == 2 and report.hindsight_rows == sum(t.num_steps for t in careless)


@pytest.mark.integration
def test_warm_start_keeps_every_careless_episode_won_or_lost(tiny_policy):
    """The careless demonstrator takes the first object in sight; with a 7-step limit a wrong
    take cannot be repaired in time, so some careless episodes are lost: SFT keeps them."""
    from stepopsd.config import load_train_config
    from stepopsd.lab.warm_start import sft_warm_start

    config = load_train_config("test-fetch", {
        "run.sft_expert_episodes": 16, "sft.steps": 1, "sft.careless_rate": 0.5,
        "env.train_kwargs": {"num_places": 2, "max_episode_steps": 7}})
    report = sft_warm_start(tiny_policy, config)
    assert report.episodes == 16 and report.careless == 8
    assert 8 <= report.won < 16  # every expert episode won, some careless ones lost


def test_a_random_wrong_careless_demonstrator_never_takes_the_right_parcel(tiny_policy):
    """With careless_choice="random_wrong" every careless ForkedErrand episode is lost (the
    demonstrator takes some parcel other than the one the note names), and the wrong parcels
    vary across episodes, where "first" would take parcel 1 every time."""
    import gymnasium

    from stepopsd.rollout import RolloutConfig, Task
    from stepopsd.lab.sft import expert_trajectories

    envs = [gymnasium.make("stepopsd/ForkedErrand-v0") for _ in range(4)]
    tasks = [Task(seed=seed, options={"scene_seed": seed}) for seed in range(16)]
    played = expert_trajectories(tiny_policy, envs, tasks, RolloutConfig(), careless_verb="take",
                                 careless_choice="random_wrong")
    assert not any(t.success for t in played)
    taken = {step.action.split(" from ")[0] for t in played for step in t.steps if step.info["decisive"]}
    assert len(taken) == 3  # parcels 1, 2 and 3 all taken somewhere


def test_a_careless_demonstrator_needs_a_reactive_expert():
    from stepopsd.lab.careless import CarelessDemonstrator

    with pytest.raises(ValueError, match="reactive expert"):
        CarelessDemonstrator(careless_verb="take").next_action({"expert_actions": ["take apple 1 from desk 1"]})
    assert CarelessDemonstrator(careless_verb="take").next_action({
        "expert_action": "take mug 1 from desk 1",
        "admissible_actions": ["go to shelf 1", "take apple 1 from desk 1", "take mug 1 from desk 1"]}) == "take apple 1 from desk 1"


@pytest.mark.integration
def test_the_envs_own_careless_demonstrator_plays_its_episodes(tiny_policy, tmp_path):
    """careless_choice="env": the careless episodes follow info["careless_action"] (ALFWorld's expert
    playing a Heat task as pick-and-place, which loses); an env without one is refused by name."""
    from stepopsd.config import load_train_config
    from stepopsd.lab.careless import CarelessDemonstrator
    from stepopsd.lab.warm_start import sft_warm_start

    config = load_train_config("quickstart-alfworld", {
        "run.sft_expert_episodes": 2, "sft.steps": 1, "sft.careless_rate": 0.5, "sft.careless_choice": "env",
        "env.train_kwargs": {"split": "generated", "task_types": ["Heat"], "generated_per_type": 1,
                             "generated_receptacles": 5, "generated_distractors": 2, "cache_dir": str(tmp_path),
                             "max_episode_steps": 25}})
    report = sft_warm_start(tiny_policy, config)
    assert report.episodes == 2 and report.careless == 1 and report.won == 1  # the careless episode is lost
    assert CarelessDemonstrator(env_careless=True).next_action({"expert_action": "a", "careless_action": "b"}) == "b"
    with pytest.raises(ValueError, match="careless_action"):
        CarelessDemonstrator(env_careless=True).next_action({"expert_action": "take mug 1 from desk 1"})


def test_sft_stops_when_asked(tiny_policy):
    from stepopsd.config import SFTConfig

    expert = expert_trajectories(tiny_policy, make_envs(FETCH, 2), [Task(seed=0), Task(seed=1)], RolloutConfig())
    asked = []
    losses = sft(tiny_policy, expert, SFTConfig(steps=5, batch_rows=2),
                 stop=lambda step: asked.append((step, tiny_policy.model.training)) or step == 1)
    assert len(losses) == 2 and asked == [(0, False), (1, False)]  # checks see the model in eval mode


@pytest.mark.integration
def test_warm_start_checks_greedy_success_until_the_target(tiny_policy):
    from stepopsd.config import load_train_config
    from stepopsd.lab.warm_start import sft_warm_start

    config = load_train_config("test-fetch", {"run.sft_expert_episodes": 3, "sft.steps": 4, "sft.stop_at_success": 1.0,
                                              "sft.check_every": 2, "sft.check_episodes": 3})
    seen = []
    report = sft_warm_start(tiny_policy, config, on_check=lambda steps, success: seen.append((steps, success)))
    assert len(report.losses) == 4  # an untrained model never reaches 100%: every step runs
    assert [steps for steps, _ in report.checks] == [2, 4] and seen == report.checks
    assert all(0.0 <= success <= 1.0 for _, success in report.checks)


def test_sft_command_trains_on_window_prompts_and_saves(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from stepopsd_cli import sft_cmd

    out = tmp_path / "new" / "sft"
    result = CliRunner().invoke(sft_cmd.app, [
        "--model", str(tiny_model_dir), "--env", FETCH, "--out", str(out), "--episodes", "6", "--steps", "3",
        "--batch-rows", "8", "--context-mode", "window", "--history-steps", "1", "--show-admissible-actions",
        "--set", "sft.hindsight_rows=true", "--set", 'sft.then={"steps": 2, "hindsight_rows": false}'])
    assert result.exit_code == 0, result.output
    assert "phase 1: 6/6 expert episodes won" in result.output and "hindsight rows" in result.output
    assert "phase 2: 6/6 expert episodes won; trained on those; 2 steps" in result.output
    assert (out / "config.json").is_file()


def test_sft_then_is_a_second_phase_checked_when_the_config_is_built():
    from stepopsd.config import ConfigError, SFTConfig, load_train_config

    config = load_train_config("test-fetch", {"sft.steps": 4, "sft.then": {"steps": 2, "careless_rate": 0.6, "lr": 5e-4}})
    first, second = config.sft.phases()
    assert first == config.sft and (second.steps, second.careless_rate, second.lr, second.then) == (2, 0.6, 5e-4, {})
    assert second.batch_rows == first.batch_rows  # fields it does not name stay as they are
    assert SFTConfig().phases() == [SFTConfig()]
    with pytest.raises(ConfigError, match="sft.then: unknown sft field 'stpes'"):
        SFTConfig(then={"stpes": 2})
    with pytest.raises(ConfigError, match=r"sft.then: sft.careless_rate must"):
        SFTConfig(then={"careless_rate": 2.0})


@pytest.mark.integration
def test_a_two_phase_warm_start_is_the_two_phases_run_in_turn(tiny_model_dir, tmp_path):
    """prepare_start_model with sft.then gives the weights of sft_warm_start with the first phase's
    config, then with the second's, on the same model (the habit phase of a full-skill start)."""
    import dataclasses

    from accelerate import Accelerator
    from safetensors.torch import load_file

    from stepopsd.config import load_train_config
    from stepopsd.run_dir import RunDir
    from stepopsd.lab.warm_start import prepare_start_model, sft_warm_start

    config = load_train_config("test-fetch", {"model.path": str(tiny_model_dir), "run.sft_expert_episodes": 4,
                                              "sft.steps": 3, "sft.then": {"steps": 2, "careless_rate": 0.5, "lr": 5e-4}})
    start = prepare_start_model(config, RunDir(tmp_path / "run"), Accelerator(cpu=True), fresh_run=True)
    policy = load_policy(tiny_model_dir)
    first, second = config.sft.phases()
    assert len(sft_warm_start(policy, dataclasses.replace(config, sft=first)).losses) == 3
    report = sft_warm_start(policy, dataclasses.replace(config, sft=second))
    assert report.careless == 2 and len(report.losses) == 2
    save_policy(policy, tmp_path / "by_hand")
    saved, by_hand = load_file(str(start / "model.safetensors")), load_file(str(tmp_path / "by_hand" / "model.safetensors"))
    assert all(torch.equal(saved[name], by_hand[name]) for name in saved)


def test_expert_episodes_play_each_task_once_across_phases(tiny_policy):
    """A task an earlier phase played comes back as the same trajectory without an env (none is
    given), and a new task is played like expert_trajectories plays it."""
    from stepopsd.lab.warm_start import ExpertEpisodes

    envs, config = make_envs(FETCH, 2), RolloutConfig()
    tasks = [Task(seed=s, options={"expert": True}) for s in range(4)]
    experts = ExpertEpisodes()
    first = experts.play(tiny_policy, envs, tasks[:3], config)
    assert [t.token_ids for t in experts.play(tiny_policy, [], tasks[1:3], config)] == [t.token_ids for t in first[1:]]
    [new] = experts.play(tiny_policy, envs, tasks[3:], config)
    [fresh] = expert_trajectories(tiny_policy, envs, tasks[3:], config)
    assert new.token_ids == fresh.token_ids and new.steps == fresh.steps


def test_sft_steps_0_turns_off_every_phase():
    """A run from an SFT'd model sets sft.steps = 0 (the benchmarks do): sft.then must not run on it."""
    from stepopsd.config import load_train_config
    from stepopsd.lab.warm_start import sft_phases

    config = load_train_config("quickstart-alfworld", {"sft.steps": 0})
    assert config.sft.then and sft_phases(config) == []
    assert [phase.sft.steps for phase in sft_phases(load_train_config("quickstart-alfworld", {}))] == [2400, 300]


class Killed(Exception):
    """Stands for the process ending midway (the session's end, an OOM kill)."""


def killed_at(step_to_die: int):
    def on_step(step: int, loss: float) -> None:
        if step == step_to_die:
            raise Killed
    return on_step


def test_sft_killed_midway_goes_on_from_its_state_to_the_same_weights(tiny_model_dir, tmp_path):
    """A straight run and one killed after its step 3 (state saved at step 2), then called again from the
    model it started from, end with the same losses and the same weights, bit for bit."""
    from stepopsd.config import SFTConfig

    envs = make_envs(FETCH, 2)
    expert = expert_trajectories(load_policy(tiny_model_dir), envs, [Task(seed=0), Task(seed=1)], RolloutConfig())
    config = SFTConfig(steps=6, batch_rows=2, save_every=2)
    straight = load_policy(tiny_model_dir)
    straight_losses = sft(straight, expert, config)
    with pytest.raises(Killed):
        sft(load_policy(tiny_model_dir), expert, config, on_step=killed_at(3), state=tmp_path / "state")
    resumed = load_policy(tiny_model_dir)
    assert sft(resumed, expert, config, state=tmp_path / "state") == straight_losses
    assert all(torch.equal(a, b) for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()))
    longer = sft(load_policy(tiny_model_dir), expert, dataclasses.replace(config, steps=8), state=tmp_path / "state")
    assert longer[:6] == straight_losses and len(longer) == 8  # steps may be raised: it goes on from step 6
    with pytest.raises(ValueError, match=r"saved by another phase \(it differs in lr\)"):
        sft(load_policy(tiny_model_dir), expert, dataclasses.replace(config, lr=5e-4), state=tmp_path / "state")
    with pytest.raises(ValueError, match="holds 8 steps, past sft.steps=6"):
        sft(load_policy(tiny_model_dir), expert, config, state=tmp_path / "state")
    with pytest.raises(ValueError, match=r"it differs in row_tokens, rows"):
        sft(load_policy(tiny_model_dir), expert[:1], dataclasses.replace(config, steps=8), state=tmp_path / "state")
    trained = load_policy(tiny_model_dir)
    sft(trained, expert, dataclasses.replace(config, steps=1))
    with pytest.raises(ValueError, match=r"it differs in start_weights\)"):  # another model.path, the same settings
        sft(trained, expert, dataclasses.replace(config, steps=8), state=tmp_path / "state")


@pytest.mark.integration
def test_a_warm_start_killed_in_its_second_phase_goes_on_to_the_same_start(tiny_model_dir, tmp_path, monkeypatch):
    """prepare_start_model with sft.save_every, killed at the second phase's step 2, then run again, saves the
    start a build never stopped saves, and removes its state."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    import stepopsd.lab.warm_start as warm_start
    from stepopsd.config import load_train_config
    from stepopsd.run_dir import RunDir

    config = load_train_config("test-fetch", {"model.path": str(tiny_model_dir), "run.sft_expert_episodes": 4,
                                              "sft.steps": 3, "sft.save_every": 1,
                                              "sft.then": {"steps": 4, "careless_rate": 0.5, "lr": 5e-4}})
    straight = warm_start.prepare_start_model(config, RunDir(tmp_path / "straight"), Accelerator(cpu=True), fresh_run=True)
    printing = warm_start._print_loss
    monkeypatch.setattr(warm_start, "_print_loss", lambda phase: killed_at(2) if phase.lr == 5e-4 else printing(phase))
    run = RunDir(tmp_path / "killed")
    with pytest.raises(Killed):
        warm_start.prepare_start_model(config, run, Accelerator(cpu=True), fresh_run=True)
    assert (run.sft_state / "phase-2" / "state.pt").is_file() and not run.sft_model.exists()
    monkeypatch.setattr(warm_start, "_print_loss", printing)
    resumed = warm_start.prepare_start_model(config, run, Accelerator(cpu=True), fresh_run=True)
    saved, again = (load_file(str(folder / "model.safetensors")) for folder in (straight, resumed))
    assert all(torch.equal(saved[name], again[name]) for name in saved)
    assert not run.sft_state.exists()
