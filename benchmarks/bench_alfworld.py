"""ALFWorld env throughput and memory: bare TextWorld PDDL env vs stepopsd/ALFWorld-v0, single and vector.

Prints reset and step throughput on real valid_unseen games and on generated games, for
  * the bare engine (textworld PddlEnv + ALFWorld demangler, no stepopsd code), with the engine's
    caches of textworld's parses and PDDL translations and without them (textworld's own functions),
  * our env (protocol parsing, info, history) — the wrapper overhead is the step-time ratio,
  * gymnasium AsyncVectorEnv with 2 workers (speedup over the single env's steps/second),
and resident memory over repeated episodes (must stay flat: one engine per env, reused).

    ALFWORLD_DATA=../shared/data/alfworld python benchmarks/bench_alfworld.py            # ~4 min
    python benchmarks/bench_alfworld.py --memory-episodes 1000                            # long leak run

``--record FILE`` also writes the figures as JSON, with the command and commit (:func:`record.write_record`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium
import numpy as np
import psutil

import stepopsd_envs  # noqa: F401  (registers the envs)
from stepopsd_envs.alfworld.engine import AlfredEngine, uncached
from stepopsd_envs.alfworld.games import official_games
from stepopsd_envs.alfworld.generate import generated_games
from record import write_record

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alfworld"


def walkthroughs(games: list[Path]) -> list[list[str]]:
    """The expert plan of every game (read once, outside the timed loops)."""
    engine = AlfredEngine()
    plans = []
    for game in games:
        engine.load(game)
        engine.reset()
        plans.append(engine.walkthrough)
    return plans


def bench_bare(games, plans) -> dict[str, float]:
    """The engine alone: load + reset per game, then the walkthrough's steps."""
    engine = AlfredEngine()
    reset_s = step_s = 0.0
    steps = 0
    for game, plan in zip(games, plans):
        start = time.perf_counter()
        engine.load(game)
        engine.reset()
        reset_s += time.perf_counter() - start
        start = time.perf_counter()
        for command in plan:
            engine.step(command)
        step_s += time.perf_counter() - start
        steps += len(plan)
    return {"resets/s": len(games) / reset_s, "steps/s": steps / step_s, "step_ms": 1000 * step_s / steps}


def bench_ours(games, plans) -> dict[str, float]:
    """stepopsd/ALFWorld-v0: the same games and commands, as raw model outputs."""
    env = gymnasium.make("stepopsd/ALFWorld-v0", games=games)
    outputs = [[env.unwrapped.protocol.format(command, thought="plan") for command in plan] for plan in plans]
    reset_s = step_s = 0.0
    steps = 0
    for game, episode in zip(games, outputs):
        start = time.perf_counter()
        env.reset(options={"game": game})
        reset_s += time.perf_counter() - start
        start = time.perf_counter()
        for output in episode:
            env.step(output)
        step_s += time.perf_counter() - start
        steps += len(episode)
    env.close()
    return {"resets/s": len(games) / reset_s, "steps/s": steps / step_s, "step_ms": 1000 * step_s / steps}


def bench_steady_steps(games, num_envs: int, num_steps: int, vector: bool) -> float:
    """Steps/second of 'look' commands after one reset per env (a single env, or an async vector env)."""
    def make(index: int):
        return lambda: gymnasium.make("stepopsd/ALFWorld-v0", games=[games[index % len(games)]])

    look = "<think>t</think><action>look</action>"
    if vector:
        env = gymnasium.vector.AsyncVectorEnv([make(i) for i in range(num_envs)], shared_memory=False,
                                              autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
        env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(num_steps):
            env.step((look,) * num_envs)
        elapsed = time.perf_counter() - start
        env.close()
        return num_envs * num_steps / elapsed
    env = make(0)()
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(num_steps):
        env.step(look)
    elapsed = time.perf_counter() - start
    env.close()
    return num_steps / elapsed


def bench_memory(games, episodes: int) -> list[float]:
    """Resident MB after each tenth of ``episodes`` episodes (reset + 5 steps) cycling over ``games``."""
    env = gymnasium.make("stepopsd/ALFWorld-v0", games=games)
    look = "<think>t</think><action>look</action>"
    marks = []
    for episode in range(episodes):
        env.reset(options={"game_index": episode % len(games)})
        for _ in range(5):
            env.step(look)
        if (episode + 1) % max(1, episodes // 10) == 0:
            marks.append(psutil.Process().memory_info().rss / 2**20)
    env.close()
    return marks


def memory_per_env(games, count: int = 4) -> float:
    """Resident MB added per extra env (engine + its private planner library + one loaded game)."""
    envs = [gymnasium.make("stepopsd/ALFWorld-v0", games=games)]
    envs[0].reset(options={"game_index": 0})
    before = psutil.Process().memory_info().rss
    for _ in range(count):
        envs.append(gymnasium.make("stepopsd/ALFWorld-v0", games=games))
        envs[-1].reset(options={"game_index": 0})
    return (psutil.Process().memory_info().rss - before) / count / 2**20


def report(label: str, games: list[Path], vector_steps: int) -> dict:
    plans = walkthroughs(games)
    with uncached():
        plain = bench_bare(games, plans)
    bare, ours = bench_bare(games, plans), bench_ours(games, plans)
    overhead = ours["step_ms"] / bare["step_ms"] - 1
    print(f"\n== {label}: {len(games)} games, {sum(map(len, plans))} walkthrough steps")
    print(f"uncached      : {plain['resets/s']:.2f} resets/s  {plain['steps/s']:.1f} steps/s  ({plain['step_ms']:.1f} ms/step)"
          "  (textworld's own parsing and translation)")
    print(f"bare engine   : {bare['resets/s']:.2f} resets/s  {bare['steps/s']:.1f} steps/s  ({bare['step_ms']:.1f} ms/step)")
    print(f"stepopsd env  : {ours['resets/s']:.2f} resets/s  {ours['steps/s']:.1f} steps/s  ({ours['step_ms']:.1f} ms/step)")
    print(f"caches: resets {bare['resets/s'] / plain['resets/s']:.2f}x, steps {bare['steps/s'] / plain['steps/s']:.2f}x "
          "faster (every game was loaded once before in this process, as by the other envs of a rollout group)")
    print(f"wrapper step overhead: {100 * overhead:+.1f}% (goal <= +10%)")
    single = bench_steady_steps(games, 1, vector_steps, vector=False)
    double = bench_steady_steps(games, 2, vector_steps, vector=True)
    print(f"single env {single:.1f} steps/s; AsyncVectorEnv x2 {double:.1f} steps/s; speedup {double / single:.2f}x "
          f"(goal >= 1.7x)")
    return {"games": len(games), "uncached": plain, "bare": bare, "ours": ours, "wrapper_overhead": overhead,
            "single_steps_per_s": single, "async2_steps_per_s": double, "async2_speedup": double / single}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("ALFWORLD_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--real-games", type=int, default=24, help="valid_unseen games timed (every k-th)")
    parser.add_argument("--generated-per-type", type=int, default=4)
    parser.add_argument("--vector-steps", type=int, default=150, help="steps per env in the vector comparison")
    parser.add_argument("--memory-episodes", type=int, default=100, help="episodes of the memory run (1000 for the leak check)")
    parser.add_argument("--record", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}  numpy {np.__version__}  gymnasium {gymnasium.__version__}")

    generated = generated_games(args.generated_per_type, seed=0)
    figures = {"cpus": os.cpu_count(), "generated": report("generated games", generated, args.vector_steps)}
    if (Path(args.data_dir) / "json_2.1.1").is_dir():
        unseen = official_games("valid_unseen", data_dir=args.data_dir)
        real = unseen[:: max(1, len(unseen) // args.real_games)][: args.real_games]
        figures["real"] = report("real valid_unseen games", real, args.vector_steps // 3)
    else:
        print(f"\n(no official games at {args.data_dir}: real-game figures skipped)")

    per_env = memory_per_env(generated)
    print(f"\n== memory per extra env (generated game loaded): {per_env:.1f} MB")
    marks = bench_memory(generated, args.memory_episodes)
    rss = psutil.Process().memory_info().rss / 2**20
    print(f"\n== memory over {args.memory_episodes} episodes (generated games, one env): RSS MB at each tenth: "
          + " ".join(f"{mark:.0f}" for mark in marks))
    print(f"growth from first to last tenth: {marks[-1] - marks[0]:+.1f} MB (process RSS now {rss:.0f} MB)")
    if args.record is not None:
        write_record(args.record, {**figures, "memory_per_env_mb": per_env, "memory_marks_mb": marks})


if __name__ == "__main__":
    main()
