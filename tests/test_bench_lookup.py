"""benchmarks/bench_lookup.py: its blocks are the env's own outcome lines, its questions have one answer, and
a run writes the curve it prints."""

import json
import random
from pathlib import Path

import pytest
import torch

from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)


@pytest.fixture(scope="module")
def lookup():
    import bench_lookup

    return bench_lookup


def _env_outcomes(scene_seed: int) -> list[str]:
    """What ErrandChain reports, delivery by delivery, when its expert plays the scene."""
    import gymnasium

    from test_errand_chain import ENV_ID, play

    env = gymnasium.make(ENV_ID, num_errands=8, num_parcels=3, clue_style="pointer")
    _, infos, _ = play(env, scene_seed)
    return [info["outcome"] for info in infos if "outcome" in info]


@pytest.mark.parametrize("seed", [0, 7])
def test_an_errand_block_is_what_the_env_reports_and_each_question_has_its_lines_answer(lookup, seed):
    lines, questions = lookup.errand_block(seed)
    assert lines == _env_outcomes(seed)
    for before, answer, _ in questions:
        place = before.split("You arrive at the ")[1].split(".")[0]
        dest = before.split("parcels for the ")[1].split(".")[0]
        matching = [line for line in lines if line.startswith(f"the {place}'s parcel for the {dest}:")]
        assert matching == [f"the {place}'s parcel for the {dest}: parcel {answer}"]
        assert before.endswith("take parcel ")


def _place_and_dest(line: str) -> tuple[str, str]:
    """The place and destination of an outcome line, ``the <place>'s parcel for the <dest>: parcel N``."""
    return line.split("the ", 1)[1].split("'s")[0], line.split("for the ")[1].split(":")[0]


def test_a_unique_block_names_each_place_once_in_the_envs_words_and_asks_every_line(lookup):
    from stepopsd_envs.errand_chain import Errand

    for seed in (0, 9):
        lines, questions = lookup.unique_errand_block(seed)
        names = [name for line in lines for name in _place_and_dest(line)]
        assert len(set(names)) == len(names) == 16
        for line, (before, answer, after) in zip(lines, questions):
            place = before.split("You arrive at the ")[1].split(".")[0]
            dest = before.split("parcels for the ")[1].split(".")[0]
            assert line == Errand(place, dest, None).outcome(answer)
            assert (before, answer, after) == lookup.errand_question(place, dest, answer)


def test_a_role_block_names_each_place_once_in_each_role_and_never_as_its_own_destination(lookup):
    in_both_roles = 0
    for seed in (0, 9, 4):
        lines, questions = lookup.role_errand_block(seed)
        pairs = [_place_and_dest(line) for line in lines]
        places, dests = zip(*pairs)
        assert len(set(places)) == len(set(dests)) == 8 and all(place != dest for place, dest in pairs)
        assert questions == [lookup.errand_question(place, dest, int(line[-1]))
                             for (place, dest), line in zip(pairs, lines)]
        in_both_roles += len(set(places) & set(dests))
    assert in_both_roles  # names that are one line's place and another's destination, as in the env's scenes


def test_a_pairs_block_is_the_errand_scene_written_short_and_asks_the_same_errands(lookup, tiny_model_dir):
    from stepopsd.policy import load_policy

    for seed in (0, 3):
        long_lines, long_questions = lookup.errand_block(seed)
        lines, questions = lookup.pairs_block(seed)
        assert [_place_and_dest(line) + (int(line[-1]),) for line in long_lines] == [
            tuple(line[1:-2].split(" for ")) + (int(line[-1]),) for line in lines]
        assert [answer for _, answer, _ in questions] == [answer for _, answer, _ in long_questions]
        for before, answer, after in questions:
            assert [line for line in lines if line.startswith(before)] == [f"{before}{answer}"] and after == "\n"
    ids, targets = lookup.Rows("pairs-first", load_policy(tiny_model_dir).tokenizer).row(3, drawn=True)
    (position, target), = targets
    assert ids[position + 1] == target


def test_a_grid_block_needs_both_keys_and_asks_every_line(lookup):
    for seed in (0, 5):
        lines, questions = lookup.grid_block(seed)
        pairs = [tuple(line[1:-2].split(" for ")) for line in lines]
        places, dests = zip(*pairs)
        assert len(set(pairs)) == 8 and sorted(map(places.count, set(places))) == [2] * 4
        assert sorted(map(dests.count, set(dests))) == [4, 4] and not set(places) & set(dests)
        assert [f"{before}{answer}" for before, answer, _ in questions] == lines


def test_a_copy_block_keys_each_line_by_a_place_of_its_own(lookup):
    lines, questions = lookup.copy_block(3)
    assert len({line.split(":")[0] for line in lines}) == len(lines) == 8
    assert [f"{before}{answer}" for before, answer, _ in questions] == lines


def test_a_row_asks_at_the_digit_it_targets(lookup, tiny_model_dir):
    from stepopsd.policy import load_policy

    rows = lookup.Rows("errand", load_policy(tiny_model_dir).tokenizer)
    ids, targets = rows.row(5)
    assert len(targets) == len(lookup.errand_block(5)[1])
    for position, target in targets:
        assert ids[position + 1] == target and rows.tokenizer.decode([target]) in "123"


@pytest.mark.parametrize("form", ["errand", "pair"])
def test_a_key_first_row_is_the_questions_key_then_the_block_then_the_rest_of_it(lookup, tiny_model_dir, form):
    from stepopsd.algo.hindsight import hindsight_block
    from stepopsd.policy import load_policy

    tokenizer = load_policy(tiny_model_dir).tokenizer
    after_block, key_first = lookup.Rows(form, tokenizer), lookup.Rows(f"{form}-first", tokenizer)
    for seed in (3, 11):
        lines, questions = lookup.FORMS[form](seed)
        (before, answer, after), = lookup.asked_questions(seed, questions, 1, drawn=True)
        key, rest = lookup.KEY_FIRST[f"{form}-first"](before)
        assert key.strip() and key.strip() in before and before.endswith(rest)
        ids, targets = key_first.row(seed, drawn=True)
        block = hindsight_block(None, "\n".join(lines))
        assert tokenizer.decode(ids) == f"{key}{block}{rest}{answer}{after}"
        (position, target), = targets
        assert ids[position + 1] == target and tokenizer.decode([target]) == str(answer)
        assert after_block.row(seed, questions=1)[1][0][1] == key_first.row(seed, questions=1)[1][0][1]


def test_a_scene_whose_every_errand_repeats_is_a_row_with_no_target(lookup, tiny_model_dir):
    from stepopsd.algo.hindsight import hindsight_block
    from stepopsd.policy import load_policy

    lines, questions = lookup.errand_block(121154)  # its eight errands: four pairs of place and destination, twice each
    assert questions == [] and len(lines) == 8
    tokenizer = load_policy(tiny_model_dir).tokenizer
    block = tokenizer(hindsight_block(None, "\n".join(lines)), add_special_tokens=False)["input_ids"]
    for form in ("errand", "errand-first"):
        assert lookup.Rows(form, tokenizer).row(121154, drawn=True) == (block, [])
    with_it = lookup.digit_count_reader("errand-first", [121154, 121155])  # the reader passes it over, as rows do
    assert with_it == lookup.digit_count_reader("errand-first", [121155])


def test_the_token_loss_is_the_mean_next_token_loss_of_each_rows_own_tokens(lookup, tiny_model_dir):
    """Padding after a short row is neither predicted nor a context: the batched loss equals the token-weighted
    mean of each row's loss computed alone, unpadded."""
    import torch

    from stepopsd.policy import load_policy

    policy = load_policy(tiny_model_dir)
    model, rows = policy.model, lookup.Rows("copy", policy.tokenizer)
    long_row, short_row = rows.row(1), rows.row(2, questions=1)
    ids, lengths, *_ = lookup.batch([long_row, short_row], pad_id=0)
    with torch.no_grad():
        batched = lookup.token_loss(model, lookup.hidden_states(model, ids), ids, lengths)
        alone = [torch.nn.functional.cross_entropy(model(input_ids=torch.tensor([row_ids])).logits[0, :-1].float(),
                                                   torch.tensor(row_ids[1:]), reduction="sum")
                 for row_ids, _ in (long_row, short_row)]
    assert len(short_row[0]) < len(long_row[0])
    assert batched.item() == pytest.approx((sum(alone) / (int(lengths.sum()) - 2)).item(), rel=1e-5)


def test_drawn_questions_are_the_blocks_own_and_each_once_keeps_its_order(lookup, tiny_model_dir):
    from stepopsd.policy import load_policy

    rows = lookup.Rows("pair", load_policy(tiny_model_dir).tokenizer)
    lines, questions = lookup.pair_block(4)
    each_ids, each_targets = rows.row(4)
    drawn_ids, drawn_targets = rows.row(4, drawn=True)
    assert len(drawn_targets) == len(each_targets) == len(questions)
    block = rows.encode(rows.hindsight_block(None, "\n".join(lines)))
    assert each_ids[:len(block)] == drawn_ids[:len(block)] == block
    asked = rows.tokenizer.decode(drawn_ids[len(block):]).split("\n")[:-1]
    assert set(asked) <= set(lines) and len(asked) == len(questions)
    order = random.Random(4).sample(questions, len(questions))  # "each": the seeded order, as before
    assert rows.tokenizer.decode(each_ids[len(block):]) == "".join(f"{b}{n}{a}" for b, n, a in order)


def test_the_digit_count_reader_on_hand_made_blocks(lookup, monkeypatch):
    import math

    blocks = {0: ["a 1", "b 1", "c 2"], 1: ["a 1", "b 2", "c 3", "d 3"]}
    answers = {0: 2, 1: 3}  # one question each: its block's digit 2, then 3
    monkeypatch.setitem(lookup.FORMS, "hand", lambda seed: (blocks[seed], [("q ", answers[seed], "\n")]))
    reader = lookup.digit_count_reader("hand", [0, 1])
    assert reader["accuracy"] == pytest.approx((0 + 1) / 2)  # 1 is block 0's commonest digit, 3 is block 1's
    assert reader["loss"] == pytest.approx((-math.log(1 / 3) - math.log(2 / 4)) / 2)


@pytest.mark.integration
def test_a_run_records_the_curve_it_prints(lookup, tiny_model_dir, tmp_path, capsys):
    record = tmp_path / "lookup.json"
    figures = lookup.main(["--model", str(tiny_model_dir), "--init", "random", "--form", "copy", "--steps", "2",
                           "--eval-every", "1", "--eval-blocks", "4", "--record", str(record),
                           "--save", str(tmp_path / "trained")])
    saved = json.loads(record.read_text())
    assert saved["curve"] == figures["curve"] and [point["step"] for point in saved["curve"]] == [0, 1, 2]
    assert saved["command"].startswith("python ") and saved["eval_rows"] == 4 and saved["init"] == "random"
    assert saved["steps_done"] == saved["steps"] == 2 and len(saved["curve"][-1]["loss_by_question"]) == 8
    assert saved["digit_count_reader"] == lookup.digit_count_reader("copy", range(lookup.EVAL_SEED_OFFSET,
                                                                                  lookup.EVAL_SEED_OFFSET + 4))
    assert f"copy lookup accuracy after 2 steps: {saved['curve'][-1]['accuracy']:.1%}" in capsys.readouterr().out
    again = lookup.main(["--model", str(tmp_path / "trained"), "--form", "copy", "--steps", "1", "--eval-blocks", "4"])
    assert again["curve"][0]["accuracy"] == saved["curve"][-1]["accuracy"]  # the saved model, as it was scored
    lookup.main(["--model", str(tmp_path / "trained"), "--form", "copy", "--steps", "0", "--eval-blocks", "4",
                 "--record", str(tmp_path / "check.json")])  # a check of a model: no training, one evaluation
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["curve"] == again["curve"][:1] and check["steps_done"] == 0


@pytest.mark.integration
def test_a_run_stopped_and_taken_up_again_from_its_checkpoint_is_the_run_never_stopped(lookup, tiny_model_dir,
                                                                                        tmp_path):
    def run(steps: int, folder: Path, record: str) -> dict:
        return lookup.main(["--model", str(tiny_model_dir), "--init", "random", "--form", "pair", "--mix", "copy",
                            "--ask", "drawn", "--steps", str(steps), "--eval-every", "2", "--eval-blocks", "4",
                            "--batch-rows", "3", "--checkpoint", str(folder), "--record", str(tmp_path / record)])

    whole = run(4, tmp_path / "whole", "whole.json")
    run(2, tmp_path / "parts", "parts.json")
    parts = run(4, tmp_path / "parts", "parts.json")
    assert parts["curve"] == whole["curve"] and [point["step"] for point in whole["curve"]] == [0, 2, 4]
    assert {"accuracy", "mix_accuracy"} <= set(whole["curve"][-1]) and whole["mix"] == "copy"
    ended, taken_up = (torch.load(tmp_path / name / "state.pt", weights_only=True) for name in ("whole", "parts"))
    for name, tensor in ended["model"].items():
        assert torch.equal(tensor, taken_up["model"][name]), name
    assert json.loads((tmp_path / "parts.json").read_text())["curve"] == whole["curve"]
    with pytest.raises(SystemExit, match="holds another run"):
        lookup.main(["--model", str(tiny_model_dir), "--init", "random", "--form", "pair", "--steps", "6",
                     "--eval-every", "2", "--eval-blocks", "4", "--checkpoint", str(tmp_path / "whole")])


def test_one_key_readers_on_a_hand_made_scene(lookup):
    from stepopsd_envs.errand_chain import ChainScene, Errand
    from stepopsd_envs.errand_clues import Clue

    def errand(place, dest, answer):
        return Errand(place, dest, Clue("note", "", f"Take parcel {answer}.", answer, 1))

    # bank->cafe 1 and bank->hotel 2 share a place; the pair school->cafe is asked twice with two answers: not asked
    scene = ChainScene(("bank", "cafe", "hotel", "school"), (
        errand("bank", "cafe", 1), errand("bank", "hotel", 2), errand("school", "cafe", 3), errand("school", "cafe", 1)))
    readers = lookup.one_key_accuracy([lookup.keyed_errands(scene)])
    # place: bank->cafe 1/2, bank->hotel 1/2; dest: bank->cafe (cafe: 1, 3, 1) 2/3, bank->hotel (hotel) 1
    assert readers == pytest.approx({"place": 0.5, "dest": (2 / 3 + 1) / 2})


LOOKUP_ROWS = {"errand-teacher4": ("errand", "the fourth teacher (0.93M parameters)"),
               "errand-random": ("errand", "a random model of its size"),
               "copy-random": ("copy", "a random model of its size"),
               "copy-random-256x6": ("copy", "a random model of 5.0M parameters (hidden 256, 6 layers)")}


def test_the_docs_lookup_table_is_its_records_and_the_one_key_readers_are_recomputed(lookup):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = docs[docs.index("#### The lookup check"):docs.index("### Where five teachers leave issue 41")]
    for name, (form, label) in LOOKUP_ROWS.items():
        record = json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
        curve = record["curve"]
        assert record["form"] == form and record["commit"] in section and record["eval_rows"] == 128
        assert (f"| {form} | {label} | {record['steps']} | {curve[0]['accuracy']:.1%} | {curve[-1]['accuracy']:.1%} | "
                f"{max(point['accuracy'] for point in curve):.1%} | {curve[-1]['loss']:.3f} |") in section
    readers = lookup.one_key_accuracy(lookup.scene_keyed(lookup.EVAL_SEED_OFFSET + i) for i in range(128))
    assert f"the place alone scores **{readers['place']:.1%}**" in section
    assert f"the destination alone scores **{readers['dest']:.1%}**" in section


def test_a_fresh_model_can_be_sized_and_only_a_fresh_one(lookup, tiny_model_dir):
    _, model = lookup.load_model(str(tiny_model_dir), "random", "cpu", 0, hidden_size=64, layers=2)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (64, 2, 192)
    assert config.num_attention_heads == 64 // config.head_dim and len(config.layer_types) == 2
    with pytest.raises(ValueError, match="--init random"):
        lookup.load_model(str(tiny_model_dir), "trained", "cpu", 0, layers=2)


def test_the_docs_compare_the_two_copy_models_as_their_curves_do():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "docs" / "benchmarks.md").read_text(encoding="utf-8").split())
    small, large = ({point["step"]: point["loss"] for point in json.loads(
        (root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())["curve"][1:]}
        for name in ("copy-random", "copy-random-256x6"))
    assert all(large[step] < small[step] for step in large if step <= 1250)
    assert all(large[step] > small[step] for step in large if step >= 1500)
    assert f"({large[2500]:.3f} against {small[2500]:.3f} at step 2500)" in text


LONG_RUNS = ("errand-random-long-tokens", "errand-random-long", "pair-random", "pair-random-long",
             "pair-each-by-question", "pair-drawn", "pair-drawn-long", "pair-drawn-save", "errand-drawn",
             "errand-from-pair")


def long_run_row(name: str, record: dict) -> str:
    """The row of the long runs' table for one record (docs/benchmarks.md, issue 41)."""
    curve = record["curve"]
    asked = record.get("ask", "each") + (" + token loss" if record.get("token_loss_weight") else "")
    by_question = curve[-1].get("loss_by_question")
    shown = ", ".join(f"{by_question[i]:.2f}" for i in (0, 1, -1)) if by_question else "not kept"
    return (f"| `{name}` | {record['form']} | {record['init']} | {asked} | "
            f"{record['steps_done']} ({record['steps']}) | "
            f"{record['eval_rows']} | {curve[-1]['accuracy']:.1%} | {max(p['accuracy'] for p in curve):.1%} | "
            f"{curve[-1]['loss']:.3f} | {shown} |")


def test_the_docs_long_lookup_runs_are_their_records_and_the_digit_count_reader_is_recomputed(lookup):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = docs[docs.index("#### Long runs of the `errand` form"):
                   docs.index("### Where five teachers leave issue 41")]
    for name in LONG_RUNS:
        record = json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
        assert long_run_row(name, record) in section, name
    held_out = lookup.EVAL_SEED_OFFSET
    pair = {n: lookup.digit_count_reader("pair", range(held_out, held_out + n)) for n in (128, 512)}
    errand = lookup.digit_count_reader("errand", range(held_out, held_out + 128))
    text = " ".join(section.split())
    assert (f"scores **{pair[128]['accuracy']:.1%}** on the `pair` form's 128 rows "
            f"({pair[512]['accuracy']:.1%} on 512; "
            f"cross-entropy {pair[512]['loss']:.3f}) and **{errand['accuracy']:.1%}** on the `errand` form's 128 "
            f"(cross-entropy {errand['loss']:.3f})") in text
    jump = {point["step"]: point for point in json.loads(
        (root / "benchmarks" / "results" / "lookup" / "pair-drawn-long.json").read_text())["curve"]}
    assert (f"**{jump[9000]['accuracy']:.1%} at step 9000, {jump[10000]['accuracy']:.1%} at 10000, "
            f"{jump[16000]['accuracy']:.1%} at 16000**") in text
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert f"**{jump[16000]['accuracy']:.1%}** held out after 16000 steps" in readme
    errand_drawn, errand_first, pair_first = (
        json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
        for name in ("errand-drawn", "errand-first", "pair-first"))
    assert (f"(at the count after {errand_drawn['steps_done']} steps, and after {errand_first['steps_done']} in "
            "the teacher's layout)") in readme
    first_jump = {point["step"]: point["accuracy"] for point in pair_first["curve"]}
    assert f"**{first_jump[3500]:.1%}** after 3500 when the key comes before the block" in readme
    assert round(jump[16000]["loss_by_question"][0], 2) == 0.03
    assert "is 0.03 for the first question after the block" in text


TEACHER_LAYOUT_RUNS = ("errand-mix-pair", "errand-drawn-long", "pair-first", "errand-first-from-pair",
                       "unique-first-from-pair", "errand-first", "errand-first-from-unique", "role-first-from-unique",
                       "errand-first-from-role")


TWO_KEY_RUNS = ("pairs-first-from-pair", "pairs-first", "grid-first-from-pair", "pairs-first-8-layers", "grid-first")
CURRICULUM_RUNS = ("pairs-first-mix-grid", "errand-first-mix-pairs", "errand-first-mix-pairs-b")
STAND_IN_PARAMETERS = 927104


def teacher_layout_row(name: str, record: dict) -> str:
    """The row of the eighth (and ninth) session's table for one record (docs/benchmarks.md, issue 41)."""
    curve = record["curve"]
    start = "fresh" if record["init"] == "random" else f"`{Path(record['model']).name}`"
    if record["parameters"] != STAND_IN_PARAMETERS:
        start += f", {record['parameters'] / 1e6:.2f}M parameters"
    mixed = f"{record['mix']}: {curve[-1]['mix_accuracy']:.1%}" if record.get("mix") else "-"
    return (f"| `{name}` | {record['form']} | {start} | {mixed} | {record['batch_rows']} | "
            f"{record['steps_done']} | {record['eval_rows']} | {curve[0]['accuracy']:.1%} | "
            f"{curve[-1]['accuracy']:.1%} | {max(p['accuracy'] for p in curve):.1%} | {curve[-1]['loss']:.3f} |")


def test_the_docs_teacher_layout_runs_are_their_records_and_their_readers_are_recomputed(lookup):
    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = docs[docs.index("#### Longer runs of the `errand` form"):docs.index("### Where five teachers leave")]
    for name in TEACHER_LAYOUT_RUNS + TWO_KEY_RUNS + CURRICULUM_RUNS:
        record = json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
        assert teacher_layout_row(name, record) in section, name
        assert record["digit_count_reader"] == lookup.digit_count_reader(
            record["form"], range(lookup.EVAL_SEED_OFFSET, lookup.EVAL_SEED_OFFSET + record["eval_rows"]))
    errand_first = lookup.one_key_accuracy(lookup.scene_keyed(lookup.EVAL_SEED_OFFSET + i) for i in range(512))
    count = lookup.digit_count_reader("errand-first", range(lookup.EVAL_SEED_OFFSET, lookup.EVAL_SEED_OFFSET + 512))
    text = " ".join(section.split())
    assert (f"digit count {count['accuracy']:.1%}, the place alone {errand_first['place']:.1%}, the destination "
            f"alone {errand_first['dest']:.1%}") in text
    assert f"({count['accuracy']:.1%} on these rows, cross-entropy {count['loss']:.3f};" in text


def test_the_docs_grid_readers_of_one_key_are_recomputed(lookup):
    """On ``grid-first``'s held-out blocks a reader of the place alone picks one of two lines, of the destination
    alone one of four: the figures the docs give are these readers' chances of the right digit, over every
    question and over the one each held-out row asks."""
    seeds = range(lookup.EVAL_SEED_OFFSET, lookup.EVAL_SEED_OFFSET + 512)
    every = lookup.one_key_accuracy(lookup.grid_keyed(seed) for seed in seeds)
    asked_by_rows = []
    for seed in seeds:
        lines, questions = lookup.grid_keyed(seed)
        asked_by_rows.append((lines, lookup.asked_questions(seed, questions, 1)))
    rows = lookup.one_key_accuracy(asked_by_rows)
    root = Path(__file__).resolve().parents[1]
    docs, readme = (" ".join((root / name).read_text(encoding="utf-8").split()) for name in ("docs/benchmarks.md", "README.md"))
    grid = json.loads((root / "benchmarks" / "results" / "lookup" / "grid-first-from-pair.json").read_text())
    grid = {point["step"]: point for point in grid["curve"]}
    last = max(grid)
    mixed, errand = (json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
                     for name in ("pairs-first-mix-grid", "errand-first-mix-pairs"))
    assert (f"blocks where no single name finds the line ({grid[last]['accuracy']:.1%} after {last} steps), then "
            f"the env's scenes in short words ({mixed['curve'][-1]['accuracy']:.1%} after {mixed['steps_done']} "
            f"steps), then the env's own sentences in the teacher's layout: **{errand['curve'][-1]['accuracy']:.1%}** "
            f"held out after {errand['steps_done']} steps, where reading the place alone gives "
            f"{errand['one_key_readers']['place']:.1%}") in readme
    assert errand["one_key_readers"] == lookup.one_key_accuracy(lookup.scene_keyed(seed) for seed in seeds)
    assert (f"a reader of the place alone scores {every['place']:.1%} and of the destination alone "
            f"{every['dest']:.1%} over every question") in docs
    assert f"on the one question each held-out row asks, {rows['place']:.1%} and {rows['dest']:.1%})" in docs
    assert f"what reading the place alone gives ({every['place']:.1%}; {rows['place']:.1%} on the rows'" in docs
    assert (f"62.1% with its training loss still falling ({grid[14000]['loss']:.3f} at step 14000, "
            f"{grid[16000]['loss']:.3f} at 16000)") in docs and f"{grid[16000]['accuracy']:.1%}" == "62.1%"


def test_the_docs_checks_of_the_fifth_teachers_starts_are_their_records():
    root = Path(__file__).resolve().parents[1]
    docs = " ".join((root / "docs" / "benchmarks.md").read_text(encoding="utf-8").split())
    t5a, t5b, d = (json.loads((root / "benchmarks" / "results" / "lookup" / f"{name}.json").read_text())
                   for name in ("t5a-1500", "t5b-2500", "errand-first-mix-pairs"))
    assert t5a["steps_done"] == t5b["steps_done"] == 0 and t5a["form"] == t5b["form"] == "errand-first"
    assert (f"T5a after 1500 of its 6000 steps scores **{t5a['curve'][0]['accuracy']:.1%}**, T5b after 2500 of its "
            f"first phase's 6000 steps **{t5b['curve'][0]['accuracy']:.1%}**, where D scored "
            f"{d['curve'][-1]['accuracy']:.1%} and the digit count scores {t5a['digit_count_reader']['accuracy']:.1%}") in docs

    t5a_final = json.loads((root / "benchmarks" / "results" / "lookup" / "t5a.json").read_text())
    assert f"On the drill's rows it scores **{t5a_final['curve'][0]['accuracy']:.1%}** (record `t5a.json`)" in docs
