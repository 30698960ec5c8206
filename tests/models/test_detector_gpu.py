"""The detector on a GPU: no host syncs in forward + backward, mixed precision, CUDA graphs.

Skipped without a CUDA device; ``make gpu-check`` runs it. The CPU proxies of the same
properties are tests/models/test_no_host_sync.py and tests/models/test_amp_and_compile.py.
"""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector
from ddetr_edu.ops import cuda_kernel_status

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

DEVICE = torch.device("cuda")
BACKENDS = ["grid_sample", "einops"] + (["cuda"] if cuda_kernel_status()[0] else [])


def small_detector(backend: str):
    cfg = get_preset("shapes_cpu", attention_backend=backend)
    torch.manual_seed(0)
    return build_detector(cfg).to(DEVICE)


def batch(n=2, size=96):
    torch.manual_seed(1)
    images = torch.randn(n, 3, size, size, device=DEVICE)
    masks = torch.zeros(n, size, size, dtype=torch.bool, device=DEVICE)
    masks[1, :, size - 16:] = True  # a padded image
    return images, masks


def total(out) -> torch.Tensor:
    loss = out["pred_logits"].float().sum() + out["pred_boxes"].float().sum()
    for aux in out["aux_outputs"]:
        loss = loss + aux["pred_logits"].float().sum() + aux["pred_boxes"].float().sum()
    return loss + out["enc_outputs"]["pred_logits"].float().sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_backward_never_sync(backend):
    model = small_detector(backend)
    images, masks = batch()
    total(model(images, masks)).backward()  # warm-up: cuDNN choices, the kernel build
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        total(model(images, masks)).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_forward_backward(backend, dtype):
    model = small_detector(backend)
    images, masks = batch()
    with torch.no_grad():
        want = model(images, masks)
    with torch.autocast("cuda", dtype=dtype):
        out = model(images, masks)
    total(out).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    assert float((out["pred_logits"].detach().float() - want["pred_logits"]).abs().max()) < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_inference_with_cuda_graphs(backend):
    torch._dynamo.reset()
    model = small_detector(backend).eval()
    images, masks = batch()
    compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    with torch.no_grad():
        want = model(images, masks)
        for _ in range(3):  # record, then replay the CUDA graph
            got = compiled(images, masks)
    torch.testing.assert_close(got["pred_boxes"], want["pred_boxes"], rtol=1e-3, atol=1e-3)
