"""A run folder is safe to resume and to share: no planted pickle runs, one process at a time, no
half-written model taken for a whole one, Ctrl-C says how to resume."""

import builtins
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from algo_fixtures import make_trajectory
from model_fixtures import small_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.checkpoint import MANIFEST, latest_checkpoint
from stepopsd.run_dir import RunDir, RunFolderError, check_not_in_use, run_lock, written_whole
from stepopsd.train import train
from stepopsd.trajectory_io import load_trajectories, save_trajectories
from stepopsd.update import TrainState
from test_train import fast_config, fast_set_options

CLI = [sys.executable, "-m", "stepopsd_cli", "train", "--config", "test-fetch"]


class WritesMarker:
    """Unpickling it creates ``marker``: what a planted pickle's code could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.integration
@pytest.mark.parametrize("planted", ["custom_checkpoint_0.pkl", "optimizer.bin"])
def test_resume_refuses_a_planted_pickle_without_loading_it(small_model_dir, tmp_path, planted):
    torch.save(WritesMarker(tmp_path / "probe"), tmp_path / "probe.pkl")
    torch.load(tmp_path / "probe.pkl", weights_only=False)
    assert (tmp_path / "probe").exists(), "the payload must run when unpickled without weights_only"
    out = tmp_path / "run"
    train(fast_config(small_model_dir, **{"run.iterations": 1, "run.eval_before": False}), out)
    checkpoint = latest_checkpoint(RunDir(out))
    marker = tmp_path / "marker"
    torch.save(WritesMarker(marker), checkpoint / planted)
    sizes = json.loads((checkpoint / MANIFEST).read_text())  # listed, as an attacker who read the format would
    (checkpoint / MANIFEST).write_text(json.dumps({**sizes, planted: (checkpoint / planted).stat().st_size}))

    completed = subprocess.run(CLI + ["--out", str(out), "--iterations", "2", "--resume",
                                      *fast_set_options(small_model_dir, **{"run.eval_before": False})],
                               capture_output=True, text=True)
    assert completed.returncode != 0
    assert completed.stderr.strip() == completed.stderr.strip().splitlines()[-1]  # one line
    assert completed.stderr.startswith(f"error: refusing to resume from {checkpoint}: {planted} does not load")
    assert not marker.exists()


def test_counters_read_back_must_be_the_integers_saved():
    state = TrainState()
    state.load_state_dict({"iteration": 3, "optimizer_step": 6, "teacher_snapshot_step": 4})
    assert state == TrainState(3, 6, 4)
    for bad in ({"iteration": "3", "optimizer_step": 6, "teacher_snapshot_step": 4}, {"iteration": 3}, [1, 2, 3]):
        with pytest.raises(ValueError, match="counters"):
            state.load_state_dict(bad)


HOLD_LOCK = ("import sys, time; from stepopsd.run_dir import RunDir, run_lock\n"
             "with run_lock(RunDir(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)")


@pytest.mark.integration
def test_a_folder_in_use_is_refused_with_its_pid_and_freed_when_its_holder_dies(small_model_dir, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
        completed = subprocess.run(CLI + ["--out", str(out), *fast_set_options(small_model_dir)],
                                   capture_output=True, text=True)
        assert completed.returncode != 0
        assert completed.stderr.startswith(f"error: {out} is in use by PID {holder.pid};")
        assert len(completed.stderr.strip().splitlines()) == 1
        with pytest.raises(RunFolderError, match=f"in use by PID {holder.pid}"):
            train(fast_config(small_model_dir), out)  # the library takes the lock itself
        assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    check_not_in_use(RunDir(out))  # the kernel dropped the dead holder's lock
    summary = train(fast_config(small_model_dir, **{"run.iterations": 1, "run.eval_before": False}), out)
    assert Path(summary["final_model"]).is_dir()


@pytest.mark.integration
def test_two_train_processes_into_one_folder_one_is_refused(small_model_dir, tmp_path):
    out = tmp_path / "run"
    args = CLI + ["--out", str(out), "--iterations", "200",
                  *fast_set_options(small_model_dir, **{"run.checkpoint_every": 0, "run.eval_before": False})]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "config.toml").is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        second = subprocess.run(args + ["--resume"], capture_output=True, text=True)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode != 0
        assert second.stderr.startswith(f"error: {out} is in use by PID {first.pid};")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with run_lock(RunDir(out)):
        pass


def test_a_failed_write_leaves_the_file_or_folder_as_it_was(tmp_path):
    path = tmp_path / "iter-000001.jsonl"
    saved = [make_trajectory("go", [("think", "act", "seen")], success=True, trajectory_id=name) for name in "ab"]
    save_trajectories(saved, path)

    def cut_short():
        yield saved[0]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        save_trajectories(cut_short(), path)
    assert load_trajectories(path) == saved
    folder = tmp_path / "model"
    with written_whole(folder) as partial:
        partial.mkdir()
        (partial / "config.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt), written_whole(folder) as partial:
        partial.mkdir()
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter-000001.jsonl", "model"]  # no .tmp-* left
    assert [p.name for p in folder.iterdir()] == ["config.json"]


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))  # the tiny model's weights are larger


@pytest.mark.integration
def test_a_run_whose_disk_fills_while_writing_its_tiny_model_resumes_and_rebuilds_it(tmp_path):
    out = tmp_path / "run"
    args = CLI + ["--out", str(out), "--iterations", "1", "--set", "run.eval_before=false",
                  *fast_set_options("")]  # model.path "": the run builds its tiny model
    full = subprocess.run(args, capture_output=True, text=True, preexec_fn=_limit_file_size,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert full.returncode != 0 and "File too large" in full.stderr  # while writing the weights
    assert (out / "config.toml").is_file() and not (out / "tiny_model").exists()
    (out / ".tmp-tiny_model").mkdir()  # as a kill -9 during the write would leave it
    (out / ".tmp-tiny_model" / "config.json").write_text("{}")

    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "built tiny model" in resumed.stdout
    assert (out / "tiny_model" / "model.safetensors").is_file() and (out / "final_model" / "config.json").is_file()
    assert not (out / ".tmp-tiny_model").exists()


@pytest.mark.integration
def test_ctrl_c_prints_the_command_that_resumes_the_run(small_model_dir, tmp_path):
    out = tmp_path / "run"
    args = CLI + ["--out", str(out), "--iterations", "3", *fast_set_options(small_model_dir)]
    # a suite started in the background (nohup, &) hands its children SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the run gets the default disposition back, as in a terminal
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while latest_checkpoint(RunDir(out)) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert not (out / "final_model").exists(), "the run finished before it could be interrupted"
    assert process.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last == (f"interrupted; resume with: stepopsd train --config {out / 'config.toml'} --out {out} "
                    "--resume")
    command = shlex.split(last.split("resume with: ")[1])
    resumed = subprocess.run([sys.executable, "-m", "stepopsd_cli", *command[1:]], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from iter-" in resumed.stdout and (out / "final_model" / "config.json").is_file()
