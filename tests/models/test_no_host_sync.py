"""The detector's forward and backward never synchronise the host with the GPU, checked on the
CPU by running them on the "meta" device.

A meta tensor has a shape, a dtype and no data: ``.item()``, ``bool(t)``, ``int(t)``,
``.tolist()`` and ``.cpu()`` all raise on it. These reads are exactly the host-device
synchronisations of a GPU run, so a forward + backward on meta tensors that completes has none
of them. A second kind of sync is a copy host -> GPU with ``non_blocking=False`` (it waits for
the GPU): a dispatch mode below records every ``.to(device)`` copy from the CPU that is not
non-blocking, and ``torch.tensor`` / ``torch.as_tensor`` with a ``device=`` (which copy below the
dispatcher, blocking) are recorded by wrapping them.
(On a GPU, tests/test_gpu_models.py runs the same under ``torch.cuda.set_sync_debug_mode("error")``.)
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector


class BlockingCopies(TorchDispatchMode):
    """Records each copy from the CPU onto another device that is not non-blocking."""

    def __init__(self):
        super().__init__()
        self.blocking: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default:
            source, target = args[0], kwargs.get("device")
            if source.device.type == "cpu" and target is not None and target.type != "cpu" \
                    and not kwargs.get("non_blocking", False):
                self.blocking.append(f"{func} {tuple(source.shape)} -> {target}")
        if func is torch.ops.aten.copy_.default:
            target, source = args[0], args[1]
            if source.device.type == "cpu" and target.device.type != "cpu" and not (
                    len(args) > 2 and args[2] or kwargs.get("non_blocking", False)):
                self.blocking.append(f"{func} {tuple(source.shape)} -> {target.device}")
        return func(*args, **kwargs)


def meta_detector(**overrides):
    cfg = get_preset("shapes_cpu", small_cnn_channels=(16, 32, 32, 32), d_model=64, n_heads=2,
                     enc_layers=1, dec_layers=2, dim_feedforward=32, num_queries=5, num_classes=3,
                     enc_n_points=2, dec_n_points=2, **overrides)
    with torch.device("meta"):
        return build_detector(cfg)


@pytest.fixture
def blocking_copies(monkeypatch):
    """A ``BlockingCopies`` mode whose list also gets every torch.tensor / torch.as_tensor call
    that names a non-CPU device."""
    mode = BlockingCopies()
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            device = kwargs.get("device")
            if device is not None and torch.device(device).type != "cpu":
                mode.blocking.append(f"torch.{_name}(..., device={device})")
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, wrapper)
    return mode


def test_the_checks_see_blocking_copies(blocking_copies):
    with blocking_copies:
        torch.tensor([1, 2], device="meta")
        torch.as_tensor([1, 2], device="meta")
        torch.tensor([1, 2]).to("meta")
        torch.tensor([1, 2]).to("meta", non_blocking=True)  # the one allowed form
    assert len(blocking_copies.blocking) == 3


def test_meta_tensors_refuse_host_reads():
    t = torch.ones(2, 2, dtype=torch.long, device="meta")
    for read in (t.tolist, lambda: bool(t.sum()), lambda: int(t[0, 0]), t.cpu):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()


@pytest.mark.parametrize("backend", ["einops", "grid_sample"])
@pytest.mark.parametrize("variant", [dict(with_box_refine=True, two_stage=True),
                                     dict(with_box_refine=False, two_stage=False)],
                         ids=["refine_twostage", "plain"])
def test_forward_and_backward_read_nothing_back_and_copy_without_blocking(backend, variant, blocking_copies):
    model = meta_detector(attention_backend=backend, **variant)
    images = torch.randn(2, 3, 64, 96, device="meta")
    masks = torch.zeros(2, 64, 96, dtype=torch.bool, device="meta")
    with blocking_copies as copies:
        out = model(images, masks)
        loss = out["pred_logits"].sum() + out["pred_boxes"].sum()
        loss = loss + sum(a["pred_logits"].sum() + a["pred_boxes"].sum() for a in out["aux_outputs"])
        if "enc_outputs" in out:
            loss = loss + out["enc_outputs"]["pred_logits"].sum() + out["enc_outputs"]["pred_boxes"].sum()
        loss.backward()
    assert copies.blocking == []
    assert model.transformer.level_embed.grad is not None  # the backward ran through the model
