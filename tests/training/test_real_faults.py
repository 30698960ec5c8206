"""Faults as they happen on a real machine, with real processes: SIGTERM (alone and under
torchrun), two runs started together into one --out, a lock left by a killed run.

Each ``train`` here is ``python -m ddetr_edu`` on a tiny model and tiny shapes images; the test
waits until the run has logged a training step, then sends the signal with ``os.kill``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from ddetr_edu.training.logbook import read_log
from ddetr_edu.training.loop import INTERRUPTED, LOG
from ddetr_edu.training.run_lock import LOCK, RunFolderBusy, acquire_run_lock, busy_message

ROOT = Path(__file__).resolve().parents[2]
TINY = {"d_model": "64", "n_heads": "2", "enc_layers": "1", "dec_layers": "2", "dim_feedforward": "32",
        "small_cnn_channels": "8,8,16,16", "num_queries": "5", "num_feature_levels": "3",
        "attention_backend": "grid_sample", "batch_size": "2", "image_size": "32", "log_every": "1",
        "eval_every": "1", "lr_drop": "5"}
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
WAIT_S = 240  # a loaded 2-core machine starts a torch process slowly


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return _tiny_shapes(tmp_path_factory.mktemp("shapes"), num_train=8, num_val=2)


def _tiny_shapes(root: Path, num_train: int, num_val: int) -> Path:
    """A shapes dataset of 32 px images with one or two objects each."""
    return make_shapes_dataset(root, ShapesConfig(num_train=num_train, num_val=num_val, image_size=32, min_size=8,
                                                  max_size=16, max_objects=2), num_workers=0).root


def _train_args(data: Path, out: Path, epochs: int) -> list[str]:
    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    return ["-m", "ddetr_edu", "train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *sets]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT)


def _wait_for_a_record(out: Path, process: subprocess.Popen, kind: str) -> None:
    """Until ``log.jsonl`` holds a record of ``kind`` ("train": a step, "epoch": an epoch's training)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if (out / LOG).is_file() and f'"{kind}"' in (out / LOG).read_text():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {kind} record logged in {WAIT_S} s")


@pytest.mark.slow
def test_sigterm_saves_the_interrupted_checkpoint_says_so_and_exits_143(shapes, tmp_path):
    out = tmp_path / "run"
    process = _start(_train_args(shapes, out, epochs=200))
    _wait_for_a_record(out, process, "train")
    os.kill(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 143, (stdout, stderr)
    assert stderr == ""
    lines = [line for line in stdout.splitlines() if "SIGTERM" in line or "to continue" in line]
    # the signal lands inside a training step ("in epoch E/200 after step S") or, the epochs being tiny,
    # between an epoch's training and its evaluation ("after training epoch E/200, before ..."): both save
    assert len(lines) == 2 and lines[0].startswith("interrupted by SIGTERM ") and "/200" in lines[0], lines
    assert lines[0].endswith(f"saved {out / INTERRUPTED}")
    assert lines[1] == f"to continue: the same command with --resume {out / INTERRUPTED}"
    saved = torch.load(out / INTERRUPTED, weights_only=True)
    assert saved["step_in_epoch"] > 0 or saved["epoch"] > 0
    assert not (out / LOCK).exists()  # the lock goes with the run


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["training", "evaluation"])
def test_sigterm_to_the_whole_process_group_with_loader_workers_saves_and_exits_143(tmp_path, phase):
    # A scheduler signals every process of the job: the DataLoader workers too. Many images, so that
    # the workers are busy when it lands: 200 training images, or 400 validation images and the
    # signal just after the epoch's training (it then lands while the evaluation starts its workers
    # or receives a batch; a stop raised inside the fork that starts a worker was once swallowed,
    # and the run went on evaluating)
    train, val = (200, 2) if phase == "training" else (4, 400)
    data = _tiny_shapes(tmp_path / "data", num_train=train, num_val=val)
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, *_train_args(data, out, epochs=200), "--set", "num_workers=2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
                               start_new_session=True)
    try:
        _wait_for_a_record(out, process, "train" if phase == "training" else "epoch")
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, (stdout, stderr)
    assert stderr == ""
    assert f"saved {out / INTERRUPTED}" in stdout
    assert torch.load(out / INTERRUPTED, weights_only=True)["global_step"] > 0


@pytest.mark.slow
def test_sigterm_under_torchrun_stops_every_rank_and_rank_0_alone_saves(shapes, tmp_path):
    out = tmp_path / "run"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    process = _start(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                      *_train_args(shapes, out, epochs=200)])
    _wait_for_a_record(out, process, "train")
    start = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)  # torchrun passes it on to both ranks
    stdout, stderr = process.communicate(timeout=120)  # no hang: torchrun would SIGKILL after 30 s
    assert time.monotonic() - start < 30, stderr
    stops = [line for line in stdout.splitlines() if line.startswith("interrupted by SIGTERM")]
    assert len(stops) == 1 and stops[0].endswith(f"saved {out / INTERRUPTED}"), stdout  # rank 0 alone
    saved = torch.load(out / INTERRUPTED, weights_only=True)
    assert saved["global_step"] > 0
    assert [p.name for p in out.glob(".*.tmp")] == []


@pytest.mark.slow
def test_two_runs_started_together_into_one_out_one_is_refused_naming_the_other(shapes, tmp_path):
    # The runs are long (200 epochs), so the winner still holds the folder whenever the loser, however
    # slowly it starts on a loaded machine, looks at it; the winner is then stopped with SIGTERM.
    out = tmp_path / "run"
    processes = [_start(_train_args(shapes, out, epochs=200)) for _ in range(2)]
    deadline = time.monotonic() + WAIT_S
    while all(process.poll() is None for process in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    loser = next((i for i, process in enumerate(processes) if process.poll() is not None), None)
    if loser is None:
        for process in processes:
            process.kill()
        pytest.fail(f"neither run was refused within {WAIT_S} s")
    winner = 1 - loser
    _wait_for_a_record(out, processes[winner], "train")
    os.kill(processes[winner].pid, signal.SIGTERM)
    outputs = [process.communicate(timeout=WAIT_S) for process in processes]
    assert [processes[loser].returncode, processes[winner].returncode] == [2, 143], outputs
    refusal = outputs[loser][1]
    assert refusal.count("\n") == 1, refusal
    assert refusal.startswith(f"error: {out} is in use by another run (pid {processes[winner].pid} on "), refusal
    epochs = [r["epoch"] for r in read_log(out / LOG, "epoch")]
    assert epochs == list(range(len(epochs))), epochs  # one run's log, not two interleaved
    steps = [r["global_step"] for r in read_log(out / LOG, "train")]
    assert steps and steps == sorted(set(steps)), steps


def _hold_lock_in_a_process(folder: Path) -> subprocess.Popen:
    module = ROOT / "ddetr_edu" / "training" / "run_lock.py"  # loaded alone: no torch import, a fast start
    code = ("import importlib.util, sys, time; spec = importlib.util.spec_from_file_location('run_lock', "
            f"{str(module)!r}); run_lock = sys.modules['run_lock'] = importlib.util.module_from_spec(spec); "
            f"spec.loader.exec_module(run_lock); "
            f"lock = run_lock.acquire_run_lock({str(folder)!r}); print('locked', flush=True); time.sleep(120)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout.readline() == "locked\n"
    return process


def test_a_live_lock_is_refused_naming_its_holder_and_a_dead_ones_is_taken_over(tmp_path):
    holder = _hold_lock_in_a_process(tmp_path)
    try:
        with pytest.raises(RunFolderBusy, match=f"{tmp_path} is in use by another run \\(pid {holder.pid} on "):
            acquire_run_lock(tmp_path)
        assert f"(pid {holder.pid} on " in busy_message(tmp_path)
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, the operating system drops the flock
        holder.wait()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == holder.pid
    assert busy_message(tmp_path) is None
    with acquire_run_lock(tmp_path) as lock:
        assert lock.takeover_message.startswith(f"{tmp_path / LOCK}: took over the lock left by a run that is "
                                                f"gone (pid {holder.pid} on ")
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()
