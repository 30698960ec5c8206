"""A run stopped anywhere and resumed ends as one that never stopped; a new run replaces the old.

"The same" means: equal weights, checkpoints (epoch, best AP, metrics, tensors) and logbook
records (each step, epoch and evaluation once, field by field, the epoch's loss means included;
only the timings differ).
"""
from __future__ import annotations

import os
import shutil
import signal

import pytest
import torch

import ddetr_edu.training.loop as loop
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.logbook import read_log
from ddetr_edu.training.loop import BEST, INTERRUPTED, LAST, train_loop
from ddetr_edu.training.losses import DetectionLoss

from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector, collate
from test_resume import InterruptAt

LOG = "log.jsonl"
CFG = TrainConfig(epochs=2, batch_size=2, num_workers=0, lr=1e-2, lr_backbone=1e-2, lr_drop=1,
                  device="cpu", seed=3, log_every=1, eval_every=1)


def _postprocess(outputs, sizes):
    """Every query as a detection: best class score and label, boxes scaled to pixels."""
    scores, labels = outputs["pred_logits"].sigmoid().max(-1)  # (n, q)
    return [{"scores": s, "labels": lab, "boxes": b * torch.tensor([w, h, w, h])}
            for s, lab, b, (h, w) in zip(scores, labels, outputs["pred_boxes"], sizes.tolist())]


class Score:
    """A stand-in for COCO scoring that depends on the detections; Ctrl-C on its ``stop_at``-th call."""

    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, detections):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        ap = float(torch.cat([d["scores"] for d in detections]).mean())
        return {"AP": ap, "AP50": ap / 2}, "table"


class CallbackStop:
    """An epoch callback raising KeyboardInterrupt once, after epoch ``stop_after``."""

    def __init__(self, stop_after: int):
        self.stop_after = stop_after

    def __call__(self, model, epochs_done):
        if epochs_done == self.stop_after:
            self.stop_after = None
            raise KeyboardInterrupt


def _run(run_dir, resume=None, criterion=None, score=None, callback=None, epochs=2):
    torch.manual_seed(123)
    model = TinyDetector()
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": epochs})
    result = train_loop(model, criterion or DetectionLoss(NUM_CLASSES), TinyBoxes(4), TinyBoxes(3, seed=1), collate,
                        cfg, run_dir, postprocess=_postprocess, score=score or Score(), resume=resume, verbose=False,
                        epoch_callback=callback)
    return model, result


def _log(run_dir):
    """The records without timings, every other field (the epochs' loss means too) as written."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(run_dir / LOG)]


def _assert_same_run(straight_dir, straight, other_dir, other, checkpoints=(LAST, BEST)):
    for (name, a), b in zip(straight.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    for name in checkpoints:
        a, b = (torch.load(d / name, weights_only=True) for d in (straight_dir, other_dir))
        assert (a["epoch"], a["best_ap"], a["metrics"]) == (b["epoch"], b["best_ap"], b["metrics"]), name
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    assert _log(other_dir) == _log(straight_dir)
    assert not (other_dir / INTERRUPTED).exists()  # a later checkpoint_last replaced it


class SaveStop:
    """``atomic_torch_save`` raising KeyboardInterrupt once, when it writes ``name``."""

    def __init__(self, name: str):
        self.name, self.real = name, loop.atomic_torch_save

    def __call__(self, checkpoint, path):
        if path.name == self.name:
            self.name = None
            raise KeyboardInterrupt
        return self.real(checkpoint, path)


@pytest.mark.parametrize("where", ["first evaluation", "last evaluation", "mid-epoch", "epoch callback",
                                   "saving checkpoint_best"])
def test_ctrl_c_anywhere_then_resume_ends_as_an_uninterrupted_run(tmp_path, monkeypatch, where):
    straight_dir = tmp_path / "straight"
    straight, _ = _run(straight_dir, callback=lambda model, done: None)
    run_dir = tmp_path / "stopped"
    stop = {"first evaluation": {"score": Score(stop_at=1)}, "last evaluation": {"score": Score(stop_at=2)},
            "mid-epoch": {"criterion": InterruptAt(call=4)}, "epoch callback": {"callback": CallbackStop(2)},
            "saving checkpoint_best": {}}[where]
    if where == "saving checkpoint_best":
        monkeypatch.setattr(loop, "atomic_torch_save", SaveStop(BEST))
    _, result = _run(run_dir, **stop)
    assert result.interrupted
    resumed, result = _run(run_dir, resume=run_dir / INTERRUPTED, callback=lambda model, done: None)
    assert not result.interrupted and result.epochs_completed == 2
    _assert_same_run(straight_dir, straight, run_dir, resumed)


def test_ctrl_c_in_the_last_evaluation_saves_the_trained_epoch_with_its_end_due(tmp_path):
    _, result = _run(tmp_path, score=Score(stop_at=2))
    saved = torch.load(tmp_path / INTERRUPTED, weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["epoch_end_due"]) == (2, 0, True)
    assert torch.load(tmp_path / LAST, weights_only=True)["epoch"] == 1  # not yet written for epoch 2
    assert [r["epoch"] for r in read_log(tmp_path / LOG, "eval")] == [1]


def test_resuming_an_earlier_checkpoint_does_not_repeat_log_records(tmp_path):
    """A kill after epoch 2's records, then --resume from the checkpoint of epoch 1."""
    straight_dir = tmp_path / "straight"
    straight, _ = _run(straight_dir)
    run_dir = tmp_path / "run"

    def keep_epoch_1(model, done):
        if done == 1:
            shutil.copy(run_dir / LAST, run_dir / "after_epoch_1.pth")

    _run(run_dir, callback=keep_epoch_1)
    resumed, _ = _run(run_dir, resume=run_dir / "after_epoch_1.pth")
    assert [r["epoch"] for r in read_log(run_dir / LOG, "epoch")] == [0, 1]
    _assert_same_run(straight_dir, straight, run_dir, resumed)


def test_resuming_into_another_folder_carries_the_log_over(tmp_path):
    straight, _ = _run(tmp_path / "straight")
    _run(tmp_path / "first", epochs=1)
    resumed, _ = _run(tmp_path / "second", resume=tmp_path / "first" / LAST)
    # checkpoint_best.pth stays where it was written (first/ while epoch 2 is no better)
    _assert_same_run(tmp_path / "straight", straight, tmp_path / "second", resumed, checkpoints=(LAST,))


def test_a_partial_last_log_line_is_dropped_with_a_warning_naming_the_file(tmp_path):
    straight, _ = _run(tmp_path / "straight")
    run_dir = tmp_path / "killed"
    _run(run_dir, epochs=1)
    with (run_dir / LOG).open("a") as log:
        log.write('{"kind": "train", "epoch": 1, "st')  # a process killed mid-write
    with pytest.warns(UserWarning, match=f"{run_dir / LOG}: dropped its partial last line"):
        resumed, _ = _run(run_dir, resume=run_dir / LAST)
    _assert_same_run(tmp_path / "straight", straight, run_dir, resumed)


def test_a_broken_line_inside_the_log_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / LOG).write_text('{"kind": "train"}\nnot json\n{"kind": "eval"}\n')
    with pytest.raises(ValueError, match=f"{tmp_path / LOG}, line 2: not a JSON record"):
        read_log(tmp_path / LOG)


def test_a_new_run_replaces_the_old_runs_files_and_their_leftovers(tmp_path):
    _run(tmp_path, score=Score(stop_at=2))  # leaves checkpoint_interrupted.pth
    stale = tmp_path / ".checkpoint_last.pth.999.deadbeef.tmp"  # from a process killed mid-save
    stale.write_bytes(b"half")
    assert (tmp_path / INTERRUPTED).exists()
    _run(tmp_path, epochs=1)
    assert not (tmp_path / INTERRUPTED).exists() and not stale.exists()
    assert [r["epoch"] for r in read_log(tmp_path / LOG, "epoch")] == [0]  # a fresh log
    assert torch.load(tmp_path / LAST, weights_only=True)["epoch"] == 1


class SignalAt(torch.nn.Module):
    """The loss, sending this process ``signum`` from inside its ``call``-th use (in the middle of
    a step, as a signal from outside lands)."""

    def __init__(self, call: int, signum: int):
        super().__init__()
        self.loss, self.call, self.calls, self.signum = DetectionLoss(NUM_CLASSES), call, 0, signum

    def forward(self, outputs, targets):
        self.calls += 1
        if self.calls == self.call:
            os.kill(os.getpid(), self.signum)
        return self.loss(outputs, targets)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_middle_of_a_step_stops_after_that_step_and_resumes_exactly(tmp_path, signum):
    straight_dir = tmp_path / "straight"
    straight, _ = _run(straight_dir)
    run_dir = tmp_path / "signalled"
    _, result = _run(run_dir, criterion=SignalAt(call=3, signum=signum))  # epoch 2's first step
    assert result.interrupted and result.stop_signal == signum
    saved = torch.load(run_dir / INTERRUPTED, weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 1, 3)  # the step was finished
    assert saved["epoch_sums"]["steps"] == 1
    resumed, result = _run(run_dir, resume=run_dir / INTERRUPTED)
    assert not result.interrupted
    _assert_same_run(straight_dir, straight, run_dir, resumed)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back


def test_the_epochs_loss_means_of_a_run_resumed_mid_epoch_are_those_of_the_whole_epoch(tmp_path):
    """4 steps per epoch, a log line every 3 steps: the stop falls inside a log window too."""
    def run(run_dir, resume=None, criterion=None):
        torch.manual_seed(123)
        model = TinyDetector()
        cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 2, "log_every": 3})
        train_loop(model, criterion or DetectionLoss(NUM_CLASSES), TinyBoxes(8), None, collate, cfg, run_dir,
                   resume=resume, verbose=False)
        return model

    run(tmp_path / "straight")
    run(tmp_path / "stopped", criterion=InterruptAt(call=3))
    run(tmp_path / "stopped", resume=tmp_path / "stopped" / INTERRUPTED)
    assert len(read_log(tmp_path / "straight" / LOG, "train")) == 3  # global steps 1, 3, 6
    assert _log(tmp_path / "stopped") == _log(tmp_path / "straight")
