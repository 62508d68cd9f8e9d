"""ErrandChain (stepopsd_envs/errand_chain.py) through the public Gymnasium API."""

import functools
import re

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import stepopsd_envs  # noqa: F401  (registers the envs)
from stepopsd_envs.contract import TrainingNeeds, check_trainable_env
from stepopsd_envs.errand_chain import ErrandChainEnv
from stepopsd_envs.errand_clues import CLUE_FORMATS, POINTERS

ENV_ID = "stepopsd/ErrandChain-v0"
ORDINALS = ("first", "second", "third", "fourth", "fifth")


@functools.cache
def make_env(num_errands: int = 8, num_parcels: int = 3, mistake_budget: int = 3) -> gymnasium.Env:
    """One env per configuration for the whole file (making one builds two wide Text spaces)."""
    return gymnasium.make(ENV_ID, num_errands=num_errands, num_parcels=num_parcels, mistake_budget=mistake_budget)


def act(command: str) -> str:
    return f"<action>{command}</action>"


def play(env, seed: int, demonstrator: str = "expert_action", **reset_options) -> tuple[list[str], list[dict], list]:
    """Follow ``info[demonstrator]`` to the end; returns the observations (reset first), infos (reset
    first) and the (reward, terminated, truncated) of each step."""
    observation, info = env.reset(options={"scene_seed": seed, **reset_options})
    observations, infos, outcomes = [observation], [info], []
    while not (outcomes and (outcomes[-1][1] or outcomes[-1][2])):
        observation, reward, terminated, truncated, info = env.step(act(info[demonstrator]))
        observations.append(observation)
        infos.append(info)
        outcomes.append((reward, terminated, truncated))
    return observations, infos, outcomes


def read_clue(observation: str) -> tuple[int, int]:
    """(right parcel, careless default), worked out from the text the agent sees, per the format table."""
    listing, note = re.search(r"parcels for the [a-z ]+: (.*)\. A note on them says: (.*)$", observation).groups()
    tagged = [(int(n), tag) for n, tag in re.findall(r"parcel (\d) \(([^)]*)\)", listing)]
    numbers = [int(n) for n in re.findall(r"parcel (\d)", listing)]
    by_tag = {tag: n for n, tag in tagged}
    if match := re.fullmatch(r"Take parcel (\d)\.", note):  # note
        return int(match.group(1)), numbers[0]
    if note == "Take the one without a stamp.":
        return by_tag["no stamp"], next(n for n, tag in tagged if tag == "stamped")
    if note in ("Take the lightest.", "Take the largest."):
        values = {int(tag.split()[0]): n for n, tag in tagged}
        light, heavy = values[min(values)], values[max(values)]
        return (light, heavy) if note == "Take the lightest." else (heavy, light)
    if note == "Take the one after the red one.":
        red = numbers.index(by_tag["red"])
        return numbers[red + 1], numbers[red]
    if match := re.fullmatch(r"Take the one labelled (\w+)\.", note):
        return by_tag[f"labelled {match.group(1)}"], by_tag["labelled urgent"]
    ordinal, side = re.fullmatch(r"Take the (\w+) from the (left|right)\.", note).groups()
    count = ORDINALS.index(ordinal) + 1
    return (numbers[count - 1] if side == "left" else numbers[-count]), count


def test_check_env_passes():
    check_env(gymnasium.make(ENV_ID).unwrapped)


def test_same_seed_same_scene_and_labels():
    env = make_env()
    assert env.reset(seed=11) == env.reset(seed=11)
    assert env.reset(options={"scene_seed": 4})[1]["task_id"] == "chain-4"
    assert play(env, 4, "careless_action", careless=True) == play(env, 4, "careless_action", careless=True)
    assert env.reset(options={"scene_seed": 4})[0] != env.reset(options={"scene_seed": 5})[0]


@pytest.mark.parametrize(("num_errands", "num_parcels"), [(4, 2), (8, 3), (12, 5)])
def test_the_expert_wins_every_scene_with_clean_labels(num_errands, num_parcels):
    env = make_env(num_errands, num_parcels)
    for seed in range(200):
        _, infos, outcomes = play(env, seed)
        plan = infos[0]["expert_actions"]
        assert [info["action"] for info in infos[1:]] == plan and len(plan) == 3 * num_errands
        assert [o[0] for o in outcomes] == [0.0] * (len(plan) - 1) + [1.0] and outcomes[-1][1]
        assert infos[-1]["won"] and "expert_action" not in infos[-1]
        assert [info["decisive"] for info in infos[1:]] == [i % 3 == 1 for i in range(len(plan))]
        assert not any(info["mistake"] or info["recovered"] for info in infos[1:])
        assert [info["errand"] for info in infos[1:]] == [i // 3 for i in range(len(plan))]
        assert [info["clue_format"] for info in infos[1::3]] == infos[0]["clue_formats"]


def test_every_format_appears_and_the_clue_where_the_choice_is_made_names_the_right_parcel():
    env = make_env(4, 4)
    seen = set()
    for seed in range(40):
        observations, infos, _ = play(env, seed)
        assert len(set(infos[0]["clue_formats"])) == 4  # several formats in every episode
        for step in range(1, len(infos), 3):  # the observation after "go to <place>": the takes' window
            right, _ = read_clue(observations[step])
            assert infos[step]["expert_action"] == f"take parcel {right}"
            seen.add(infos[step]["clue_format"])
    assert seen == set(CLUE_FORMATS) and len(seen) >= 6


def test_a_recovered_mistake_inside_a_won_episode():
    env = make_env(4, 3)
    for seed in range(20):
        _, info = env.reset(options={"scene_seed": seed})
        plan = info["expert_actions"]
        right = int(plan[1].split()[2])
        wrong = 1 if right != 1 else 2
        played = [plan[0], f"take parcel {wrong}", f"deliver parcel {wrong} to {plan[2].split(' to ')[1]}"]
        for command in played:
            observation, _, terminated, _, info = env.step(act(command))
            assert info["valid_action"] and not terminated
        assert observation.startswith(f"You carry parcel {wrong} to the ") and "This is not the parcel for" in observation
        assert info["errand"] == 0 and info["expert_action"] == f"return parcel {wrong}"
        labels = []
        while "expert_action" in info:  # the expert recovers: return, take the right one, go on
            observation, reward, terminated, _, info = env.step(act(info["expert_action"]))
            labels.append((info["mistake"], info["recovered"]))
        assert info["won"] and reward == 1.0 and len(labels) == len(plan)  # 3 steps more than the plan
        assert labels[0] == (False, True) and not any(mistake for mistake, _ in labels)


def test_labels_of_a_careless_episode_mark_each_wrong_take_and_its_return():
    env = make_env(4, 3, mistake_budget=6)  # the budget covers every errand: careless always wins
    for seed in range(30):
        observations, infos, outcomes = play(env, seed, "careless_action", careless=True)
        steps = infos[1:]
        mistakes = [i for i, info in enumerate(steps) if info["mistake"]]
        returns = [i for i, info in enumerate(steps) if info["recovered"]]
        assert infos[-1]["won"] and outcomes[-1][0] == 1.0
        assert [i + 2 for i in mistakes] == returns  # take wrong, delivery refused, return
        assert all(steps[i]["decisive"] and steps[i + 1]["action"].startswith("deliver") for i in mistakes)
        assert all("This is not the parcel for the " in observations[i + 2] for i in mistakes)
        assert all("A note on them says:" in observations[i + 1] for i in returns)  # the clue, for the retake
        assert len(steps) == 3 * 4 + 3 * len(mistakes)


def test_more_wrong_takes_than_the_budget_end_the_episode_lost():
    for budget in (0, 3):
        env = make_env(4, 2, mistake_budget=budget)
        _, info = env.reset(options={"scene_seed": 1})
        wrong = 3 - int(info["expert_actions"][1].split()[2])
        env.step(act(info["expert_actions"][0]))
        for _ in range(budget):
            _, _, terminated, _, info = env.step(act(f"take parcel {wrong}"))
            assert info["mistake"] and not terminated
            _, _, terminated, _, info = env.step(act(f"return parcel {wrong}"))
            assert info["recovered"] and not terminated
        observation, reward, terminated, truncated, info = env.step(act(f"take parcel {wrong}"))
        assert terminated and not truncated and reward == 0.0 and not info["won"]
        assert info["decisive"] and info["mistake"] and "called off" in observation
        assert "expert_action" not in info


def test_the_step_limit_is_3k_plus_3m_and_follows_num_errands():
    for num_errands, budget in ((4, 0), (6, 2)):
        env = make_env(num_errands, 3, mistake_budget=budget)
        env.reset(options={"scene_seed": 0})
        limit = 3 * num_errands + 3 * budget
        assert env.unwrapped.step_limit == limit
        truncations = [env.step(act("look"))[3] for _ in range(limit)]
        assert truncations == [False] * (limit - 1) + [True]
    assert gymnasium.spec(ENV_ID).max_episode_steps >= 3 * 12 + 3 * 3


def test_invalid_outputs_change_nothing_and_carry_no_label():
    env = make_env()
    _, info = env.reset(options={"scene_seed": 3})
    *_, info = env.step(act(info["expert_action"]))  # at the first place: the take is next
    before = info["expert_action"]
    for output in ("no tags at all", act("take parcel 9"), act("deliver parcel 1 to the moon")):
        observation, reward, terminated, _, info = env.step(output)
        assert not info["valid_action"] and not (info["decisive"] or info["mistake"] or info["recovered"])
        assert info["expert_action"] == before and info["errand"] == 0 and not terminated and reward == 0.0


def test_the_careless_take_is_each_formats_wrong_default():
    env = make_env(8, 3)
    defaults, wrong = {}, {}
    for seed in range(40):
        observations, infos, _ = play(env, seed, "careless_action", careless=True)
        first_take_done = set()
        for step, info in enumerate(infos[:-1]):
            action = info["careless_action"]
            if not action.startswith("take") or info["errand"] in first_take_done:
                continue
            first_take_done.add(infos[step + 1]["errand"])
            right, careless = read_clue(observations[step])
            clue_format = infos[step + 1]["clue_format"]
            assert action == f"take parcel {careless}", clue_format
            assert infos[step + 1]["mistake"] == (careless != right)
            defaults[clue_format] = defaults.get(clue_format, 0) + 1
            wrong[clue_format] = wrong.get(clue_format, 0) + (careless != right)
    assert set(defaults) == set(CLUE_FORMATS)
    assert all(wrong[f] == defaults[f] for f in ("stamp", "weight", "colour", "size", "label"))  # never right
    assert all(0 < wrong[f] < defaults[f] for f in ("note", "count"))  # right when the default happens to be


def test_careless_episodes_recover_and_some_are_lost():
    env = make_env(4, 2)
    results = [play(env, seed, "careless_action", careless=True) for seed in range(60)]
    assert all(any(info.get("mistake") for info in infos) for _, infos, _ in results)
    assert sum(any(info.get("recovered") for info in infos) for _, infos, _ in results) > 30
    won = sum(infos[-1]["won"] for _, infos, _ in results)
    assert 0 < won < 60
    _, infos, outcomes = play(make_env(8, 3), 0, "careless_action", careless=True)
    assert outcomes[-1][1] and not infos[-1]["won"]  # lost: one wrong take too many
    assert "careless_action" not in env.reset(options={"scene_seed": 0})[1]


def test_the_training_contract_holds():
    check_trainable_env(gymnasium.make(ENV_ID), TrainingNeeds(expert=True, careless_choice="env",
                                                             mistake_label="mistake", stop_strings=("</action>",)))


def test_the_corpus_hooks_yield_text_only_for_a_run_of_this_env():
    assert ErrandChainEnv.corpus_variants == ()
    assert list(ErrandChainEnv.corpus_text({})) == []
    assert list(ErrandChainEnv.corpus_text({"run_env_id": "stepopsd/ForkedErrand-v0"})) == []
    texts = list(ErrandChainEnv.corpus_text({"run_env_id": ENV_ID}))
    assert texts[0] == ErrandChainEnv().system_prompt() and len(texts) > 60 * 24
    joined = "\n".join(texts)
    for phrase in ("<action>return parcel", "This is not the parcel for", "called off", "parcel 5 (",
                   "Take the one after the red one.", "from the right."):
        assert phrase in joined, phrase


def test_the_pointer_style_names_the_answer_and_a_wrong_pull_in_each_formats_own_order():
    env = gymnasium.make(ENV_ID, num_errands=7, clue_style="pointer")
    check_env(env.unwrapped, skip_render_check=True)
    right_first = {}
    for seed in range(40):
        observations, infos, outcomes = play(env, seed)
        assert outcomes[-1] == (1.0, True, False)  # the expert wins every scene
        for errand in env.unwrapped.scene.errands:
            clue = errand.clue
            if clue.format == "note":
                assert clue.text == f"Take parcel {clue.answer}."
                continue
            assert clue.careless != clue.answer
            text = clue.text.lower()
            a, c = text.index(f"parcel {clue.answer}"), text.index(f"parcel {clue.careless}")
            right_first.setdefault(clue.format, set()).add(a < c)
        _, careless_infos, _ = play(env, seed, demonstrator="careless_action", careless=True)
        takes = [info for info in careless_infos[1:] if info["decisive"]]
        first_takes = {}
        for info in takes:
            first_takes.setdefault(info["errand"], info)
        assert all(info["mistake"] for info in first_takes.values() if info["clue_format"] != "note")
    # one order per format, both orders among the formats: reading is per format, not one position
    assert {fmt: len(orders) for fmt, orders in right_first.items()} == {fmt: 1 for fmt in POINTERS}
    assert {order for orders in right_first.values() for order in orders} == {True, False}


def test_an_unknown_clue_style_is_refused():
    with pytest.raises(ValueError, match="clue_style must be one of rule, pointer"):
        ErrandChainEnv(clue_style="arrows")


def test_careless_errands_draws_each_errand_on_its_own_and_the_same_per_scene():
    env = gymnasium.make(ENV_ID, num_errands=4, num_parcels=3, mistake_budget=4, careless_errands=0.5)
    careless_by_scene = []
    for seed in range(200):
        _, infos, _ = play(env, seed, "careless_action", careless=True)
        careless_by_scene.append({info["errand"] for info in infos[1:] if info.get("mistake")})
    assert careless_by_scene[7] == {info["errand"] for info in play(env, 7, "careless_action", careless=True)[1][1:]
                                     if info.get("mistake")}
    per_errand = [sum(k in errands for errands in careless_by_scene) / 200 for k in range(4)]
    assert all(0.35 < share < 0.65 for share in per_errand), per_errand  # ~ half of the errands, each on its own
    both = sum({0, 1} <= errands for errands in careless_by_scene) / 200
    assert abs(both - per_errand[0] * per_errand[1]) < 0.1  # independent, not an episode-level mode
    always = [play(make_env(4, 3), seed, "careless_action", careless=True)[1][1:] for seed in range(20)]
    assert all(any(info.get("mistake") for info in infos) for infos in always)  # default 1.0: as before


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5"])
def test_a_careless_errands_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="careless_errands must be a number in \\[0, 1\\]"):
        ErrandChainEnv(careless_errands=value)


def test_another_careless_draw_is_another_careless_demonstrator_of_the_same_scene():
    env = gymnasium.make(ENV_ID, num_errands=8, careless_errands=0.5, mistake_budget=8)
    first = play(env, 5, "careless_action", careless=True)
    again = play(env, 5, "careless_action", careless=True, careless_draw=0)
    other = play(env, 5, "careless_action", careless=True, careless_draw=1)
    assert again == first  # draw 0 is the default
    assert other[0][0] == first[0][0]  # the same scene: the same first observation
    assert [i.get("mistake") for i in other[1]] != [i.get("mistake") for i in first[1]]  # other errands careless


def test_only_an_accepted_delivery_reports_its_outcome_as_its_observation_says_it():
    """info["outcome"] (what the hindsight view ``outcomes`` writes): one line per errand of a careless win,
    on the delivery the env accepted, naming the kept parcel; a rejected delivery reports none."""
    env = make_env(4, 3, mistake_budget=6)
    rejected = 0
    for seed in range(10):
        observations, infos, _ = play(env, seed, "careless_action", careless=True)
        plan = infos[0]["expert_actions"]
        for observation, info in zip(observations[1:], infos[1:]):
            delivered = re.match(r"You deliver parcel (\d) to the ([a-z ]+)\.", observation)
            rejected += observation.startswith("You carry parcel") and "This is not" in observation
            assert ("outcome" in info) == bool(delivered)
            if delivered:
                go, take, deliver = plan[3 * info["errand"]:3 * info["errand"] + 3]
                place = go.removeprefix("go to ")
                assert deliver == f"{take.replace('take', 'deliver')} to {delivered.group(2)}"
                assert info["outcome"] == f"the {place}'s parcel for the {delivered.group(2)}: parcel {delivered.group(1)}"
        assert sum("outcome" in info for info in infos) == 4 and infos[-1]["won"]
    assert rejected > 0  # the careless demonstrator's wrong deliveries were seen, and reported nothing
