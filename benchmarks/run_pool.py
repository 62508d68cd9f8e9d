"""Train planned runs of a benchmark, one process each, several at once, resumable.

A :class:`PlannedRun` is one ``train()`` into its own folder (the trainer's output goes to
``<folder>.log`` beside it). :func:`run_all` skips runs holding ``summary.json``, resumes a killed run
from its last checkpoint, and keeps the other runs' results when one fails. Used by
bench_learning.py; the records it returns are what its summaries read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

from stepopsd.config import TrainConfig


@dataclass(frozen=True)
class PlannedRun:
    arm: str  # what the run stands for in the tables (a method, a grid cell)
    seed: int
    config: TrainConfig
    folder: Path


RECORD_FILES = ("config.toml", "metrics.jsonl", "summary.json", "bench_run.json")  # what read_run and reuse read


def is_done(run: PlannedRun) -> bool:
    return (run.folder / "summary.json").is_file()


def weights_digest(model_folder: str | Path) -> str:
    """sha256 of a model folder's weight files: two starts at one path are the same start only if equal."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_folder).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def archive_run(run: PlannedRun, archive: Path) -> Path:
    """Copy a finished run's record files to ``archive/ENV/ARM/seed-S`` (small: commit them to carry a
    benchmark over to another machine); returns that folder."""
    dest = archive.joinpath(*run.folder.parts[-3:])
    dest.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        shutil.copyfile(run.folder / name, dest / name)
    return dest


def reuse_finished(runs: list[PlannedRun], source: Path) -> list[PlannedRun]:
    """Link each run not done yet to a finished run under ``source`` (another benchmark's OUT, or an
    archive, runs in ``source/ENV/ARM/seed-S``) whose saved config equals its own and whose start had the
    same weights, so it is not trained twice; returns the runs linked. Equal configs and starts mean the
    same seed, draws and settings, so the same run."""
    from stepopsd.config import load_train_config

    finished = [summary.parent for summary in sorted(source.glob("*/*/seed-*/summary.json"))]
    saved = {folder: (_comparable(load_train_config(str(folder / "config.toml"), {})), _start_digest(folder))
             for folder in finished}
    digests: dict[str, str] = {}  # start folder -> weights_digest, computed once
    linked = []
    for run in runs:
        if is_done(run) or (run.folder.exists() and any(run.folder.iterdir())):  # done, or started here
            continue
        start = run.config.model.path
        digest = digests.setdefault(start, weights_digest(start))
        config = _comparable(run.config)
        same = next((folder for folder, (saved_config, start_digest) in saved.items()
                     if saved_config == config and start_digest == digest), None)
        if same is not None:
            run.folder.parent.mkdir(parents=True, exist_ok=True)
            if run.folder.exists():
                run.folder.rmdir()
            run.folder.symlink_to(same.resolve(), target_is_directory=True)
            linked.append(run)
    return linked


def reuse_from(runs: list[PlannedRun], sources: list[Path]) -> None:
    """:func:`reuse_finished` from each source in turn, a line per run linked."""
    for source in sources:
        for run in reuse_finished(runs, source):
            print(f"{run.arm:>15} seed {run.seed}: the same run as {run.folder.resolve()}, linked", flush=True)


def _comparable(config: TrainConfig) -> TrainConfig:
    """The config but for where its start model lies and the knobs that set only how work is cut
    into forward passes (which moves results by float rounding alone, as a faster kernel would).
    The start is compared by its weights' digest, so a start rebuilt in another folder (another
    checkout, another machine) is the same start."""
    return replace(config, model=replace(config.model, path=""),
                   algorithm=replace(config.algorithm, max_rows_per_pass=1),
                   optim=replace(config.optim, micro_batch_rows=1, shared_prefix=False))


def _start_digest(folder: Path) -> str | None:
    bench = folder / "bench_run.json"
    return json.loads(bench.read_text()).get("start_sha256") if bench.is_file() else None


def run_one(run: PlannedRun) -> dict:
    """Train one (arm, seed) in this process (resuming a killed run) and return its record.

    The trainer's own output goes to ``<folder>.log`` beside the run folder (the folder itself
    must hold nothing but the run).
    """
    from stepopsd.train import train

    clock = time.perf_counter()
    started_before = run.folder.is_dir() and any(run.folder.iterdir())
    run.folder.parent.mkdir(parents=True, exist_ok=True)
    with open(run.folder.with_suffix(".log"), "a", encoding="utf-8") as log, redirect_stdout(log):
        train(run.config, run.folder, resume=started_before)
    (run.folder / "bench_run.json").write_text(json.dumps({"wall_s": time.perf_counter() - clock,
                                                           "resumed": started_before,
                                                           "start_sha256": weights_digest(run.config.model.path)}))
    return read_run(run)


def read_run(run: PlannedRun) -> dict:
    """A finished run's record: curves and results from its metrics.jsonl and summary.json."""
    from stepopsd.metrics import read_metrics

    records = read_metrics(run.folder)
    sampled = [100.0 * r["rollout/success"] for r in sorted(records, key=lambda r: r["iteration"])
               if "rollout/success" in r]
    if len(sampled) != run.config.run.iterations:
        raise ValueError(f"{run.folder} holds {len(sampled)} iterations, not {run.config.run.iterations}: "
                         "use the same --iterations as before or a new --out")
    summary = json.loads((run.folder / "summary.json").read_text())
    bench = run.folder / "bench_run.json"
    iteration_s = [sum(r[k] for k in ("time/rollout_s", "time/advantages_s", "time/update_s")) for r in records
                   if "time/rollout_s" in r]
    return {
        "arm": run.arm, "seed": run.seed, "folder": str(run.folder),
        "final": summary["success_after"]["All"],
        "sampled_success": sampled,
        "iteration_s": sum(iteration_s) / len(iteration_s),
        "wall_s": json.loads(bench.read_text())["wall_s"] if bench.is_file() else None,
    }


def _init_worker(threads: int) -> None:
    import threading

    import torch

    from stepopsd.allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    """End this worker when the benchmark that started it is gone: a killed benchmark must not
    leave runs going on, or a restarted one would resume a run folder that another process writes."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def run_all(runs: list[PlannedRun], jobs: int, threads: int, archive: Path | None = None) -> list[dict]:
    """Every run, ``jobs`` processes at once (``threads`` torch threads each); a progress line per
    finished run; the records in the order of ``runs``. With ``archive``, each finished run's records
    are copied there as soon as it ends (:func:`archive_run`)."""
    import multiprocessing

    records, failed = [], []
    for run in filter(is_done, runs):
        records.append(read_run(run))
        if archive is not None and not run.folder.is_symlink():  # a linked run is already kept where it points
            archive_run(run, archive)
        print(f"{run.arm:>15} seed {run.seed}: done already, skipped", flush=True)
    pending = [run for run in runs if not is_done(run)]
    if pending:
        # spawn: a fresh interpreter per worker (no forked OpenMP pools), threads set before any work
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(run_one, run): run for run in pending}
            for future in as_completed(futures):
                run = futures[future]
                try:
                    record = future.result()
                except Exception as error:  # one broken run must not lose the others' results
                    failed.append(f"{run.arm} seed {run.seed}: {type(error).__name__}: {error}")
                    print(f"{run.arm:>15} seed {run.seed}: FAILED ({type(error).__name__}: {error})", flush=True)
                    continue
                records.append(record)
                if archive is not None:
                    archive_run(run, archive)
                print(f"{run.arm:>15} seed {run.seed}: final greedy success {record['final']:5.1f}%, "
                      f"sampled success {record['sampled_success'][0]:.1f}% -> "
                      f"{record['sampled_success'][-1]:.1f}%, {record['wall_s']:.0f} s", flush=True)
    if failed:
        raise SystemExit("some runs failed (run the same command again to retry them):\n  " + "\n  ".join(failed))
    order = {(run.arm, run.seed): i for i, run in enumerate(runs)}
    return sorted(records, key=lambda r: order[(r["arm"], r["seed"])])
