"""Credit audits: where does StepOPSD's credit land, on an env with exact mistake labels?

    python benchmarks/bench_credit_audit.py --seeds 0 1 2 --out runs/credit_lab     # one process per seed
    python benchmarks/bench_credit_audit.py --report --out runs/credit_lab           # pool, table, plot, docs
    python benchmarks/bench_credit_audit.py --setup errandchain-eight-hindsight --start-model M \
        --seeds 0 1 2 3 4 5 6 7 --groups 8 --out /tmp/audit   # then copy /tmp/audit/seed-*.json to ARCHIVE
    python benchmarks/bench_credit_audit.py --setup errandchain-eight-hindsight --report --out ARCHIVE

Each setup (``SETUPS``) names a shipped config, the teacher's hindsight arms and its docs section;
``--report`` writes that section from the seeds' records (``seed-*.json``, small: the archive, e.g.
benchmarks/results/credit-audit/SETUP; each seed's folder beside it holds its trajectories, too big to keep). The default setup, the credit lab, per seed (config ``credit-lab``): build the tiny model, SFT it on the oracle expert of
stepopsd/ForkedErrand-v0 in hidden-answer mode (which parcel is right is never shown: every rollout guesses, so groups are
mixed by construction and only a successful peer knows the answer), plus the same expert steps
after the hindsight block the teacher is shown (``SFTConfig.hindsight_rows``: the tiny teacher
learns to read it, as a pretrained LLM does without training). Then roll out groups of 8 and
audit every failed trajectory of a mixed group: the AUC with which each arm's step credit ranks
the labelled mistake step (the wrong parcel) above the harmless steps. The teacher is the SFT
policy itself (the stale snapshot at the start of RL). Seeds already done (their JSON exists)
are skipped, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from docs_section import write_docs_section
from stepopsd.lab.credit_audit import HINDSIGHT_CONTROLS

CLIP_GRID = (0.05, 0.2, 0.5, 0.9)  # Eq. 3's alpha_clip: how much of Delta's ranking each clip keeps


@dataclass(frozen=True)
class AuditSetup:
    """One audit: the config its episodes and algorithm come from, the teacher's hindsight arms, its docs section."""

    title: str
    config: str  # a shipped config: env, rollout and algorithm settings
    overrides: dict[str, object]
    controls: tuple[str, ...]  # the teacher's hindsight arms (stepopsd.lab.credit_audit.CONTROLS)
    goal: float  # the Delta AUC the teacher with the group's peer should reach
    figure: str  # under docs/


TEACHER_AUDITS = {  # setup -> (title, peer view): an ErrandChain start's teacher, audited on its own rollouts before RL
    # the benchmark's start trained with hindsight rows
    "errandchain-eight-hindsight": (
        "The ErrandChain start's teacher before RL (eight errands, hindsight rows, its own rollouts)", "actions"),
    # the second: hindsight rows cut from the careless episodes, half with a swapped peer
    "errandchain-eight-teacher": (
        "The second ErrandChain teacher before RL (rows from the careless episodes, half with a swapped peer)",
        "actions"),
    # the third: its rows' peers also the careless demonstrator's wins of other careless draws
    "errandchain-eight-teacher-draws": (
        "The third ErrandChain teacher before RL (peers with recovered mistakes, as RL's wins hold)", "actions"),
    # the third teacher's phase run 2000 steps longer (5000 in all, 1.5 passes over its rows)
    "errandchain-eight-teacher-longer": (
        "The third ErrandChain teacher after a longer second phase (5000 steps)", "actions"),
    # the fourth: the third's rows with the peer written as the deliveries its env accepted
    "errandchain-eight-teacher-outcomes": (
        "The fourth ErrandChain teacher before RL (the peer written as what it delivered)", "outcomes"),
    # the fifth, built on a model drilled to find an errand's line in a block: the fourth's rows from the first step
    "errandchain-eight-teacher-drilled": (
        "The fifth ErrandChain teacher before RL (built on the drilled model, hindsight rows from the first step)",
        "outcomes"),
    # ... and the fourth teacher's two phases on the drilled model
    "errandchain-eight-teacher-drilled-two-phase": (
        "The fifth ErrandChain teacher before RL (the fourth's two phases on the drilled model)", "outcomes"),
}
SETUPS = {
    "credit-lab": AuditSetup("Credit lab: where StepOPSD's credit lands (ForkedErrand, hidden answer)", "credit-lab",
                             {}, HINDSIGHT_CONTROLS, 0.85, "figures/credit_lab.png"),
    **{setup: AuditSetup(title, "learning-errandchain-eight", {"algorithm.peer_view": view},
                         ("none", "peer_trajectory", "swapped_peer"), 0.8, f"figures/credit-audit-{setup}.png")
       for setup, (title, view) in TEACHER_AUDITS.items()},
}
BEHAVIOURS = {  # --behaviour: who plays the audited episodes, as the docs say it
    "policy": "the start model plays its own episodes, sampled as in RL, and is the teacher (the stale snapshot "
              "at the start of RL)",
    "guessing-expert": "the env's expert plays every ordinary step and picks the parcel at random (what a "
                       "competent hidden-mode policy does), and the SFT policy's log-probs are the behaviour "
                       "log-probs; the teacher is that SFT policy, trained on the hindsight rows",
}


def docs_marker(setup: str) -> str:
    return f"<!-- {setup} -->"


def lab_config(seed: int, args):
    """The setup's config with this seed's model, SFT and sampling seeds."""
    from stepopsd.config import load_train_config

    setup = SETUPS[args.setup]
    return load_train_config(setup.config, {**setup.overrides, "run.seed": seed, "model.tiny.seed": seed,
                                            "sft.seed": seed, "rollout.seed": seed, "sft.steps": args.sft_steps})


def warm_start(seed: int, folder: Path, config, started: float):
    """The tiny model, SFT-warmed by the one warm start (expert + hindsight rows); saved for resuming."""
    from stepopsd.policy import load_policy, save_policy
    from stepopsd.lab.tiny import build_tiny_model
    from stepopsd.lab.warm_start import sft_warm_start

    build_tiny_model(folder / "tiny", config.model.tiny)
    policy = load_policy(folder / "tiny")
    report_every = max(1, config.sft.steps // 10)
    report = sft_warm_start(policy, config, on_step=lambda step, loss: print(
        f"seed {seed}: sft step {step + 1}/{config.sft.steps} loss {loss:.3f} ({time.perf_counter() - started:.0f} s)",
        flush=True) if (step + 1) % report_every == 0 else None)
    print(f"seed {seed}: SFT on {report.won} expert episodes + {report.hindsight_rows} hindsight rows, "
          f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    save_policy(policy, folder / "sft_model")
    (folder / "sft_losses.json").write_text(json.dumps(report.losses))
    return policy, report.losses


def guessing_expert(policy, protocol, seed: int):
    """A responder that plays the env's expert action, except that it picks the parcel at random
    among the admissible ones: what a competent policy does in hidden mode. Every failure is then
    exactly one labelled mistake."""
    import random

    from stepopsd.policy import Sample, encode
    from stepopsd_envs.protocol import expert_text

    rng = random.Random(seed)

    def respond(requests):
        samples = []
        for request in requests:
            action = request.info["expert_action"]
            if action.startswith("take parcel"):
                action = rng.choice(sorted(a for a in request.info["admissible_actions"] if a.startswith("take parcel")))
            text = expert_text(protocol, action)
            ids = encode(policy, text) + [policy.tokenizer.eos_token_id]
            samples.append(Sample(tuple(ids), (0.0,) * len(ids), text, "eos"))
        return samples

    return respond


def with_policy_logprobs(policy, trajectories, temperature: float):
    """The trajectories with behaviour log-probs recomputed by ``policy`` on each step's own context."""
    import torch

    from stepopsd.algo.rescore import step_windows, teacher_logprobs

    rescored = []
    for traj in trajectories:
        generated = torch.tensor(traj.trainable_mask, dtype=torch.bool)
        logprobs, _ = teacher_logprobs(policy.model, traj.token_ids, step_windows(traj, generated), (),
                                       temperature=temperature)
        rescored.append(dataclasses.replace(traj, behaviour_logprobs=tuple(logprobs.tolist())))
    return rescored


def seed_start_model(args, seed: int) -> Path | None:
    """``--start-model`` with ``{seed}`` filled in (one independently warmed teacher per seed), or None."""
    return None if args.start_model is None else Path(str(args.start_model).replace("{seed}", str(seed)))


def run_seed(seed: int, args) -> dict:
    import torch

    from stepopsd.lab.credit_audit import audit_credit
    from stepopsd.policy import encode, load_policy
    from stepopsd.rollout import Task, make_envs, rollout_in_chunks
    from stepopsd.tasks import seed_for
    from stepopsd.trajectory_io import save_trajectories

    torch.manual_seed(seed)
    started = time.perf_counter()
    folder = args.out / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = lab_config(seed, args)
    start_model = seed_start_model(args, seed)
    if start_model is not None:  # a model warmed elsewhere: no SFT here
        policy, losses = load_policy(start_model), []
    elif (folder / "sft_model" / "config.json").is_file():  # a killed run resumes after its warm start
        policy = load_policy(folder / "sft_model")
        losses = json.loads((folder / "sft_losses.json").read_text())
    else:
        policy, losses = warm_start(seed, folder, config, started)
    envs = make_envs(config.env.env_id, 32, **config.env.train_kwargs)
    tasks = [Task(seed=seed_for(seed, 1, k)) for k in range(args.groups)]
    respond = guessing_expert(policy, envs[0].unwrapped.protocol, seed) if args.behaviour == "guessing-expert" else None
    trajectories = rollout_in_chunks(policy, envs, tasks, config.rollout, respond=respond)
    if respond is not None:
        trajectories = with_policy_logprobs(policy, trajectories, config.rollout.sampling.temperature)
    save_trajectories(trajectories, folder / "trajectories.jsonl")  # stepopsd credit-audit reads it too
    result = audit_credit(trajectories, config.algorithm, teacher=policy.model, tokenize=lambda text: encode(policy, text),
                          temperature=config.rollout.sampling.temperature, clip_grid=CLIP_GRID,
                          controls=SETUPS[args.setup].controls, control_seed=seed)
    for env in envs:
        env.close()
    record = {
        "seed": seed, "setup": args.setup, "behaviour": args.behaviour, "out": str(args.out), "groups": args.groups,
        "num_trajectories": len(trajectories),
        "num_audited": result.num_audited, "success": sum(t.success for t in trajectories) / len(trajectories),
        "sft_loss": [losses[0], losses[-1]] if losses else None, "sft_steps": len(losses),
        "start_model": str(start_model) if start_model else None,
        "start_model_arg": str(args.start_model) if args.start_model else None, "wall_s": time.perf_counter() - started,
        "per_trajectory": result.per_trajectory, "table": result.table,
    }
    (args.out / f"seed-{seed}.json").write_text(json.dumps(record))
    print(f"seed {seed}: {result.num_audited} audited of {len(trajectories)} "
          f"(success {record['success']:.2f}), {record['wall_s']:.0f} s", flush=True)
    return record


def report(args) -> None:
    from stepopsd.lab.credit_audit import clip_table, markdown_table, plot_table, summarize_clusters

    records = [json.loads(p.read_text()) for p in sorted(args.out.glob("seed-*.json"))]
    if not records:
        raise SystemExit(f"no seed-*.json in {args.out}: run the seeds first")
    setup = SETUPS[args.setup]
    pooled_table = summarize_clusters([r["per_trajectory"] for r in records])  # the CI resamples seeds (teachers) too
    table = markdown_table(pooled_table)
    clips = clip_table(pooled_table)
    audited = sum(r["num_audited"] for r in records)
    successes = ", ".join(f"{r['success']:.2f}" for r in records)
    walls = ", ".join(f"{r['wall_s'] / 60:.1f}" for r in records)
    summary = (f"{len(records)} seeds ({', '.join(str(r['seed']) for r in records)}), "
               f"{audited} failed trajectories of mixed groups audited "
               f"({', '.join(str(r['num_audited']) for r in records)} per seed) of "
               f"{sum(r['num_trajectories'] for r in records)}; sampled success {successes}; "
               f"{start_models_line(records)}; wall time per seed {walls} min (one CPU thread each). "
               f"{verdict(pooled_table, records, setup.goal)}")
    print(summary)
    print(table)
    print(clips)
    figure = Path("docs") / setup.figure
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_table(pooled_table, figure)
    seeds = " ".join(str(r["seed"]) for r in records)
    start = (f"--start-model {records[0].get('start_model_arg') or records[0]['start_model']}"
             if records[0].get("start_model") else f"--sft-steps {records[0]['sft_steps']}")
    teacher_arms = " / ".join(f"`{arm}`" for arm in setup.controls)
    marker = docs_marker(args.setup)
    section = "\n".join([
        marker, f"## {setup.title}", "",
        f"Made by `python benchmarks/bench_credit_audit.py --setup {args.setup} --seeds {seeds} {start} --groups "
        f"{records[0]['groups']} --behaviour {records[0]['behaviour']} --out {records[0]['out']}` (one process "
        f"per seed, in parallel) then `python benchmarks/bench_credit_audit.py --setup {args.setup} --report --out "
        f"{args.out}` (this section and the figure are written by the script from the seeds' records, "
        f"`{args.out}/seed-*.json`). Config `{setup.config}`"
        + (f" with {', '.join(f'`{k} = {v}`' for k, v in setup.overrides.items())}" if setup.overrides else "")
        + f"; behaviour `{records[0]['behaviour']}`: {BEHAVIOURS[records[0]['behaviour']]}.", "",
        "Per-trajectory AUC with which each arm's step credit ranks the labelled mistake step(s) above the "
        "harmless steps of a failed trajectory in a mixed group; mean over trajectories pooled across seeds, "
        "bootstrap 95% CI resampling the seeds and their trajectories. 1 = the mistakes always get the most "
        "blame, 0.5 = no information. Rows: `grpo` (no teacher), `oracle` (Delta from the env's labels), "
        "`peer_diff` (Delta on the steps whose action differs from the peer's at the same index: the model-free "
        f"baseline), `gigpo` (anchor-state step advantages), and the SFT teacher with hindsight {teacher_arms}. "
        "Columns: Delta itself, and the shaped advantage (lambda = alpha = 0.2) before the budget and after "
        "each budget, measured as the step's credit over what it gets with Delta = 0.", "", summary, "", table,
        "", f"![{setup.title}]({setup.figure})", "",
        *(["How much of Delta's ranking Eq. 3's clip keeps: the `conserved_step_share` column recomputed from "
           "the same Delta with the weight clipped at 1 +- alpha_clip (the table above uses 0.2, the paper's).", "",
           clips, ""] if clips else []),
        marker,
    ])
    write_docs_section(Path("docs/benchmarks.md"), marker, section)


def start_models_line(records) -> str:
    """Where each seed's model came from: a given start model (shared or one per seed) or its own SFT."""
    models = [r.get("start_model") for r in records]
    if all(m is None for m in models):
        return "SFT loss " + ", ".join(f"{r['sft_loss'][0]:.2f}->{r['sft_loss'][1]:.3f}" for r in records)
    if len(set(models)) == 1:
        return f"the given start model {models[0]} for every seed (the seed fixes the rollouts)"
    return "start models " + ", ".join(f"seed {r['seed']}: {r.get('start_model') or 'its own SFT'}" for r in records)


def teacher_minus_baseline(records, arm: str, baseline: str = "peer_diff") -> dict[str, float]:
    """``arm``'s Delta AUC minus ``baseline``'s on the same trajectories: the pooled mean difference and
    its bootstrap 95% CI resampling the seeds and their trajectories (both arms score the same steps of
    the same audited trajectories, so a seed's two lists pair up)."""
    from stepopsd.lab.stats import cluster_bootstrap_ci

    differences = []
    for record in records:
        ours, theirs = record["per_trajectory"][arm]["delta"], record["per_trajectory"][baseline]["delta"]
        if len(ours) != len(theirs):
            raise ValueError(f"seed {record['seed']}: {len(ours)} AUCs of {arm} and {len(theirs)} of {baseline}")
        differences.append([a - b for a, b in zip(ours, theirs)])
    pooled = [d for seed in differences for d in seed]
    low, high = cluster_bootstrap_ci(differences)
    return {"mean": sum(pooled) / len(pooled), "ci_low": low, "ci_high": high}


def verdict(table, records, goal: float) -> str:
    """A plain-language reading of the hindsight teacher's Delta AUC against chance (0.5), the goal, the
    model-free peer diff, its controls and the oracle."""
    def reading(arm: str) -> str:
        cell = table[arm]["delta"]
        where = ("above chance" if cell["ci_low"] > 0.5 else "below chance" if cell["ci_high"] < 0.5
                 else "not distinguishable from chance")
        return f"{arm} {cell['mean']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}], {where}"
    peer = table["peer_trajectory"]["delta"]
    found = "singles out" if peer["ci_low"] > 0.5 else "does not single out"
    controls = [arm for arm in table if arm not in ("grpo", "oracle", "peer_trajectory", "gigpo")]
    versus = teacher_minus_baseline(records, "peer_trajectory")
    side = ("above" if versus["ci_low"] > 0 else "below" if versus["ci_high"] < 0 else "not distinguishable from")
    return (f"Reading: the hindsight teacher {found} the mistake step (Delta AUC {reading('peer_trajectory')}; goal "
            f">= {goal:g}); {'; '.join(reading(arm) for arm in controls)}. Teacher minus the model-free peer diff on "
            f"the same trajectories: {versus['mean']:+.3f} [{versus['ci_low']:+.3f}, {versus['ci_high']:+.3f}], "
            f"{side} it. The shaping maths passes a perfect teacher's signal through (oracle "
            f"{table['oracle']['conserved_step_share']['mean']:.3f} after conserved_step_share, "
            f"{table['oracle']['equal_step_mean_abs']['mean']:.3f} after the paper's budget).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=sorted(SETUPS), default="credit-lab",
                        help="which audit: its config, the teacher's hindsight arms and its docs section")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--groups", type=int, default=16, help="GRPO groups of 8 rolled out per seed")
    parser.add_argument("--sft-steps", type=int, default=500)
    parser.add_argument("--start-model", type=Path, default=None,
                        help="an SFT model to audit instead of warming one up (its provenance is yours to state); "
                             "{seed} in the path is replaced by the seed (one teacher per seed); the seed still "
                             "fixes the rollouts")
    parser.add_argument("--behaviour", choices=list(BEHAVIOURS), default="policy",
                        help="who plays the audited episodes: the SFT policy, or the env's expert guessing the "
                             "parcel (log-probs from the SFT policy; every failure is one labelled mistake)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="pool the seeds' JSON, print, plot and update docs")
    parser.add_argument("--out", type=Path, default=Path("runs/credit_lab"))
    args = parser.parse_args()
    if args.report:
        return report(args)
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        if (args.out / f"seed-{seed}.json").exists():
            print(f"seed {seed}: done already, skipped")
            continue
        run_seed(seed, args)


if __name__ == "__main__":
    main()
