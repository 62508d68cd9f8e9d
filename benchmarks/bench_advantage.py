"""Cost of the advantage stage: stepopsd vs grpo, and shared-prefix vs naive per-step rescoring.

A batch of GROUPS x GROUP_SIZE full-conversation trajectories of STEPS steps each (every group
mixed, so every trajectory is rescored: the worst case), byte-level tokens, a tiny random Qwen3
(~1M parameters) on CPU. Printed figures:

* seconds of ``compute_advantages`` for grpo and stepopsd on the same batch;
* the bound "one teacher forward over trajectory tokens + hindsight tokens": per rescored
  trajectory one forward over T + K*H tokens (its ids followed by its hindsight ids K times);
  the ratio of stepopsd's rescoring time to that bound;
* efficient (shared prefix) vs naive (one full forward per step) rescoring on the same
  trajectories, and the speedup.

Run: ``python benchmarks/bench_advantage.py [--peer-token-budget 256] [--threads 1] [--record FILE]``
(``--record``: the figures as JSON, with the command and commit, :func:`record.write_record`).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from algo_fixtures import byte_ids, make_trajectory  # noqa: E402  (the hand-built trajectory maker)

from stepopsd.algo.advantage import compute_advantages  # noqa: E402
from stepopsd.config import AlgorithmConfig  # noqa: E402
from stepopsd.algo.hindsight import hindsight_text  # noqa: E402
from stepopsd.algo.rescore import step_windows, teacher_logprobs, teacher_logprobs_naive  # noqa: E402
from stepopsd.algo.segment import target_mask_and_step_ids  # noqa: E402
from record import write_record  # noqa: E402

WORDS = "go to take open close look put heat cool clean mug shelf desk apple box drawer fridge sink".split()
SYSTEM = ("You are a household agent. Reason inside <think> </think>, then give exactly one action inside "
          "<action> </action>. Admissible actions: " + ", ".join(f"go to {w} {i}" for i, w in enumerate(WORDS)) + ".")


def tiny_model(vocab_size: int = 300):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=32768)
    return Qwen3ForCausalLM(config).eval()


def make_batch(groups: int, group_size: int, steps: int, seed: int = 0):
    rng = random.Random(seed)
    batch = []
    for group_id in range(groups):
        outcomes = [member < 1 + group_id % (group_size - 1) for member in range(group_size)]  # always mixed
        rng.shuffle(outcomes)
        for member, success in enumerate(outcomes):
            turns = [(" ".join(rng.choices(WORDS, k=rng.randint(5, 12))), " ".join(rng.choices(WORDS, k=rng.randint(2, 4))),
                      "You see " + " ".join(rng.choices(WORDS, k=rng.randint(8, 16)))) for _ in range(steps)]
            batch.append(make_trajectory(f"{SYSTEM}\nTask {group_id}: put a mug in the fridge.", turns,
                                         success=success, group_id=group_id, trajectory_id=f"{group_id}/{member}",
                                         seed=group_id * 100 + member))
    return batch


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peer-token-budget", type=int, default=256)
    parser.add_argument("--naive-trajectories", type=int, default=16, help="trajectories timed on both rescoring paths")
    parser.add_argument("--rows-per-pass", type=int, default=1, help="AlgorithmConfig.max_rows_per_pass (1 is fastest on CPU)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = tiny_model()
    batch = make_batch(args.groups, args.group_size, args.steps)
    config = AlgorithmConfig(name="stepopsd", peer_token_budget=args.peer_token_budget,
                             max_rows_per_pass=args.rows_per_pass)
    groups = {}
    for traj in batch:
        groups.setdefault(traj.group_id, []).append(traj)
    hindsight = [byte_ids(hindsight_text(t, groups[t.group_id], config.hindsight_mode, correctness_line=True,
                                         peer_token_budget=config.peer_token_budget, count_tokens=lambda s: len(byte_ids(s))))
                 for t in batch]
    total_tokens = sum(len(t.token_ids) for t in batch)
    hindsight_tokens = sum(len(h) * t.num_steps for t, h in zip(batch, hindsight))
    print(f"batch: {len(batch)} trajectories x {args.steps} steps, {total_tokens / len(batch):.0f} tokens each, "
          f"hindsight {sum(map(len, hindsight)) / len(batch):.0f} tokens each (peer budget {args.peer_token_budget}), "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {args.threads} thread(s)")

    compute_advantages(batch[:4], config, teacher=model, tokenize=byte_ids)  # warm-up
    grpo_s, _ = timed(lambda: compute_advantages(batch, AlgorithmConfig(name="grpo")))
    step_s, result = timed(lambda: compute_advantages(batch, config, teacher=model, tokenize=byte_ids))
    print(f"advantage stage: grpo {grpo_s:.3f} s, stepopsd {step_s:.2f} s "
          f"({result.stats['rescore/trajectories']:.0f} trajectories rescored)")

    with torch.no_grad():
        bound_s, _ = timed(lambda: [
            model(input_ids=torch.tensor([list(t.token_ids) + h * t.num_steps]), use_cache=False, logits_to_keep=1)
            for t, h in zip(batch, hindsight)])
    print(f"bound (one forward over T + K*H = {(total_tokens + hindsight_tokens) / len(batch):.0f} tokens per "
          f"trajectory): {bound_s:.2f} s; stepopsd stage / bound = {step_s / bound_s:.2f}")

    correctness_only = [byte_ids(f"<hindsight>\nfinal_correctness: {'correct' if t.success else 'incorrect'}\n</hindsight>\n")
                        for t in batch]
    paths = {label: compare_paths(model, batch[:args.naive_trajectories], blocks, config, label)
             for label, blocks in (("peer block", hindsight), ("correctness line only", correctness_only))}
    if args.record is not None:
        write_record(args.record, {"trajectories": len(batch), "steps": args.steps, "threads": args.threads,
                                   "grpo_s": grpo_s, "stepopsd_s": step_s, "bound_s": bound_s,
                                   "stepopsd_over_bound": step_s / bound_s, "rescoring": paths})


def compare_paths(model, trajectories, blocks, config, label: str) -> dict[str, float]:
    """Efficient vs naive rescoring, and efficient vs the bound, on the same trajectories; printed and returned."""
    jobs = [(t, step_windows(t, target_mask_and_step_ids(t, config.span_mode)[0]), h) for t, h in zip(trajectories, blocks)]
    fast_s, _ = timed(lambda: [teacher_logprobs(model, t.token_ids, w, h, max_rows_per_pass=config.max_rows_per_pass)
                               for t, w, h in jobs])
    naive_s, _ = timed(lambda: [teacher_logprobs_naive(model, t.token_ids, w, h) for t, w, h in jobs])
    with torch.no_grad():
        bound_s, _ = timed(lambda: [
            model(input_ids=torch.tensor([list(t.token_ids) + h * t.num_steps]), use_cache=False, logits_to_keep=1)
            for t, _, h in jobs])
    context = sum(w.insert_at - w.context_start for _, ws, _ in jobs for w in ws)
    per_step = sum(len(h) + w.end - w.insert_at for _, ws, h in jobs for w in ws)
    naive_tokens = context + per_step
    fast_tokens = sum(len(t.token_ids) for t, _, _ in jobs) + per_step
    figures = {"hindsight_tokens": sum(map(len, blocks[:len(jobs)])) / len(jobs), "efficient_s": fast_s,
               "naive_s": naive_s, "speedup": naive_s / fast_s, "token_speedup": naive_tokens / fast_tokens,
               "efficient_over_bound": fast_s / bound_s}
    print(f"rescoring {len(jobs)} trajectories, {label} (H = {figures['hindsight_tokens']:.0f}): "
          f"efficient {fast_s:.2f} s, naive {naive_s:.2f} s, speedup {figures['speedup']:.2f}x "
          f"(token-count speedup {figures['token_speedup']:.2f}x); efficient / bound = {figures['efficient_over_bound']:.2f}")
    return figures


if __name__ == "__main__":
    main()
