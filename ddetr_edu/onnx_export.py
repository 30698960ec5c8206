"""The detector as an ONNX graph, and a check of that graph against PyTorch.

    path = export_onnx(model, "model.onnx", image_size=(96, 96))
    error = compare_with_onnxruntime(model, path, images)      # {"scores": ..., "boxes": ...}

What the graph computes, for a batch of unpadded images of one fixed size:

    images (N, 3, H, W) float32, ImageNet-normalised
      -> scores (N, Q, num_classes) = sigmoid(pred_logits)
         boxes  (N, Q, 4)           = pred_boxes, cxcywh normalised to the image

Choosing the top detections (and scaling boxes to pixels) is left to the caller: it is a few
lines of numpy, and ``ddetr_edu.models.postprocess`` shows them.

Choices, and why:

* The attention core runs with the readable gather-based backend ("einops"): it exports to
  plain Gather / Mul / ReduceSum nodes. The CUDA kernel is a custom op that ONNX does not know,
  and the GridSample node of the "grid_sample" backend is miscompiled by some TensorRT releases.
  The model's own backend setting is restored after the export.
* The graph is obtained with ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` underneath;
  it needs the ``onnxscript`` package). The older TorchScript tracer turns the level sizes into
  tensors and cannot follow the level bookkeeping.
* The image size is fixed at export time: ``torch.export`` specialises the level sizes, which
  the model reads off its feature maps as Python ints. Export once per input size.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install "ddetr-edu[export]"``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ddetr_edu.ops import MSDeformAttn

EXPORT_BACKEND = "einops"
OPSET = 18
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["scores", "boxes"]


class ScoresAndBoxes(nn.Module):
    """The detector without padding masks: images (N, 3, H, W) -> (scores (N, Q, C), boxes (N, Q, 4))."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = images.shape
        no_padding = torch.zeros(n, h, w, dtype=torch.bool, device=images.device)  # (N, H, W)
        out = self.detector(images, no_padding)
        return out["pred_logits"].sigmoid(), out["pred_boxes"]


EXTRA_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def require_export_extra() -> None:
    """ImportError naming the missing package and the extra, unless onnx, onnxscript and
    onnxruntime can all be imported."""
    for package in EXTRA_PACKAGES:
        _require(package)


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install \"ddetr-edu[export]\"") from None


def _check_size(image_size: tuple[int, int], batch_size: int) -> tuple[int, int]:
    if len(image_size) != 2 or not all(isinstance(s, int) and s >= 32 for s in image_size):
        raise ValueError(f"image_size: expected (height, width), two ints >= 32, got {image_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    return int(image_size[0]), int(image_size[1])


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int],
                batch_size: int = 1) -> Path:
    """Write ``model`` (a ``DeformableDETR``) as ONNX to ``path`` for images of ``image_size``
    (height, width) in batches of ``batch_size``; returns the path. The graph is checked with
    ``onnx.checker`` before it is returned."""
    height, width = _check_size(image_size, batch_size)
    _require("onnxscript")
    onnx = _require("onnx")
    path = Path(path)
    attention = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    backends = [m.backend for m in attention]
    was_training = model.training
    device = next(model.parameters()).device
    example = torch.zeros(batch_size, 3, height, width, device=device)
    try:
        model.eval()
        for module in attention:
            module.backend = EXPORT_BACKEND
        with torch.no_grad():
            program = torch.onnx.export(ScoresAndBoxes(model).eval(), (example,), dynamo=True, opset_version=OPSET,
                                        input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, verbose=False)
        program.save(str(path))
    finally:
        for module, backend in zip(attention, backends):
            module.backend = backend
        model.train(was_training)
    onnx.checker.check_model(str(path))
    return path


def run_onnxruntime(path: str | os.PathLike, images: Tensor) -> tuple[Tensor, Tensor]:
    """Run the exported graph on the CPU with onnxruntime: images (N, 3, H, W) -> (scores, boxes)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, boxes = session.run(OUTPUT_NAMES, {INPUT_NAMES[0]: images.detach().cpu().float().numpy()})
    return torch.from_numpy(scores), torch.from_numpy(boxes)


def compare_with_onnxruntime(model: nn.Module, path: str | os.PathLike, images: Tensor) -> dict[str, float]:
    """Largest absolute difference between PyTorch and onnxruntime on ``images`` (N, 3, H, W):
    ``{"scores": ..., "boxes": ...}``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        scores, boxes = ScoresAndBoxes(model)(images)
    model.train(was_training)
    onnx_scores, onnx_boxes = run_onnxruntime(path, images)
    return {"scores": (scores.cpu() - onnx_scores).abs().max().item(),
            "boxes": (boxes.cpu() - onnx_boxes).abs().max().item()}


__all__ = ["EXPORT_BACKEND", "EXTRA_PACKAGES", "require_export_extra", "ScoresAndBoxes", "export_onnx",
           "run_onnxruntime", "compare_with_onnxruntime"]
