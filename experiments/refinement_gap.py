"""Why "+ iterative box refinement" gains far more in the miniature than in the paper, measured.

    python -m experiments.refinement_gap            # three short runs, one process each
    python -m experiments.refinement_gap --fast     # a few steps each, tiny data (seconds)

Every arm is the multi-scale deformable model of the miniature (``claims_setup``), trained
``GAP_EPOCHS`` epochs with seed 0 on the 500 training images of ``ten_x`` (validated on the main
runs' 150), one change per arm:

* ``plain``: ``deformable_multi`` (no refinement: every decoder layer samples around the same
  reference point, and that point is ``sigmoid(Linear(query_pos))``: one per query, the same
  for every image);
* ``refine``: ``deformable_multi_refine`` (layer i + 1 samples around layer i's box, with the
  offsets scaled by the box's size; one box head per layer);
* ``plain_64_queries``: ``plain`` with 64 queries instead of 16 (four times as many fixed points).

For each model, untrained and trained, on the validation images: the AP of every decoder layer's
own boxes (scored as if it were the last layer), and for every object the query the Hungarian
matcher gives it on the last layer: whether the reference point that layer sampled around lies
inside the object's box, the share of that layer's attention weight whose sampling point falls
inside the box, and the share that falls outside the image (where sampling reads zeros). Writes ``refinement_gap_<arm>.json`` per arm into ``--out`` and ``refinement_gap.md``, the
table of every arm's record found there (so arms may run in separate processes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ddetr_edu.boxes import cxcywh_to_xyxy
from ddetr_edu.data.collate import collate_detection
from ddetr_edu.data.evaluation import coco_scorer
from ddetr_edu.data.folders import build_val_dataset
from ddetr_edu.data.loader import build_dataloader
from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from ddetr_edu.demo import shapes_dataset_is_ready
from ddetr_edu.training.fit import dataset_postprocess, fit
from ddetr_edu.training.matcher import HungarianMatcher
from ddetr_edu.models import build_detector
from experiments import claims_setup as setup
from experiments.ten_x import TENX_SHAPES

GAP_EPOCHS = 2  # the refined model is 2.4x the plain one's AP after 2 epochs already (main run)
ARMS: dict[str, tuple[str, dict[str, Any]]] = {  # arm -> (configuration, model changes)
    "plain": ("deformable_multi", {}),
    "refine": ("deformable_multi_refine", {}),
    "plain_64_queries": ("deformable_multi", {"num_queries": 64}),
}


def star_outside_share(height: int, width: int, strides: tuple[int, ...], n_points: int, n_heads: int,
                       grid: int = 50) -> float:
    """The share of the initial decoder star's samples (no refinement: point reference, offsets of
    (k + 1) pixels of each level along head m's direction) that fall outside an image of
    ``height`` x ``width`` pixels, over references on a ``grid`` x ``grid`` lattice of the image."""
    centres = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    ref_y, ref_x = torch.meshgrid(centres * height, centres * width, indexing="ij")  # (G, G) pixels
    angles = 2 * math.pi * torch.arange(n_heads, dtype=torch.float64) / n_heads
    directions = torch.stack([angles.cos(), angles.sin()], -1)
    directions = directions / directions.abs().max(-1, keepdim=True).values  # (M, 2), largest coordinate 1
    reach = torch.tensor([(k + 1) * s for s in strides for k in range(n_points)], dtype=torch.float64)  # (L K,)
    dx = directions[:, None, 0] * reach  # (M, L K) pixels
    dy = directions[:, None, 1] * reach
    x = ref_x[..., None, None] + dx  # (G, G, M, L K)
    y = ref_y[..., None, None] + dy
    outside = (x < 0) | (x > width) | (y < 0) | (y > height)
    return float(outside.double().mean())


def inside(points: Tensor, boxes: Tensor) -> Tensor:
    """points (..., 2) and boxes (..., 4) cxcywh, broadcastable -> (...) bool: the point lies in the box."""
    x0, y0, x1, y1 = cxcywh_to_xyxy(boxes).unbind(-1)
    return (points[..., 0] >= x0) & (points[..., 0] <= x1) & (points[..., 1] >= y0) & (points[..., 1] <= y1)


@torch.no_grad()
def measure(model: nn.Module, val_set: Any, batch_size: int) -> dict[str, Any]:
    """Per-layer AP and, on the last layer's matched queries, where it looked (module docstring)."""
    model.eval()
    matcher, postprocess = HungarianMatcher(), dataset_postprocess(val_set.num_classes)
    loader = build_dataloader(val_set, batch_size, shuffle=False, seed=0, collate_fn=collate_detection)
    layer_detections: list[list[dict]] = []
    reference_inside, weight_inside, weight_outside = [], [], []  # one value per object
    for images, masks, targets in loader:
        out = model(images, masks, return_attention=True)
        layers = [*out.get("aux_outputs", []), {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
        layer_detections += [[] for _ in range(len(layers) - len(layer_detections))]
        sizes = torch.stack([t["orig_size"] for t in targets])  # (n, 2) (h, w)
        for i, layer in enumerate(layers):
            for target, result in zip(targets, postprocess(layer, sizes)):
                layer_detections[i].append({"image_id": int(target["image_id"]), **result})
        reference = out["attention"]["decoder_references"][-1]  # (n, Q, 2|4), the last layer's
        sampling = out["attention"]["decoder"][-1]  # locations (n, Q, M, L, K, 2), weights (n, Q, M, L, K)
        for b, (queries, objects) in enumerate(matcher(out, targets)):
            boxes = targets[b]["boxes"][objects]  # (T, 4) cxcywh
            reference_inside += inside(reference[b, queries, :2], boxes).tolist()
            points = sampling["locations"][b, queries]  # (T, M, L, K, 2); no padding: image = map
            weights = sampling["weights"][b, queries]  # (T, M, L, K); each head's weights sum to 1
            hits = inside(points, boxes[:, None, None, None, :]).float() * weights
            weight_inside += (hits.flatten(1).sum(1) / points.shape[1]).tolist()
            off = ((points < 0) | (points > 1)).any(-1).float() * weights
            weight_outside += (off.flatten(1).sum(1) / points.shape[1]).tolist()
    score = coco_scorer(val_set)
    layer_ap = [score(detections)[0] for detections in layer_detections]
    return {"layer_AP": [round(m["AP"], 4) for m in layer_ap], "layer_AP75": [round(m["AP75"], 4) for m in layer_ap],
            "objects": len(reference_inside),
            "reference_inside_box": round(sum(reference_inside) / len(reference_inside), 4),
            "attention_inside_box": round(sum(weight_inside) / len(weight_inside), 4),
            "attention_outside_image": round(sum(weight_outside) / len(weight_outside), 4)}


def train_arm(arm: str, data_dir: Path, work_dir: Path, epochs: int, max_steps: int | None,
              max_eval_images: int | None) -> dict[str, Any]:
    """Train one arm with ``fit`` and measure it; its record."""
    name, model_changes = ARMS[arm]
    cfg = dataclasses.replace(setup.model_config(name), **model_changes)
    train_cfg = setup.train_config(0, epochs, max_steps, max_eval_images)
    run_dir = work_dir / arm
    shutil.rmtree(run_dir, ignore_errors=True)
    val_set = build_val_dataset(data_dir, train_cfg)
    torch.manual_seed(train_cfg.seed)  # fit's initial weights
    at_init = measure(build_detector(cfg), val_set, train_cfg.batch_size)
    start = time.perf_counter()
    result = fit(cfg, train_cfg, data_dir, run_dir, verbose=False)
    seconds = time.perf_counter() - start
    return {"arm": arm, "configuration": name, "model_changes": model_changes, "epochs": epochs,
            "AP": round(result.metrics["AP"], 4), "seconds": round(seconds, 1), "at_init": at_init,
            **measure(result.model, val_set, train_cfg.batch_size)}


def star_geometry() -> dict[str, float]:
    """``star_outside_share`` of the miniature's 160 px images and of a COCO-sized 800 x 1200 image."""
    t = setup.model_config("deformable_multi").transformer
    strides = tuple(8 * 2 ** level for level in range(t.num_feature_levels))
    side = setup.SHAPES.image_size
    return {f"{side} x {side} (miniature)": star_outside_share(side, side, strides, t.dec_n_points, t.n_heads),
            "800 x 1200 (COCO-sized)": star_outside_share(800, 1200, strides, t.dec_n_points, t.n_heads)}


def table(records: list[dict[str, Any]]) -> str:
    """The records as a Markdown table."""
    lines = ["| arm | epochs | AP per decoder layer (1, 2, 3) | AP75 per layer | last layer's reference inside "
             "its object | its attention inside the object | its attention outside the image |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        for epochs, m in ((0, r["at_init"]), (r["epochs"], r)):
            lines.append(f"| {r['arm']} | {epochs} | {' / '.join(f'{v:.3f}' for v in m['layer_AP'])} | "
                         f"{' / '.join(f'{v:.3f}' for v in m['layer_AP75'])} | {m['reference_inside_box']:.0%} | "
                         f"{m['attention_inside_box']:.0%} | {m['attention_outside_image']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.refinement_gap", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few steps per arm on tiny data")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default experiments/results (--fast: <work>/fast)")
    parser.add_argument("--work", type=Path, default=Path("build/ten_x"), help="data (shared with ten_x) and runs")
    args = parser.parse_args(argv)
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"--arms: expected names from {', '.join(ARMS)}, got {', '.join(unknown)}")
    out = args.out or (args.work / "fast" if args.fast else Path("experiments/results"))
    torch.set_num_threads(args.threads)
    shapes: ShapesConfig = setup.FAST_SHAPES if args.fast else TENX_SHAPES
    data_dir = args.work / ("fast_data" if args.fast else "data")
    if not shapes_dataset_is_ready(data_dir, shapes):
        make_shapes_dataset(data_dir, shapes)
    fast = dict(epochs=1, max_steps=setup.FAST_STEPS, max_eval_images=shapes.num_val) if args.fast else \
        dict(epochs=GAP_EPOCHS, max_steps=None, max_eval_images=None)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m experiments.refinement_gap " + shlex.join(sys.argv[1:] if argv is None else argv)
    for arm in arms:
        record = {"command": command, "shapes": dataclasses.asdict(shapes),
                  **train_arm(arm, data_dir, args.work / "gap_runs", **fast)}
        (out / f"refinement_gap_{arm}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(record), flush=True)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("refinement_gap_*.json"))]
    records.sort(key=lambda r: list(ARMS).index(r["arm"]))
    geometry = star_geometry()
    (out / "refinement_gap.json").write_text(json.dumps({"command": command, "star_outside_share": geometry},
                                                        indent=1) + "\n", encoding="utf-8")
    (out / "refinement_gap.md").write_text(
        "# The refinement gap, measured\n\n" + table(records) + "\nShare of the untrained plain decoder's samples "
        "outside the image (references on a 50 x 50 grid, 4 heads, 4 points, strides 8-64): "
        + ", ".join(f"{k}: {v:.0%}" for k, v in geometry.items()) + "\n", encoding="utf-8")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
