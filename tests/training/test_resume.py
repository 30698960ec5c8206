"""Resuming gives the same weights as never stopping (CPU, num_workers=0, fixed seed)."""
from __future__ import annotations

import torch

from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.loop import INTERRUPTED, LAST, train_loop
from ddetr_edu.training.losses import DetectionLoss

from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector, collate

CFG = TrainConfig(epochs=2, batch_size=2, num_workers=0, lr=1e-2, lr_backbone=1e-2, lr_drop=1,
                  device="cpu", seed=3, log_every=1)


def _run(run_dir, epochs, resume=None, criterion=None):
    torch.manual_seed(123)  # the model's initial weights (the loop re-seeds for training)
    model = TinyDetector()
    criterion = criterion or DetectionLoss(NUM_CLASSES)
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": epochs})
    result = train_loop(model, criterion, TinyBoxes(4), None, collate, cfg, run_dir, resume=resume, verbose=False)
    return model, result


def _assert_same_weights(a, b):
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), f"parameter {name} differs"


def test_two_epochs_equal_one_plus_resumed_one(tmp_path):
    straight, result = _run(tmp_path / "straight", epochs=2)
    assert result.epochs_completed == 2
    first, _ = _run(tmp_path / "split", epochs=1)
    torch.manual_seed(123)
    untrained = TinyDetector()
    assert any(not torch.equal(p, q) for p, q in zip(untrained.parameters(), first.parameters())), "no training"
    resumed, result = _run(tmp_path / "split", epochs=2, resume=tmp_path / "split" / LAST)
    assert result.epochs_completed == 2 and not result.interrupted
    _assert_same_weights(straight, resumed)


class InterruptAt(torch.nn.Module):
    """The loss, raising KeyboardInterrupt (as Ctrl-C does) on its ``call``-th use (1-based)."""

    def __init__(self, call: int):
        super().__init__()
        self.loss, self.call, self.calls = DetectionLoss(NUM_CLASSES), call, 0

    def forward(self, outputs, targets):
        self.calls += 1
        if self.calls == self.call:
            raise KeyboardInterrupt
        return self.loss(outputs, targets)


def test_ctrl_c_saves_and_resuming_mid_epoch_is_exact(tmp_path):
    straight, _ = _run(tmp_path / "straight", epochs=2)
    run_dir = tmp_path / "interrupted"
    _, result = _run(run_dir, epochs=2, criterion=InterruptAt(call=4))  # epoch 1, second step
    assert result.interrupted and result.epochs_completed == 1
    saved = torch.load(run_dir / INTERRUPTED, weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 1, 3)
    resumed, result = _run(run_dir, epochs=2, resume=run_dir / INTERRUPTED)
    assert not result.interrupted and result.epochs_completed == 2
    _assert_same_weights(straight, resumed)
