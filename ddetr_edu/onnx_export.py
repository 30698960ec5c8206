"""The detector as an ONNX graph, and a check of that graph against PyTorch.

    path = export_onnx(model, "model.onnx")                           # any batch, any height and width
    path = export_onnx(model, "model.onnx", image_size=(96, 96))      # a fixed size and batch
    error = compare_with_onnxruntime(model, path, images)             # {"scores": ..., "boxes": ...}

What the graph computes, for a batch of unpadded images of one size:

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
  it needs the ``onnxscript`` package), opset :data:`OPSET`. The older TorchScript tracer turns
  the level sizes into tensors and cannot follow the level bookkeeping.
* By default the batch N, the height H and the width W are symbolic (``torch.export.Dim.DYNAMIC``):
  one graph for every size. The model reads its level sizes off the feature maps as Python ints
  (``ddetr_edu.ops.Levels``); traced, they are ``torch.SymInt`` expressions of H and W (e.g.
  ``(H - 1) // 8 + 1``) and every shape, gather index and reference point of the graph is computed
  from them at run time. ``torch.export`` records the smallest H and W it proved the graph for
  (for the shapes model 32, the model's own minimum: the backbone's coarsest stride);
  :func:`dynamic_input_range` reads them back. ``image_size=(H, W)`` fixes the size and the batch
  instead (a smaller graph, folded for that size).

onnx, onnxscript and onnxruntime are an optional extra: ``pip install "ddetr-edu[export]"``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
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


# The example a dynamic graph is traced with: its sizes only guide the tracing (the shapes stay
# symbolic). Batch 2 and H != W, so that neither is mistaken for the constant 1 or for each other.
DYNAMIC_EXAMPLE = (2, 3, 256, 320)


@dataclass(frozen=True)
class InputRange:
    """The image sizes a dynamic graph is proven for by ``torch.export``: H >= min_height,
    W >= min_width (any batch)."""

    min_height: int
    min_width: int


def _check_size(image_size: tuple[int, int] | None, batch_size: int) -> tuple[int, int] | None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if image_size is None:
        return None
    if len(image_size) != 2 or not all(isinstance(s, int) and s >= 32 for s in image_size):
        raise ValueError(f"image_size: expected (height, width), two ints >= 32, or None for any size, "
                         f"got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def dynamic_input_range(program) -> InputRange:
    """The smallest height and width an exported dynamic program (``torch.onnx.export``'s result,
    or a ``torch.export.ExportedProgram``) was proven for."""
    exported = getattr(program, "exported_program", program)
    placeholder = next(node for node in exported.graph.nodes if node.op == "placeholder"
                       and node.name in exported.graph_signature.user_inputs)
    lower = []
    for size in placeholder.meta["val"].shape[2:]:  # H, W
        if not isinstance(size, torch.SymInt):
            raise ValueError(f"the exported graph fixed an input size to {size}; expected symbolic sizes")
        lower.append(int(exported.range_constraints[size.node.expr].lower))
    return InputRange(*lower)


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int] | None = None,
                batch_size: int = 1) -> Path:
    """Write ``model`` (a ``DeformableDETR``) as ONNX (opset :data:`OPSET`) to ``path``; returns the path.

    ``image_size=None`` (the default): one graph for any batch, height and width (dynamic axes
    ``batch``, ``height``, ``width`` of the ``images`` input; the smallest height and width it
    is proven for are stored in the graph's metadata, :func:`read_input_range` reads them;
    ``batch_size`` is then unused). ``image_size=(H, W)``: a
    graph for that size and ``batch_size`` only. The graph is checked with ``onnx.checker``.
    """
    size = _check_size(image_size, batch_size)
    _require("onnxscript")
    onnx = _require("onnx")
    path = Path(path)
    attention = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    backends = [m.backend for m in attention]
    was_training = model.training
    device = next(model.parameters()).device
    if size is None:
        if not hasattr(torch.export.Dim, "DYNAMIC"):
            raise ValueError(f"a graph for every size needs torch >= 2.5 (torch.export.Dim.DYNAMIC), found "
                             f"{torch.__version__}; pass image_size=(height, width) for a fixed graph")
        example = torch.zeros(DYNAMIC_EXAMPLE, device=device)
        dynamic = torch.export.Dim.DYNAMIC
        options = {"dynamic_shapes": {"images": {0: dynamic, 2: dynamic, 3: dynamic}}}
    else:
        example, options = torch.zeros(batch_size, 3, *size, device=device), {}
    try:
        model.eval()
        for module in attention:
            module.backend = EXPORT_BACKEND
        with torch.no_grad():
            program = torch.onnx.export(ScoresAndBoxes(model).eval(), (example,), dynamo=True, opset_version=OPSET,
                                        input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, verbose=False,
                                        **options)
    finally:
        for module, backend in zip(attention, backends):
            module.backend = backend
        model.train(was_training)
    program.save(str(path))
    if size is None:
        proven = dynamic_input_range(program)
        graph = onnx.load(str(path))
        _name_dynamic_axes(graph.graph)
        onnx.helper.set_model_props(graph, {"min_height": str(proven.min_height), "min_width": str(proven.min_width)})
        onnx.save(graph, str(path))
    onnx.checker.check_model(str(path))
    return path


def _name_dynamic_axes(graph) -> None:
    """Name the symbolic axes of the inputs and outputs ``batch``, ``height``, ``width`` (torch
    calls them s14, s34, ...), so that a runtime's error messages and viewers read well."""
    image_dims = graph.input[0].type.tensor_type.shape.dim
    names = {image_dims[0].dim_param: "batch", image_dims[2].dim_param: "height", image_dims[3].dim_param: "width"}
    for value in list(graph.input) + list(graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def read_input_range(path: str | os.PathLike) -> InputRange | None:
    """The ``InputRange`` stored in a dynamic graph written by :func:`export_onnx`; None for a
    fixed-size graph."""
    onnx = _require("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "min_height" not in props:
        return None
    return InputRange(int(props["min_height"]), int(props["min_width"]))


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


__all__ = ["EXPORT_BACKEND", "OPSET", "EXTRA_PACKAGES", "DYNAMIC_EXAMPLE", "InputRange", "require_export_extra",
           "ScoresAndBoxes", "export_onnx", "dynamic_input_range", "read_input_range", "run_onnxruntime",
           "compare_with_onnxruntime"]
