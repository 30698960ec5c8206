"""The detector under mixed precision and under torch.compile, on the CPU.

* ``torch.autocast("cpu", dtype=torch.bfloat16)`` stands in for CUDA autocast: the dtype
  handling is the same code (the GPU check runs bf16 and fp16 on CUDA).
* ``torch.compile(model, fullgraph=True)`` fails on any graph break: a data-dependent Python
  branch, a host read, an untraceable call. ``backend="aot_eager"`` traces forward and backward
  graphs without generating code, which keeps the test fast; the inductor and CUDA-graph
  ("reduce-overhead") runs are in the GPU check.
"""
from __future__ import annotations

import pytest
import torch

import ddetr_edu.ops.dispatch as dispatch
import kernel_on_cpu  # kernels/, on the path through pyproject.toml
from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector, pad_images

torch.set_num_threads(2)

VARIANTS = {
    "plain": dict(with_box_refine=False, two_stage=False),
    "refine": dict(with_box_refine=True, two_stage=False),
    "refine_twostage": dict(with_box_refine=True, two_stage=True),
}


def tiny(backend="grid_sample", **overrides):
    cfg = get_preset("shapes_cpu", small_cnn_channels=(16, 32, 32, 32), d_model=64, n_heads=2,
                     enc_layers=1, dec_layers=2, dim_feedforward=32, num_queries=5, num_classes=3,
                     enc_n_points=2, dec_n_points=2, attention_backend=backend, **overrides)
    torch.manual_seed(0)
    return build_detector(cfg)


def batch():
    torch.manual_seed(1)
    return pad_images([torch.randn(3, 64, 96), torch.randn(3, 48, 64)])


def total(out) -> torch.Tensor:
    """A scalar that depends on every output head (a stand-in for the loss)."""
    loss = out["pred_logits"].float().sum() + out["pred_boxes"].float().sum()
    for aux in out["aux_outputs"]:
        loss = loss + aux["pred_logits"].float().sum() + aux["pred_boxes"].float().sum()
    if "enc_outputs" in out:
        loss = loss + out["enc_outputs"]["pred_logits"].float().sum()
    return loss


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_forward_backward_close_to_float32(variant):
    images, masks = batch()
    model = tiny(**VARIANTS[variant])
    with torch.no_grad():
        want = model(images, masks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, masks)
    total(out).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0.9 * len(list(model.parameters()))  # (two-stage leaves a few unused)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    logit_error = (out["pred_logits"].detach().float() - want["pred_logits"]).abs()
    box_error = (out["pred_boxes"].detach().float() - want["pred_boxes"]).abs()
    if variant == "refine_twostage":
        # The top-k proposals may swap two whose scores differ by less than the bf16 error of the
        # encoder; compare the queries whose reference box is the same in both runs.
        same = (box_error.max(-1).values < 0.05)  # (N, Q)
        assert float(same.float().mean()) >= 0.8
        logit_error, box_error = logit_error[same], box_error[same]
    # measured 2026-11-27: 0.021 (logits of scale 6) and 0.0024 (boxes)
    assert float(logit_error.max()) < 0.1 and float(box_error.max()) < 0.01


def compile_and_compare(model, images, masks):
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        got, want = compiled(images, masks), model(images, masks)
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["einops", "grid_sample"])
def test_inference_forward_compiles_without_graph_breaks(backend):
    torch._dynamo.reset()
    compile_and_compare(tiny(backend, **VARIANTS["refine_twostage"]).eval(), *batch())


@pytest.mark.skipif(not kernel_on_cpu.kernel_on_cpu_status()[0], reason="CPU build of the kernel unavailable")
def test_inference_forward_with_the_kernel_op_compiles(monkeypatch):
    """The "cuda" path: the custom op (with the kernel's code registered as its CPU
    implementation) and its fake implementation, reached through the dispatcher as on a GPU."""
    kernel_on_cpu.register_as_cpu_implementation()
    torch._dynamo.reset()
    calls = []
    monkeypatch.setattr(dispatch, "resolve_backend", lambda backend, value: calls.append(backend) or "cuda")
    compile_and_compare(tiny("cuda", **VARIANTS["refine_twostage"]).eval(), *batch())
    assert calls and set(calls) == {"cuda"}


@pytest.mark.skipif(not kernel_on_cpu.kernel_on_cpu_status()[0], reason="CPU build of the kernel unavailable")
def test_inference_forward_with_the_cpu_kernel_compiles():
    """backend="cpu" (what "auto" picks on the CPU when it builds): the op's CPU implementation,
    reached through the dispatcher, under torch.compile(fullgraph=True)."""
    torch._dynamo.reset()
    compile_and_compare(tiny("cpu", **VARIANTS["refine_twostage"]).eval(), *batch())


def test_training_forward_and_backward_compile():
    torch._dynamo.reset()
    images, masks = batch()
    model = tiny("grid_sample", **VARIANTS["refine_twostage"])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    total(compiled(images, masks)).backward()
    compiled_grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    model.zero_grad()
    total(model(images, masks)).backward()
    eager_grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    assert sum(float(g.abs().sum()) for g in eager_grads) > 0
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
