"""The engine: NaN stops training cleanly, evaluation and the logbook, guards on bad settings."""
from __future__ import annotations

import math

import pytest
import torch

from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.engine import NonFiniteLossError, autocast_context
from ddetr_edu.training.logbook import read_log
from ddetr_edu.training.loop import BEST, INTERRUPTED, LAST, train_loop
from ddetr_edu.training.losses import DetectionLoss

from ddetr_edu.viz.curves import plot_ap_curve, plot_loss_curve, save_curves

from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector, collate

CFG = TrainConfig(epochs=3, batch_size=2, num_workers=0, lr=1e-2, lr_backbone=1e-2, device="cpu",
                  seed=0, log_every=1)


class NaNAt(torch.nn.Module):
    """The detection loss, with the "final/l1" term (and so the total) NaN on the ``call``-th use."""

    def __init__(self, call: int):
        super().__init__()
        self.loss, self.call, self.calls = DetectionLoss(NUM_CLASSES), call, 0

    def forward(self, outputs, targets):
        self.calls += 1
        losses = self.loss(outputs, targets)
        if self.calls == self.call:
            losses["final/l1"] = losses["final/l1"] * float("nan")
            losses["loss"] = losses["loss"] + losses["final/l1"]
        return losses


def _model():
    torch.manual_seed(7)
    return TinyDetector()


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "nan"
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(NonFiniteLossError) as error:  # 2 steps per epoch: call 4 = epoch 2, step 2 (from 1)
        train_loop(model, NaNAt(call=4), TinyBoxes(4), None, collate, CFG, run_dir, verbose=False)
    message = str(error.value)
    assert "epoch 2, step 2" in message and "global step 4" in message and "final/l1" in message
    assert not (run_dir / INTERRUPTED).exists()
    saved = torch.load(run_dir / LAST, weights_only=True)
    assert saved["epoch"] == 1  # written after the first epoch, not touched afterwards
    # the checkpoint holds exactly the weights of a clean one-epoch run
    clean = _model()
    train_loop(clean, DetectionLoss(NUM_CLASSES), TinyBoxes(4), None, collate,
               TrainConfig(**{**CFG.to_dict(), "epochs": 1}), tmp_path / "clean", verbose=False)
    for name, param in clean.state_dict().items():
        assert torch.equal(saved["model"][name], param), name
    assert any(not torch.equal(before[n], p) for n, p in clean.named_parameters())


def _postprocess(outputs, sizes):
    """Top-3 queries as xyxy pixel boxes (a stand-in for ddetr_edu.models.postprocess)."""
    scores, labels = outputs["pred_logits"].sigmoid().max(-1)  # (n, q)
    results = []
    for score, label, boxes, (h, w) in zip(scores, labels, outputs["pred_boxes"], sizes.tolist()):
        cx, cy, bw, bh = boxes.unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * torch.tensor([w, h, w, h])
        top = score.topk(3).indices
        results.append({"scores": score[top], "labels": label[top], "boxes": xyxy[top]})
    return results


def test_evaluation_logbook_best_checkpoint_and_curves(tmp_path):
    seen = []

    def score(detections):
        seen.append(detections)
        ap = 0.1 * len(seen)  # improves every evaluation: every one becomes the best
        return {"AP": ap, "AP50": 2 * ap, "AP75": ap, "AP_S": 0.0, "AP_M": ap, "AP_L": ap}, "table"

    cfg = TrainConfig(**{**CFG.to_dict(), "eval_every": 2})
    result = train_loop(_model(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), TinyBoxes(3, seed=1), collate, cfg,
                        tmp_path, postprocess=_postprocess, score=score, verbose=False)
    assert len(seen) == 2  # after epoch 2 (eval_every) and epoch 3 (the last)
    assert [d["image_id"] for d in seen[0]] == [1, 2, 3]
    assert seen[0][0]["boxes"].shape == (3, 4) and seen[0][0]["labels"].dtype == torch.int64
    assert result.best_ap == pytest.approx(0.2) and result.metrics["AP50"] == pytest.approx(0.4)
    assert torch.load(tmp_path / BEST, weights_only=True)["epoch"] == 3
    evals = read_log(tmp_path / "log.jsonl", "eval")
    assert [r["epoch"] for r in evals] == [2, 3]
    train = read_log(tmp_path / "log.jsonl", "train")
    assert len(train) == 6 and all("final/giou" in r and r["loss"] > 0 for r in train)
    assert len(plot_loss_curve(read_log(tmp_path / "log.jsonl")).axes[0].lines) == 1
    assert len(plot_ap_curve(read_log(tmp_path / "log.jsonl")).axes[0].lines) == 3
    written = save_curves(tmp_path / "log.jsonl", tmp_path / "curves")
    assert [p.name for p in written] == ["loss.png", "ap.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_training_lowers_the_loss(tmp_path):
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 8, "clip_max_norm": 0.0})
    train_loop(_model(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), None, collate, cfg, tmp_path, verbose=False)
    epochs = read_log(tmp_path / "log.jsonl", "epoch")
    assert epochs[-1]["train_loss"] < 0.8 * epochs[0]["train_loss"]


def test_fp16_on_cpu_is_refused_bf16_runs():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_context("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="amp must be None"):
        TrainConfig(amp="fp8")
    with autocast_context("bf16", torch.device("cpu")):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


def test_bf16_amp_training_runs_end_to_end_on_cpu(tmp_path):
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 2, "amp": "bf16"})
    train_loop(_model(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), None, collate, cfg, tmp_path, verbose=False)
    epochs = read_log(tmp_path / "log.jsonl", "epoch")
    assert len(epochs) == 2 and all(math.isfinite(e["train_loss"]) for e in epochs)
