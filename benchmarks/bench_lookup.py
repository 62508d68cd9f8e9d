"""Can a model learn the lookup an ErrandChain teacher needs? Find a line in a hindsight block by its key
and copy its parcel number, trained on short synthetic rows, accuracy on held-out ones.

    python benchmarks/bench_lookup.py --model START --form errand --steps 2000 --record FILE
    python benchmarks/bench_lookup.py --model START --init random --form copy --steps 3000   # a fresh model of START's size

The check to make before building a teacher from a candidate model (docs/benchmarks.md, issue 41): a
teacher whose peer is written in the ``outcomes`` view must pick, at a take, the one line of the block for
the errand it is in and copy its parcel. Forms (``FORMS``):

* ``errand`` -- the real lookup. The block is a generated scene's eight accepted deliveries as the env
  reports them (``the <place>'s parcel for the <dest>: parcel N``); a question is that errand's arrival
  sentence without its listing and note (``You arrive at the <place>. On the counter lie 3 parcels for the
  <dest>.``) and the expert's response up to the parcel number. Only errands whose place and destination
  are unique in the scene are asked. The key is the pair: places repeat within a scene.
* ``copy`` -- the simplest lookup: eight distinct place names, lines ``<place>: parcel N``, the question
  ``<place>: parcel `` written as the line writes it.
* ``pair`` -- simpler still: lines `` <place> N``, the question `` <place> ``; the place is one token and two
  tokens before the digit, as in the associative-recall drills of the literature.
* ``errand-first``, ``pair-first`` -- the same blocks and questions in the teacher's own layout, where the
  block sits between the step's context and its response: a row is one question's key (the arrival
  sentence; the place), then the block, then the rest of the question. The key is read before the block,
  not after it, and a row asks one question (``KEY_FIRST``).
* ``unique-first`` -- ``errand-first`` with blocks where every place name is in one line only (not the env's
  scenes): one key finds the line, as in ``pair-first``, in the env's own words.
* ``role-first`` -- between ``unique-first`` and ``errand-first``: a name is the place of one line at most and
  the destination of one line at most, so one key finds the line only when read with its role.
* ``pairs-first`` -- ``errand-first``'s scenes, questions and layout in ``pair``'s short words: lines
  `` <place> for <dest> N``, the key `` <place> for <dest>``. Names repeat as in the env's scenes, so only the
  two keys together find the line; the long sentences are gone.
* ``grid-first`` -- ``pairs-first``'s words and layout, blocks where neither key alone finds the line: four
  places, each with the same two destinations (eight lines, shuffled), so a place is in two lines and a
  destination in four.

Training rows ask every question of a block in turn (one loss per answer; ``--ask drawn``: as many drawn
with replacement, so that no answer follows from counting the block's digits against the earlier
answers); the loss is also kept by a question's place in its row (``loss_by_question``). Accuracy is the
share of single-question rows of held-out blocks whose most likely next token is the right digit (chance
1/3); beside it, what a reader that counts the block's digits and reads no key scores
(:func:`digit_count_reader`), and for the forms of places and destinations what a reader that matches the
place alone, or the destination alone, would score over every question (:func:`one_key_accuracy`).
Each row is encoded piece by piece (block, question, answer), the same in training and evaluation.

``--mix FORM`` makes every other block of a training step one of ``FORM`` (a curriculum that keeps a lookup
learned on an easier form while the model meets a harder one); the held-out accuracy of both is recorded.
``--checkpoint DIR`` keeps the run's state there at every evaluation (model, optimizer, curve); the same
command given that folder again goes on from its last evaluation, bitwise as if never stopped, and may
raise ``--steps``. Rows are a function of the step, and training draws no random numbers.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402

Question = tuple[str, int, str]  # the text before the parcel number, the number, the text after it
Keyed = tuple[str, str, int]  # an errand's place, destination and parcel number
NUM_PARCELS = 3
EVAL_SEED_OFFSET = 1_000_000  # held-out blocks: seeds no training row uses (training: 0, 1, ...)


def errand_block(seed: int) -> tuple[list[str], list[Question]]:
    return sentence_block(scene_keyed(seed))


def sentence_block(keyed_block: tuple[list[Keyed], list[Keyed]]) -> tuple[list[str], list[Question]]:
    """Keyed lines and questions in the env's sentences (its delivery reports, its arrival sentences)."""
    from stepopsd_envs.errand_chain import Errand

    lines, asked = keyed_block
    return ([Errand(place, dest, None).outcome(n) for place, dest, n in lines],
            [errand_question(*question) for question in asked])


def errand_question(place: str, dest: str, answer: int) -> Question:
    """An errand's arrival sentence without its listing and note, then the expert's response around the number."""
    from stepopsd_envs.protocol import TagProtocol, expert_text

    before, after = expert_text(TagProtocol(), f"take parcel {answer}").split(str(answer), 1)
    arrival = f"You arrive at the {place}. On the counter lie {NUM_PARCELS} parcels for the {dest}.\n"
    return arrival + before, answer, after + "\n"


def unique_errand_block(seed: int) -> tuple[list[str], list[Question]]:
    """As ``errand``, but every place name is in one line only, as a place or a destination (eight places and
    eight destinations, the sixteen locations shuffled): either word alone finds the line, as the one place
    does in ``pair``."""
    from stepopsd_envs.errand_chain import LOCATIONS

    rng = random.Random(seed)
    names = rng.sample(LOCATIONS, 16)
    return drawn_errands(names[:8], names[8:], rng)


def role_errand_block(seed: int) -> tuple[list[str], list[Question]]:
    """As ``unique-first``'s blocks, but places and destinations drawn apart: a name is the place of one line at
    most and the destination of one line at most, so it can be in two lines, one in each role, as the env's
    scenes write it. One key finds the line only when read with its role."""
    from stepopsd_envs.errand_chain import LOCATIONS

    rng = random.Random(seed)
    places, dests = rng.sample(LOCATIONS, 8), rng.sample(LOCATIONS, 8)
    while any(place == dest for place, dest in zip(places, dests)):
        rng.shuffle(dests)
    return drawn_errands(places, dests, rng)


def drawn_errands(places: list[str], dests: list[str], rng: random.Random) -> tuple[list[str], list[Question]]:
    """A block of errands from ``places`` to ``dests`` with parcels drawn by ``rng``, each errand asked."""
    keyed = [(place, dest, rng.randint(1, NUM_PARCELS)) for place, dest in zip(places, dests)]
    return sentence_block((keyed, keyed))


def errand_scene(seed: int):
    from stepopsd_envs.errand_chain import ChainScene

    return ChainScene.generate(seed, num_errands=8, num_parcels=NUM_PARCELS, clue_style="pointer")


def asked_errands(scene) -> list:
    """The errands a question can name: those whose place and destination pair is unique in the scene."""
    pairs = [(errand.place, errand.dest) for errand in scene.errands]
    return [errand for errand, pair in zip(scene.errands, pairs) if pairs.count(pair) == 1]


def keyed_errands(scene) -> tuple[list[Keyed], list[Keyed]]:
    """A scene's deliveries and its asked errands, keyed."""
    def keyed(errand) -> Keyed:
        return errand.place, errand.dest, errand.clue.answer

    return [keyed(errand) for errand in scene.errands], [keyed(errand) for errand in asked_errands(scene)]


def scene_keyed(seed: int) -> tuple[list[Keyed], list[Keyed]]:
    return keyed_errands(errand_scene(seed))


def grid_keyed(seed: int) -> tuple[list[Keyed], list[Keyed]]:
    """Four places times two destinations, each pair once with a drawn parcel, shuffled; every line asked."""
    from stepopsd_envs.errand_chain import LOCATIONS

    rng = random.Random(seed)
    names = rng.sample(LOCATIONS, 6)
    pairs = [(place, dest) for place in names[:4] for dest in names[4:]]
    rng.shuffle(pairs)
    lines = [(place, dest, rng.randint(1, NUM_PARCELS)) for place, dest in pairs]
    return lines, lines


def one_key_accuracy(blocks) -> dict[str, float]:
    """Model-free readers of one key: over every question of ``blocks`` (keyed lines, keyed questions), the
    chance of the right digit when a reader copies a line chosen at random among those with the question's
    place (``place``), or its destination (``dest``)."""
    chances: dict[str, list[float]] = {"place": [], "dest": []}
    for lines, asked in blocks:
        for question in asked:
            for role, chance in enumerate(chances.values()):  # the key's index in a Keyed: 0 place, 1 dest
                same = [line for line in lines if line[role] == question[role]]
                chance.append(sum(line[2] == question[2] for line in same) / len(same))
    return {key: sum(chance) / len(chance) for key, chance in chances.items()}


def asked_questions(seed: int, questions: list[Question], count: int, drawn: bool = False) -> list[Question]:
    """The questions a row of block ``seed`` asks: the first ``count`` in a seeded order, or ``count`` drawn
    with replacement."""
    rng = random.Random(seed)
    return [rng.choice(questions) for _ in range(count)] if drawn else rng.sample(questions, len(questions))[:count]


def digit_count_reader(form: str, seeds) -> dict[str, float]:
    """A model-free reader of no key, on the held-out rows of ``form`` (the first question of each block, as
    :meth:`Rows.row` asks it; a block with no question is passed over, as its row has no target): it gives
    each digit the share of the block's lines that end with it. Its accuracy (ties split) and cross-entropy
    are what a model that counts the block's digits, and reads no key, scores."""
    import math

    right = loss = 0.0
    asked_blocks = 0
    for seed in seeds:
        lines, asked = FORMS[form](seed)
        if not asked:
            continue
        (_, answer, _), = asked_questions(seed, asked, 1)
        counts = [int(line[-1]) for line in lines]
        top = max(counts.count(digit) for digit in set(counts))
        right += (counts.count(answer) == top) / sum(counts.count(d) == top for d in set(counts))
        loss -= math.log(counts.count(answer) / len(counts))
        asked_blocks += 1
    return {"accuracy": right / asked_blocks, "loss": loss / asked_blocks}


def short_question(place: str, dest: str, answer: int) -> Question:
    """An errand written short, as its line writes it up to the number (`` bank for town hall `` and 1)."""
    return f" {place} for {dest} ", answer, "\n"


def short_line(question: Question) -> str:
    before, answer, _ = question
    return f"{before}{answer}"


def short_block(keyed_block: tuple[list[Keyed], list[Keyed]]) -> tuple[list[str], list[Question]]:
    """Keyed lines and questions written short (`` bank for town hall 1``, `` bank for town hall ``)."""
    lines, asked = keyed_block
    return [short_line(short_question(*line)) for line in lines], [short_question(*question) for question in asked]


def pairs_block(seed: int) -> tuple[list[str], list[Question]]:
    """An ``errand`` scene's deliveries and asked errands, written short."""
    return short_block(scene_keyed(seed))


def grid_block(seed: int) -> tuple[list[str], list[Question]]:
    """:func:`grid_keyed`'s block in ``pairs``'s words."""
    return short_block(grid_keyed(seed))


def copy_block(seed: int) -> tuple[list[str], list[Question]]:
    from stepopsd_envs.errand_chain import LOCATIONS

    rng = random.Random(seed)
    keyed = [(place, rng.randint(1, NUM_PARCELS)) for place in rng.sample(LOCATIONS, 8)]
    return [f"{place}: parcel {n}" for place, n in keyed], [(f"{place}: parcel ", n, "\n") for place, n in keyed]


def pair_block(seed: int) -> tuple[list[str], list[Question]]:
    """As ``copy``, with each place written after a space (` bank 2`): one token to the tokenizer, as the
    ``errand`` form writes it, where a line's first word is split into fragments (``b a ker y``)."""
    lines, questions = copy_block(seed)
    return ([f" {line.replace(': parcel', '')}" for line in lines],
            [(f" {before.replace(': parcel ', ' ')}", n, after) for before, n, after in questions])


def key_after_newline(before: str) -> tuple[str, str]:
    """An ``errand`` question's key, its arrival sentence, and the rest, the response up to the number."""
    key, newline, rest = before.partition("\n")
    return key + newline, rest


def key_word(before: str) -> tuple[str, str]:
    """A ``pair`` question's key, its place (`` cafe``; in ``pairs-first`` and ``grid-first`` the place and the
    destination, `` bank for town hall``), and the rest, the space before the number."""
    return before.rstrip(" ") + "\n", " "


FORMS: dict[str, Callable[[int], tuple[list[str], list[Question]]]] = {
    "errand": errand_block, "copy": copy_block, "pair": pair_block,
    "errand-first": errand_block, "pair-first": pair_block, "unique-first": unique_errand_block,
    "role-first": role_errand_block, "pairs-first": pairs_block,
    "grid-first": grid_block}
KEYED: dict[str, Callable[[int], tuple[list[Keyed], list[Keyed]]]] = {  # forms of places and destinations
    "errand": scene_keyed, "errand-first": scene_keyed, "pairs-first": scene_keyed, "grid-first": grid_keyed}
KEY_FIRST: dict[str, Callable[[str], tuple[str, str]]] = {  # forms in the teacher's layout: the splits of a question
    "errand-first": key_after_newline, "pair-first": key_word, "unique-first": key_after_newline,
    "role-first": key_after_newline, "pairs-first": key_word, "grid-first": key_word}


class Rows:
    """Token rows of one form for one tokenizer: ids and (position, target id) pairs per row."""

    def __init__(self, form: str, tokenizer) -> None:
        from stepopsd.algo.hindsight import hindsight_block

        self.block_of, self.tokenizer, self.hindsight_block = FORMS[form], tokenizer, hindsight_block
        self.split_key = KEY_FIRST.get(form)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def row(self, seed: int, questions: int | None = None,
            drawn: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """The block of ``seed`` and its questions in a seeded order (the first ``questions`` of them, else all),
        or with ``drawn`` as many questions drawn with replacement; in a ``KEY_FIRST`` form, one question, its
        key before the block. A block with no question (an ``errand`` scene whose every errand shares its place
        and destination with another) is a row with no target: it trains nothing."""
        lines, asked = self.block_of(seed)
        count = 1 if self.split_key else len(asked) if questions is None else questions
        asked = asked_questions(seed, asked, count, drawn) if asked else []  # a block may hold no question
        ids, targets = self.encode(self.hindsight_block(None, "\n".join(lines))), []
        if self.split_key and asked:  # the teacher's layout: the question's key, then the block, then the rest
            (before, answer, after), = asked
            key, before = self.split_key(before)
            ids, asked = self.encode(key) + ids, [(before, answer, after)]
        for before, answer, after in asked:
            ids += self.encode(before)
            digit = self.encode(str(answer))
            if len(digit) != 1:
                raise ValueError(f"the tokenizer writes {answer} as {len(digit)} tokens; the lookup copies one")
            targets.append((len(ids) - 1, digit[0]))
            ids += digit + self.encode(after)
        return ids, targets


def batch(rows: list[tuple[list[int], list[tuple[int, int]]]], pad_id: int):
    """Right-padded ids [B, T] (causal attention: no target reads the padding), the rows' lengths [B] and
    the targets' indices."""
    from stepopsd.algo.rescore import right_pad

    lengths = torch.tensor([len(row_ids) for row_ids, _ in rows])
    ids = right_pad([torch.tensor(row_ids) for row_ids, _ in rows], int(lengths.max()), pad_id)
    row_index = torch.tensor([i for i, (_, targets) in enumerate(rows) for _ in targets])
    position = torch.tensor([p for _, targets in rows for p, _ in targets])
    target = torch.tensor([t for _, targets in rows for _, t in targets])
    return ids, lengths, row_index, position, target


def hidden_states(model, ids) -> torch.Tensor:
    return model.get_decoder()(input_ids=ids).last_hidden_state  # [B, T, H]


def target_logits(model, hidden, row_index, position) -> torch.Tensor:
    """[N, V] logits at the targets' positions only (the output layer is not run over every token)."""
    return model.get_output_embeddings()(hidden[row_index, position])


def token_loss(model, hidden, ids, lengths) -> torch.Tensor:
    """Mean next-token cross-entropy over every token of the rows (block, questions and answers alike)."""
    real = torch.arange(ids.shape[1] - 1, device=ids.device) < (lengths - 1)[:, None]  # [B, T-1]
    logits = model.get_output_embeddings()(hidden[:, :-1][real])  # [M, V]
    return torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][real])


def accuracy(model, eval_batches, device) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for ids, _, row_index, position, target in eval_batches:
            logits = target_logits(model, hidden_states(model, ids.to(device)), row_index.to(device),
                                   position.to(device))
            right += int((logits.argmax(-1).cpu() == target).sum())
            total += len(target)
    model.train()
    return right / total


def resized(config, hidden_size: int | None, layers: int | None):
    """``config`` with another width (heads of the same ``head_dim``, half as many KV heads, an MLP 3x wide)
    and depth: a larger fresh model that keeps the folder's tokenizer."""
    changes = {}
    if hidden_size:
        heads = hidden_size // config.head_dim
        changes |= {"hidden_size": hidden_size, "num_attention_heads": heads,
                    "num_key_value_heads": max(1, heads // 2), "intermediate_size": 3 * hidden_size}
    if layers:
        changes |= {"num_hidden_layers": layers, "layer_types": None}  # None: the config lays them out anew
    return config.__class__.from_dict({**config.to_dict(), **changes}) if changes else config


def load_model(path: str, init: str, device: str, seed: int, hidden_size: int | None = None,
               layers: int | None = None):
    from stepopsd.policy import load_policy

    policy = load_policy(path, device=device)
    if init == "random":
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        config = resized(policy.model.config, hidden_size, layers)
        return policy.tokenizer, AutoModelForCausalLM.from_config(config).to(device)
    if hidden_size or layers:
        raise ValueError("--hidden-size and --layers size a fresh model: give them with --init random")
    return policy.tokenizer, policy.model


def window_mean(values: list[float], window: int) -> float:
    """The mean of the last ``window`` values (fewer at the start)."""
    return sum(values[-window:]) / len(values[-window:])


def train_step(model, optimizer, step_batch, device: str,
               token_loss_weight: float) -> tuple[torch.Tensor, float | None]:
    """One AdamW step on the answers' mean cross-entropy (plus the token loss at its weight): the answers'
    losses [N] and the token loss (None at weight 0)."""
    ids, lengths, row_index, position, target = (t.to(device) for t in step_batch)
    hidden = hidden_states(model, ids)
    answer_losses = torch.nn.functional.cross_entropy(
        target_logits(model, hidden, row_index, position).float(), target, reduction="none")  # [N]
    total, token = answer_losses.mean(), None
    if token_loss_weight:
        token = token_loss(model, hidden, ids, lengths)
        total = total + token_loss_weight * token
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    return answer_losses.detach().cpu(), None if token is None else token.item()


def add_by_question(by_question: torch.Tensor, order: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """``by_question`` [2, Q] (summed loss, count by a question's place in its row) with ``losses`` [N] added at
    their places ``order`` [N], widened as needed."""
    if len(order) and int(order.max()) >= by_question.shape[1]:
        by_question = torch.nn.functional.pad(by_question, (0, int(order.max()) + 1 - by_question.shape[1]))
    by_question[0].index_add_(0, order, losses)
    by_question[1].index_add_(0, order, torch.ones(len(order)))
    return by_question


def held_out_batches(rows: Rows, blocks: int, pad_id: int) -> list:
    """The held-out single-question rows of ``blocks`` blocks no training row uses, in batches of 32."""
    held_out = [rows.row(EVAL_SEED_OFFSET + i, questions=1) for i in range(blocks)]
    return [batch(held_out[i:i + 32], pad_id) for i in range(0, len(held_out), 32)]


NOT_THE_RUN = ("steps", "record", "save", "checkpoint", "threads", "device")  # may change when a run goes on


def run_arguments(args) -> dict:
    """The arguments that make a run what it is: a checkpoint goes on only under the same ones."""
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items() if key not in NOT_THE_RUN}


def save_state(folder: Path, args, model, optimizer, progress: dict) -> None:
    """The run's state in ``folder``/state.pt, replaced whole (a run killed while writing keeps the last)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = folder / "state.pt.tmp"
    torch.save({"run": run_arguments(args), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                **progress}, written)
    os.replace(written, folder / "state.pt")


def load_state(folder: Path, args) -> dict | None:
    """The state a run left in ``folder``, or None if it holds none; refused if the run differs."""
    path = folder / "state.pt"
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    differ = {key: (state["run"].get(key), value) for key, value in run_arguments(args).items()
              if state["run"].get(key) != value}
    if differ:
        raise SystemExit(f"--checkpoint {folder} holds another run (saved, given: {differ}): give it its own "
                         "arguments, or a new folder")
    if state["curve"][-1]["step"] > args.steps:
        raise SystemExit(f"--checkpoint {folder} is at step {state['curve'][-1]['step']}, past --steps {args.steps}")
    return state


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (its tokenizer is used either way)")
    parser.add_argument("--init", choices=("trained", "random"), default="trained",
                        help="random: a freshly initialised model of the folder's config")
    parser.add_argument("--hidden-size", type=int, help="with --init random: a fresh model this wide")
    parser.add_argument("--layers", type=int, help="with --init random: a fresh model this deep")
    parser.add_argument("--form", choices=tuple(FORMS), default="errand")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-rows", type=int, default=8, help="blocks per step, every question of each asked")
    parser.add_argument("--ask", choices=("each", "drawn"), default="each",
                        help="training rows ask each question of a block once (the last answers then follow from "
                             "counting the block's digits against the earlier answers), or as many drawn with "
                             "replacement (none follows from counting)")
    parser.add_argument("--token-loss-weight", type=float, default=0.0,
                        help="also train on every token's next-token loss, at this weight (0: the answers only)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-blocks", type=int, default=128, help="held-out single-question rows")
    parser.add_argument("--seed", type=int, default=0, help="of a random initialisation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--record", type=Path, help="JSON record, rewritten at every evaluation")
    parser.add_argument("--save", type=Path, help="a new folder for the trained model and its tokenizer (the "
                        "next run's --model, e.g. one form after another)")
    parser.add_argument("--mix", choices=tuple(FORMS), help="every other training block of this form instead")
    parser.add_argument("--checkpoint", type=Path, help="a folder for the run's state at every evaluation; a run "
                        "given one that holds a state goes on from it")
    args = parser.parse_args(argv)
    if args.mix == args.form:
        raise SystemExit(f"--mix {args.mix} is the main form: mix in another")
    torch.set_num_threads(args.threads)
    if args.save and args.save.exists():
        raise SystemExit(f"--save {args.save} exists: give a new folder")
    tokenizer, model = load_model(args.model, args.init, args.device, args.seed, args.hidden_size, args.layers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = {form: Rows(form, tokenizer) for form in (args.form, args.mix) if form}
    eval_batches = {form: held_out_batches(form_rows, args.eval_blocks, pad_id) for form, form_rows in rows.items()}
    one_key = (one_key_accuracy(KEYED[args.form](EVAL_SEED_OFFSET + i) for i in range(args.eval_blocks))
               if args.form in KEYED else {})
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    params = sum(p.numel() for p in model.parameters())
    counted = digit_count_reader(args.form, range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + args.eval_blocks))

    def scores() -> dict[str, float]:
        figures = {"accuracy": accuracy(model, eval_batches[args.form], args.device)}
        return figures | ({"mix_accuracy": accuracy(model, eval_batches[args.mix], args.device)} if args.mix else {})

    state = load_state(args.checkpoint, args) if args.checkpoint else None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        curve, losses, token_losses = state["curve"], state["losses"], state["token_losses"]
        by_question, seconds_before = state["by_question"], state["seconds"]
        print(f"{args.form} lookup: going on from step {curve[-1]['step']} of {args.checkpoint} "
              f"(accuracy {curve[-1]['accuracy']:.1%})", flush=True)
    else:
        curve, losses, token_losses, seconds_before = [{"step": 0, "loss": None, **scores()}], [], [], 0.0
        by_question = torch.zeros(2, 0)  # [2, Q]: summed answer loss and count by the question's place in its row
        print(f"{args.form} lookup, {params / 1e6:.2f}M parameters ({args.init}): accuracy {curve[0]['accuracy']:.1%} "
              f"before training (chance {1 / NUM_PARCELS:.0%})", flush=True)
    print(f"a model-free reader that counts the block's digits and reads no key: {counted['accuracy']:.1%} "
          f"(cross-entropy {counted['loss']:.3f})", flush=True)
    if one_key:
        print("model-free readers of one key on the held-out blocks: " +
              ", ".join(f"{key} alone {chance:.1%}" for key, chance in one_key.items()), flush=True)
    started = time.perf_counter()

    def figures() -> dict:
        return {"form": args.form, "mix": args.mix, "model": args.model, "init": args.init, "parameters": params,
                "steps": args.steps, "steps_done": curve[-1]["step"], "lr": args.lr, "batch_rows": args.batch_rows,
                "ask": args.ask, "token_loss_weight": args.token_loss_weight, "eval_rows": args.eval_blocks,
                "chance": 1 / NUM_PARCELS, "seconds": seconds_before + time.perf_counter() - started,
                "curve": curve, "one_key_readers": one_key, "digit_count_reader": counted}

    for step in range(curve[-1]["step"] + 1, args.steps + 1):
        forms = [args.mix if args.mix and i % 2 else args.form for i in range(args.batch_rows)]
        step_rows = [rows[form].row((step - 1) * args.batch_rows + i, drawn=args.ask == "drawn")
                     for i, form in enumerate(forms)]
        answer_losses, token = train_step(model, optimizer, batch(step_rows, pad_id), args.device,
                                          args.token_loss_weight)
        if token is not None:
            token_losses.append(token)
        main_form = torch.tensor([form == args.form for form, (_, targets) in zip(forms, step_rows) for _ in targets])
        main_losses = answer_losses[main_form]  # the recorded loss is the main form's answers'
        losses.append(main_losses.mean().item())
        order = torch.tensor([k for form, (_, targets) in zip(forms, step_rows) if form == args.form
                              for k in range(len(targets))])  # [N main]: a question's place in its row
        by_question = add_by_question(by_question, order, main_losses)
        if step % args.eval_every == 0 or step == args.steps:
            point = {"step": step, "loss": window_mean(losses, args.eval_every), **scores()}
            point["loss_by_question"] = (by_question[0] / by_question[1].clamp(min=1)).tolist()
            by_question.zero_()
            if token_losses:
                point["token_loss"] = window_mean(token_losses, args.eval_every)
            curve.append(point)
            print(f"step {step}/{args.steps}  loss {point['loss']:.3f}  accuracy {point['accuracy']:.1%}  "
                  + (f"{args.mix} {point['mix_accuracy']:.1%}  " if args.mix else "")
                  + (f"token loss {point['token_loss']:.3f}  " if token_losses else "")
                  + "by question " + " ".join(f"{value:.2f}" for value in point["loss_by_question"]) + "  "
                  + f"({seconds_before + time.perf_counter() - started:.0f} s)", flush=True)
            if args.record:  # a long run stopped early keeps its curve so far (steps_done < steps)
                write_record(args.record, figures())
            if args.checkpoint:
                save_state(args.checkpoint, args, model, optimizer, {
                    "curve": curve, "losses": losses, "token_losses": token_losses, "by_question": by_question,
                    "seconds": seconds_before + time.perf_counter() - started})
    print(f"{args.form} lookup accuracy after {args.steps} steps: {curve[-1]['accuracy']:.1%} "
          f"(before {curve[0]['accuracy']:.1%}; chance {1 / NUM_PARCELS:.0%})")
    if args.record and args.steps == 0:  # a check of a model, no training: its one evaluation
        write_record(args.record, figures())
    if args.save:
        model.save_pretrained(args.save)
        tokenizer.save_pretrained(args.save)
    return figures()


if __name__ == "__main__":
    main()
