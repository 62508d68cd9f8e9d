"""The training config: one dataclass per concern, gathered in :class:`TrainConfig`.

``stepopsd train --config quickstart|PATH`` reads a TOML file (ready ones ship in
``stepopsd/configs/``); every field can be overridden on the command line with
``--set section.field=value`` (``stepopsd config`` lists them all with the comment written
beside each field here). This module imports no torch, so the command line starts fast; the
torch modules (policy, rollout, credit, sft, ...) import their config and its allowed values
from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from stepopsd.choices import (  # the values the string fields below accept
    ALGORITHM_NAMES, ALPHA_CLIP_RANGE, CARELESS_CHOICES, COLLAPSE_ACTIONS, CONTEXT_MODES, GIGPO_EPISODE_NORMS,
    HINDSIGHT_MODES, HINDSIGHT_ROW_CONTEXTS, HINDSIGHT_ROW_PEERS, HINDSIGHT_TARGETS, LAMBDA_RANGE,
    LAMBDA_SCHEDULE_UNITS, LOSS_AGGREGATIONS, MISTAKE_LABELS, ORACLE_SIDES, OVERFLOW_POLICIES, PEER_VIEWS, SPAN_MODES, STEP_BUDGETS, TEACHER_MODES, WEIGHT_FNS,
)
from stepopsd.configtree import (
    ConfigError, at_least, check_choices, check_fields, config_to_dict, finite_above, finite_at_least, in_range, resolve_config,
    to_toml, within,
)

MODEL_DTYPES = ("float32", "bfloat16", "float16", "fp32", "bf16")  # what stepopsd.policy.load_policy accepts
THINKING_MODES = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class TinyModelSpec:
    """Size of the tiny Qwen3 model and its tokenizer (defaults: ~1.2M parameters), which
    :mod:`stepopsd.lab.tiny` builds when ``model.path`` is empty (declared here, as plain data, so the
    config imports no model code)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 8192
    seed: int = 0
    searchqa_text: bool = False  # also train the tokenizer on a generated Search-QA world's transcripts
    searchqa_world: dict = field(default_factory=dict)  # and on this world's passages (the env's world= keys), so its names are whole tokens
    alfworld_text: bool = False  # also on ALFWorld prompts of generated scenes (every object and receptacle name)

    def __post_init__(self) -> None:
        check_fields("model.tiny", self, {
            "vocab_size": at_least(1), "hidden_size": at_least(1), "intermediate_size": at_least(1),
            "num_hidden_layers": at_least(1), "num_attention_heads": at_least(1),
            "num_key_value_heads": (lambda kv: kv >= 1 and self.num_attention_heads % kv == 0,
                                    f"divide num_attention_heads ({self.num_attention_heads})"),
            "head_dim": (lambda dim: dim >= 2 and dim % 2 == 0, "be even and at least 2 (rotary embeddings)"),
            "max_position_embeddings": at_least(1),
        })
        if self.searchqa_world:  # the envs package is imported only by a spec that needs it
            from stepopsd_envs.searchqa.world import WORLD_OPTIONS

            check_fields("model.tiny", self, {"searchqa_world": (lambda world: set(world) <= set(WORLD_OPTIONS),
                                                                f"take only the keys {', '.join(WORLD_OPTIONS)}")})


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train."""

    path: str = ""  # local folder or hub id loaded with from_pretrained; "" builds the tiny local model
    dtype: str = "float32"  # float32 | bfloat16 | float16
    lora_rank: int = 0  # > 0 trains LoRA adapters of this rank (needs peft)
    thinking: str = "auto"  # Qwen3 thinking mode in the chat template: auto | on | off
    tiny: TinyModelSpec = TinyModelSpec()

    def __post_init__(self) -> None:
        check_choices("model", self, {"dtype": MODEL_DTYPES, "thinking": THINKING_MODES})
        check_fields("model", self, {"lora_rank": at_least(0)})


@dataclass(frozen=True)
class EnvConfig:
    """Which environment the agent trains and is evaluated in."""

    env_id: str = "stepopsd/ALFWorld-v0"  # a registered env id (stepopsd envs lists them)
    train_kwargs: dict = field(default_factory=dict)  # keyword arguments of gymnasium.make for training envs
    eval_kwargs: dict = field(default_factory=dict)  # keyword arguments of gymnasium.make for evaluation envs
    eval_episodes: int = 32  # evaluation episodes (envs with a game list: at most one per game)

    def __post_init__(self) -> None:
        check_fields("env", self, {"env_id": (bool, "name a registered env (`stepopsd envs` lists them)"),
                                   "eval_episodes": at_least(1)})


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """How one batched generate call samples (``temperature=0`` means greedy)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k; transformers' default of 50 would bias RL sampling
    max_new_tokens: int = 128
    stop_strings: tuple[str, ...] = ("</action>",)  # generation stops at these, and at the env protocol's own (rollout)

    def __post_init__(self) -> None:
        check_fields("rollout.sampling", self, {
            "temperature": finite_at_least(0), "top_p": (lambda p: 0 < p <= 1, "lie in (0, 1]"),
            "top_k": at_least(0), "max_new_tokens": at_least(1),
            "stop_strings": (lambda strings: all(isinstance(s, str) and s for s in strings), "hold non-empty strings"),
        })


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    """How trajectories are collected (one field per knob)."""

    group_size: int = 1  # n rollouts per task (a GRPO group)
    context_mode: str = "full"  # "full" conversation or sliding "window" of the last history_steps
    history_steps: int = 3  # H: steps shown in a window prompt (and after a history truncation)
    max_context_tokens: int = 4096  # prompt + max_new_tokens must fit
    on_overflow: str = "truncate_history"  # or "end_episode" (truncated)
    max_turns: int = 50  # safety cap on top of the env's own TimeLimit
    show_admissible_actions: bool = False  # append info["admissible_actions"] to observation messages
    env_workers: int = 1  # threads stepping envs in parallel (useful for envs that release the GIL)
    turn_cache: bool = True  # keep each episode's KV cache between turns (stepopsd.turn_cache); False: generate()
    seed: int = 0  # torch seed of the sampling
    sampling: SamplingConfig = SamplingConfig()

    def __post_init__(self) -> None:
        check_choices("rollout", self, {"context_mode": CONTEXT_MODES, "on_overflow": OVERFLOW_POLICIES})
        check_fields("rollout", self, {
            "group_size": at_least(1), "history_steps": at_least(0), "max_context_tokens": at_least(1),
            "max_turns": at_least(1), "env_workers": at_least(1),
        })


@dataclass(frozen=True)
class AlgorithmConfig:
    """Every hyperparameter of the credit-assignment stage (defaults: docs/algorithm.md)."""

    name: str = "stepopsd"  # stepopsd | grpo | rlsd | opd | oracle | gigpo | oracle_signed | peer_diff
    alpha_clip: float = 0.2  # Eq. 3 weight clip: w in [1 - alpha_clip, 1 + alpha_clip]
    lambda_0: float = 0.2  # Eq. 4 mixing weight at optimizer step 0
    lambda_decay_steps: int = 50  # lambda falls linearly to 0 over this many schedule steps (<= 0: constant)
    lambda_schedule_unit: str = "optimizer_step"  # what the schedule counts: optimizer_step (from 0) | iteration (from 1, as the author's code)
    weight_fn: str = "sigmoid"  # Eq. 3: sigmoid (2*sigmoid) | exp (stepopsd only; rlsd always uses exp)
    span_mode: str = "action_only"  # target span per step: action_only | clean_step | final_answer_only
    hindsight_mode: str = "peer_trajectory"  # none | correctness | peer_trajectory
    hindsight_for: str = "failed"  # who gets a peer: failed (of mixed groups) | failed_and_won (a win too: its cleanest other win)
    correctness_line: bool = True  # put "final_correctness: ..." in the peer_trajectory block
    peer_token_budget: int = 1024  # max tokens of the peer text (middle truncated beyond)
    peer_view: str = "steps"  # the peer in the block: steps | actions (one line per step) | outcomes (info["outcome"])
    step_budget: str = "equal_step_mean_abs"  # per-step credit budget: equal_step_mean_abs | conserved_step_share | none
    budget_clip: float = 2.0  # C: step factors c_k clipped to [1/C, C]
    opd_beta: float = 0.1  # opd: additive coefficient of Delta
    oracle_gap: float = 5.0  # oracle: Delta = -oracle_gap on the target tokens of steps labelled a mistake
    oracle_label: str = "mistake"  # oracle: mistake (the env's info["mistake"]) | expert_action (noisy)
    oracle_sides: str = "mistakes"  # oracle: Delta on mistakes only | two_sided (+oracle_gap on harmless decisive steps too)
    peer_diff_gap: float = 5.0  # peer_diff: Delta = -peer_diff_gap on the targets of a step whose action differs from the peer's at its index
    oracle_step_reward: float = 1.0  # oracle_signed: added to A on a labelled step's tokens (- on mistakes, + on harmless decisive steps)
    gigpo_gamma: float = 0.95  # gigpo: discount of the step returns
    gigpo_omega: float = 1.0  # gigpo: weight of the anchor-state step advantage added to the episode one
    gigpo_episode_norm: str = "trajectory"  # gigpo episode part: trajectory (GiGPO paper Eq. 3) | step_rows (verl-agent's default)
    teacher_refresh_steps: int = 10  # stale teacher refreshed every N optimizer steps
    teacher_mode: str = "stale"  # stale | live
    normalize_std: bool = True  # GRPO: divide by the group std
    max_rows_per_pass: int = 16  # rescoring: most windows in one teacher forward (memory; 1 is fastest on a CPU)

    def __post_init__(self) -> None:
        choices = {
            "name": ALGORITHM_NAMES, "weight_fn": WEIGHT_FNS, "span_mode": SPAN_MODES,
            "hindsight_mode": HINDSIGHT_MODES, "step_budget": STEP_BUDGETS, "teacher_mode": TEACHER_MODES,
            "oracle_label": MISTAKE_LABELS, "oracle_sides": ORACLE_SIDES, "gigpo_episode_norm": GIGPO_EPISODE_NORMS,
            "lambda_schedule_unit": LAMBDA_SCHEDULE_UNITS, "hindsight_for": HINDSIGHT_TARGETS,
            "peer_view": PEER_VIEWS,
        }
        check_choices("algorithm", self, choices)
        check_fields("algorithm", self, {
            "alpha_clip": in_range(ALPHA_CLIP_RANGE), "lambda_0": in_range(LAMBDA_RANGE),
            "peer_token_budget": at_least(1), "budget_clip": finite_at_least(1), "opd_beta": finite_at_least(0),
            "oracle_gap": finite_at_least(0), "oracle_step_reward": finite_at_least(0), "gigpo_gamma": within(0, 1), "gigpo_omega": finite_at_least(0),
            "peer_diff_gap": finite_at_least(0),
            "teacher_refresh_steps": at_least(1), "max_rows_per_pass": at_least(1),
        })


@dataclass(frozen=True)
class OptimConfig:
    """The policy optimizer and PPO epochs."""

    lr: float = 1e-6  # AdamW learning rate (paper: 1e-6 for billion-parameter models)
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping (global norm)
    ppo_epochs: int = 1  # passes over each iteration's batch
    minibatches: int = 1  # optimizer steps per epoch (the batch's rows split evenly)
    micro_batch_rows: int = 8  # rows per forward/backward (gradient accumulation inside a minibatch)
    clip_ratio: float = 0.2  # PPO clip epsilon
    clip_ratio_c: float = 0.0  # dual clip: a negative-advantage token's loss is capped at -c * A (verl: 3; 0: off)
    log_ratio_clamp: float = 0.0  # clamp log(pi / pi_old) to +-this before exp (verl: 20; 0: off)
    kl_coef: float = 0.0  # k3 KL to the teacher snapshot (paper: ALFWorld 0.01, Search-QA 0.001)
    kl_value_cap: float = 0.0  # cap each token's k3 KL value (verl: 10; 0: off)
    entropy_coef: float = 0.0  # entropy bonus
    loss_aggregation: str = "token_mean"  # token_mean (paper) | trajectory_mean | seq_mean_token_sum_norm (Dr. GRPO) (algo.loss)
    shared_prefix: bool = True  # forward the prefix a micro-batch's rows share (a group's prompt) once; one process only

    def __post_init__(self) -> None:
        check_fields("optim", self, {
            "lr": finite_above(0), "weight_decay": finite_at_least(0), "max_grad_norm": finite_above(0),
            "ppo_epochs": at_least(1), "minibatches": at_least(1), "micro_batch_rows": at_least(1),
            "clip_ratio": finite_above(0), "kl_coef": finite_at_least(0), "entropy_coef": finite_at_least(0),
            "clip_ratio_c": (lambda c: c == 0 or c > 1, "be 0 (off) or above 1 (verl's dual clip needs c > 1)"),
            "log_ratio_clamp": finite_at_least(0), "kl_value_cap": finite_at_least(0),
        })
        check_choices("optim", self, {"loss_aggregation": LOSS_AGGREGATIONS})


@dataclass(frozen=True, slots=True)
class SFTConfig:
    """Supervised fine-tuning on expert trajectories."""

    steps: int = 200  # optimizer steps
    batch_rows: int = 32  # sequences per step: a whole trajectory (full mode) or one step's prompt + response (window)
    lr: float = 1e-3  # AdamW learning rate (1e-3 suits the tiny model; ~1e-5 for billion-parameter ones)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    hindsight_rows: bool = False  # also train on each expert step after a hindsight block (a tiny teacher learns to read it)
    hindsight_peer: str = "self_if_alone"  # won rows' peer: self_if_alone (another win of the task, else itself) | other_episode (a slip replay of the scene); careless rows draw among the scene's other wins
    hindsight_contexts: str = "won"  # rows' steps: won (the expert's, as they were) | careless (the careless episodes', the expert's action as target)
    hindsight_swap: float = 0.0  # careless rows: share of episodes shown a parcel-swapped peer, the takes' targets following it
    hindsight_peer_draws: int = 0  # careless rows: peers also from the env's careless demonstrator with this many other careless draws
    stop_at_success: float = 0.0  # stop at the first check whose greedy success reaches this (0: run all steps)
    check_every: int = 50  # steps between checks (only with stop_at_success)
    check_episodes: int = 32  # greedy episodes per check, on training-env tasks no rollout or evaluation uses
    save_every: int = 0  # steps between saves of the phase's state (RUN/sft_state): a build killed midway goes on from it (0: none)
    careless_rate: float = 0.0  # share of the episodes played by a careless demonstrator, kept won or lost
    careless_verb: str = "take"  # the careless demonstrator's choice: an admissible command with this verb ...
    careless_choice: str = "first"  # ... the first as listed ("first"), a random wrong one ("random_wrong"); "env": the env's own (info["careless_action"])
    then: dict = field(default_factory=dict)  # a second phase after this one: the sft fields it changes, e.g. {steps = 300, careless_rate = 0.6}

    def __post_init__(self) -> None:
        check_fields("sft", self, {"steps": at_least(0), "batch_rows": at_least(1), "lr": finite_above(0),
                                   "weight_decay": finite_at_least(0), "max_grad_norm": finite_above(0),
                                   "stop_at_success": within(0, 1), "check_every": at_least(1),
                                   "check_episodes": at_least(1), "save_every": at_least(0), "careless_rate": within(0, 1),
                                   "hindsight_swap": within(0, 1), "hindsight_peer_draws": at_least(0)})
        check_choices("sft", self, {"careless_choice": CARELESS_CHOICES, "hindsight_peer": HINDSIGHT_ROW_PEERS,
                                    "hindsight_contexts": HINDSIGHT_ROW_CONTEXTS})
        self.phases()  # sft.then's keys and values are checked here, not when the phase runs

    def phases(self) -> list[SFTConfig]:
        """The SFT phases in order: this one, then ``then``'s (this config with those fields changed)."""
        if not self.then:
            return [self]
        fields = {f.name for f in dataclasses.fields(self)} - {"then"}
        unknown = sorted(set(self.then) - fields)
        if unknown:
            raise ConfigError(f"sft.then: unknown sft field {unknown[0]!r} (it takes {', '.join(sorted(fields))})")
        try:
            second = dataclasses.replace(self, then={}, **self.then)
        except ConfigError as error:
            raise ConfigError(f"sft.then: {error}") from None
        return [self, second]


@dataclass(frozen=True)
class RunConfig:
    """Length, cadence and bookkeeping of a run."""

    iterations: int = 100  # RL iterations (rollout -> advantages -> update)
    tasks_per_iteration: int = 16  # tasks per iteration, each rolled out group_size times (all ranks together)
    eval_every: int = 10  # evaluate every N iterations (0: only before and after training)
    eval_before: bool = True  # evaluate the start before the first iteration (benchmark runs sharing a start: once)
    checkpoint_every: int = 10  # checkpoint every N iterations (0: only at the end)
    keep_checkpoints: int = 2  # complete checkpoints kept on disk
    save_trajectories_every: int = 10  # dump an iteration's trajectories with their credit (0: never)
    seed: int = 0  # seed of tasks, sampling and minibatch order
    sft_expert_episodes: int = 64  # expert episodes replayed for the SFT warm start (when sft.steps > 0)
    tensorboard: bool = False  # also log to TensorBoard (needs the tensorboard package)
    wandb_project: str = ""  # also log to this wandb project (needs wandb)
    progress: bool = True  # rich progress bars
    on_collapse: str = "warn"  # a health alarm (zero success, no mixed group, exploding ratio/KL): warn | stop

    def __post_init__(self) -> None:
        check_fields("run", self, {
            "iterations": at_least(1), "tasks_per_iteration": at_least(1), "eval_every": at_least(0),
            "checkpoint_every": at_least(0), "keep_checkpoints": at_least(1), "save_trajectories_every": at_least(0),
            "sft_expert_episodes": at_least(1),
        })
        check_choices("run", self, {"on_collapse": COLLAPSE_ACTIONS})


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``stepopsd train`` needs."""

    model: ModelConfig = ModelConfig()
    env: EnvConfig = EnvConfig()
    rollout: RolloutConfig = RolloutConfig(group_size=8)
    algorithm: AlgorithmConfig = AlgorithmConfig()
    optim: OptimConfig = OptimConfig()
    sft: SFTConfig = SFTConfig(steps=0)
    run: RunConfig = RunConfig()

    def __post_init__(self) -> None:
        context, new_tokens = self.rollout.max_context_tokens, self.rollout.sampling.max_new_tokens
        if context <= new_tokens:  # a lone RolloutConfig may (its rollout then ends every episode at once)
            raise ConfigError(f"rollout.max_context_tokens must exceed rollout.sampling.max_new_tokens ({new_tokens}) "
                              f"to leave room for the prompt, got {context}")


def builtin_config_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("stepopsd.configs").iterdir() if p.name.endswith(".toml"))


def config_file(name_or_path: str) -> Path:
    """A shipped config by name (``quickstart``) or a TOML path."""
    if name_or_path in builtin_config_names():
        return Path(str(resources.files("stepopsd.configs") / f"{name_or_path}.toml"))
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"no config {name_or_path!r}: not a file and not one of {', '.join(builtin_config_names())}")
    return path


def load_train_config(name_or_path: str | None, overrides: dict[str, object]) -> TrainConfig:
    """Defaults < the config file < dotted overrides (``{"algorithm.alpha_clip": 0.1}``)."""
    files = [config_file(name_or_path)] if name_or_path else []
    try:
        return resolve_config(TrainConfig, files, overrides)
    except (TypeError, ValueError) as error:  # dataclass __post_init__ checks included
        raise ConfigError(str(error)) from None


def save_train_config(config: TrainConfig, path: Path) -> None:
    path.write_text(to_toml(config_to_dict(config)) + "\n", encoding="utf-8")
