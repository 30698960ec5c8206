"""``make demo``: synthetic shapes -> train the CPU preset -> COCO table, curves, pictures.

    python -m ddetr_edu demo --data data/shapes --out runs/demo

1. writes the shapes dataset (:data:`DEMO_SHAPES`) unless ``data`` already holds it (a folder
   holding anything else, another shapes dataset included, is refused: nothing is replaced);
2. trains the ``shapes_cpu`` model preset with the ``shapes_cpu`` training preset (continuing
   an unfinished or interrupted run in ``out``; a finished one is only re-evaluated; a run with
   other settings is refused). :func:`demo_train_config` shortens it (``--quick``, ``--epochs``);
3. evaluates on the validation split and returns the COCO metrics and table;
4. writes ``loss.png``, ``ap.png`` and ``detections.png`` (validation images, ground truth
   dashed, predictions solid) into ``out``;
5. records the sampling points of two probe validation images before training and after every
   epoch (``sampling_history.pt``) and ends with the visualizer (``ddetr_edu.viz``) on the first
   validation images: ``out/visualize/<image>_{decoder,encoder,refinement,summary}.png`` and
   ``out/visualize/sampling_evolution.gif``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ddetr_edu.config import ModelConfig, config_from_dict, config_to_dict, get_preset
from ddetr_edu.checkpoints import load_checkpoint
from ddetr_edu.checkpoints.training_state import config_changes
from ddetr_edu.data.folders import build_datasets
from ddetr_edu.data.shapes import ShapesConfig, dataset_conflict, files_not_made_by_make_shapes, make_shapes_dataset
from ddetr_edu.training.config import TrainConfig, train_preset, with_epochs
from ddetr_edu.training.fit import evaluate_model, fit
from ddetr_edu.training.loop import INTERRUPTED, LAST
from ddetr_edu.viz.curves import save_curves

# The demo's data: small images and fewer, larger objects than the data module's defaults, so
# that two CPU cores train a detector to AP >= 0.5 in minutes. 2000 distinct training images
# seen 14 times beat 1000 seen twice as often in the same number of steps (2026-11-21, the
# earlier 2-encoder-layer model: AP 0.467 and 0.483 in two runs vs 0.453); writing them takes
# about 5 s.
DEMO_SHAPES = ShapesConfig(
    seed=0,
    num_train=2000,
    num_val=100,
    image_size=96,
    min_objects=1,
    max_objects=4,
    min_size=16.0,
    max_size=64.0,
)


# `demo --quick`: the same data and model, 4 epochs instead of 21 (the last at lr x0.1).
QUICK_EPOCHS = 4


def demo_train_config(quick: bool = False, epochs: int | None = None) -> TrainConfig:
    """The ``shapes_cpu`` training preset, for ``epochs`` epochs (``quick``: :data:`QUICK_EPOCHS`;
    neither: the preset's 21); as in the preset, the last fifth of them (at least one) run at
    lr x0.1."""
    preset = train_preset("shapes_cpu")
    return with_epochs(preset, epochs if epochs is not None else QUICK_EPOCHS if quick else preset.epochs)


@dataclass
class DemoResult:
    """What the demo produced (after Ctrl-C in training: ``interrupted``, and nothing else)."""

    run_dir: Path
    metrics: dict[str, float]  # AP, AP50, AP75, AP_S, AP_M, AP_L, AR...
    table: str  # the printable COCO table
    figures: list[Path] = field(default_factory=list)  # PNG files written
    visualizations: list[Path] = field(default_factory=list)  # the visualizer's PNG / GIF files
    interrupted: bool = False  # Ctrl-C or SIGTERM during training; running the demo again continues
    stop_signal: int | None = None  # the signal that interrupted it (signal.SIGINT or SIGTERM)


def shapes_dataset_is_ready(data_dir: str | os.PathLike, config: ShapesConfig) -> bool:
    """True when ``data_dir`` holds both splits made with exactly ``config`` and all their images."""
    data_dir = Path(data_dir)
    for split, count in (("train", config.num_train), ("val", config.num_val)):
        ann_file = data_dir / f"{split}.json"
        if not ann_file.is_file():
            return False
        try:
            content = json.loads(ann_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        made_with = content.get("info", {}).get("config")
        if isinstance(made_with, dict):  # a field newer than the file: its default
            made_with = {**json.loads(json.dumps(dataclasses.asdict(ShapesConfig()))), **made_with}
        if made_with != json.loads(json.dumps(dataclasses.asdict(config))) or len(content.get("images", [])) != count:
            return False
        if not all((data_dir / "images" / split / image["file_name"]).is_file() for image in content["images"]):
            return False
    return True


def detection_figure(dataset, detections: list[dict[str, Any]], indices: list[int],
                     score_threshold: float = 0.5, columns: int = 4) -> Figure:
    """Validation images with ground truth (dashed white) and predictions above a score (solid).

    ``dataset`` is a :class:`ddetr_edu.data.coco.CocoDetection`; ``detections`` come from
    :func:`ddetr_edu.training.fit.evaluate_model` (xyxy pixels of the original image).
    """
    by_id = {d["image_id"]: d for d in detections}
    rows = -(-len(indices) // columns)
    figure = Figure(figsize=(2.6 * columns, 2.6 * rows), layout="constrained")
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:cyan", "tab:pink"]
    for slot, index in enumerate(indices):
        axes = figure.add_subplot(rows, columns, slot + 1)
        image, target = dataset.load_raw(index)
        axes.imshow(image)
        for x0, y0, x1, y1 in target["boxes"].tolist():
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white",
                                     linestyle="--", linewidth=1.2))
        found = by_id.get(target["image_id"])
        if found is not None:
            keep = found["scores"] >= score_threshold
            for box, label, score in zip(found["boxes"][keep].tolist(), found["labels"][keep].tolist(),
                                         found["scores"][keep].tolist()):
                x0, y0, x1, y1 = box
                colour = colours[label % len(colours)]
                axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
                axes.text(x0, y0, f"{dataset.class_names[label]} {score:.2f}", color="white", fontsize=6,
                          va="bottom", bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "linewidth": 0})
        axes.set_axis_off()
    figure.suptitle(f"validation detections (score >= {score_threshold}); ground truth dashed")
    return figure


def _resume_point(run_dir: Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
                  report: Callable[[str], None]) -> Path | None:
    """The checkpoint of an earlier demo run in ``run_dir`` to continue: ``checkpoint_interrupted.pth``
    (only there after Ctrl-C, newer than ``checkpoint_last.pth``) or ``checkpoint_last.pth``; None
    for a fresh run. One that cannot be read: ``report`` says why the demo starts afresh. One made
    with other configs: a ValueError naming the folder and the differences (nothing is replaced)."""
    latest = next((run_dir / name for name in (INTERRUPTED, LAST) if (run_dir / name).is_file()), None)
    if latest is None:
        return None
    try:
        checkpoint = load_checkpoint(latest)
        # through the dataclasses: a field added since the checkpoint was written gets its default
        saved_model = config_to_dict(config_from_dict(checkpoint["model_config"]))
        saved_train = TrainConfig.from_dict(checkpoint["train_config"]).to_dict()
    except ValueError as error:
        report(f"starting afresh: cannot continue from {latest}: {error}")
        return None
    changes = config_changes(saved_model, config_to_dict(model_cfg)) + config_changes(saved_train, train_cfg.to_dict())
    if changes:
        raise ValueError(f"{run_dir} holds a demo run with other settings ({', '.join(changes)}); run the demo "
                         f"as that run was started to continue it, or give it another run folder (--out)")
    return latest


def check_demo_folders(data_dir: str | os.PathLike, run_dir: str | os.PathLike, shapes: ShapesConfig,
                       model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """A ValueError, naming the folder and what it holds, when the demo would replace something:
    a dataset other than that of ``shapes`` in ``data_dir``, a run with other configs in ``run_dir``."""
    conflict = dataset_conflict(data_dir, shapes)
    if conflict is not None:
        raise ValueError(f"{conflict}; the demo would replace it: give it another data folder (--data)")
    foreign = files_not_made_by_make_shapes(data_dir)
    if foreign and not shapes_dataset_is_ready(data_dir, shapes):
        raise ValueError(f"{data_dir} holds files that make-shapes did not write ({', '.join(foreign[:4])}"
                         f"{' ...' if len(foreign) > 4 else ''}); give the demo another data folder (--data)")
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir} is a file, not a run folder")
    _resume_point(Path(run_dir), model_cfg, train_cfg, report=lambda line: None)


def run_demo(
    data_dir: str | os.PathLike = "data/shapes",
    run_dir: str | os.PathLike = "runs/demo",
    *,
    shapes: ShapesConfig = DEMO_SHAPES,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    num_pictures: int = 8,
    report: Callable[[str], None] = lambda line: None,
    num_visualized: int = 3,
) -> DemoResult:
    """Make the data, train, evaluate and draw (see the module docstring).

    A ValueError before anything is written when ``data_dir`` or ``run_dir`` holds something the
    demo would replace (:func:`check_demo_folders`).
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    model_cfg = model_cfg or get_preset("shapes_cpu")
    train_cfg = train_cfg or train_preset("shapes_cpu")
    check_demo_folders(data_dir, run_dir, shapes, model_cfg, train_cfg)
    if shapes_dataset_is_ready(data_dir, shapes):
        report(f"shapes dataset found in {data_dir}")
    else:
        report(f"writing the shapes dataset to {data_dir} ({shapes.num_train} train, {shapes.num_val} val images)")
        make_shapes_dataset(data_dir, shapes, num_workers=min(2, os.cpu_count() or 1))

    resume = _resume_point(run_dir, model_cfg, train_cfg, report)  # None: a new run (fit starts a new log)
    report(f"training {'(continuing ' + str(resume) + ')' if resume else ''} into {run_dir}")
    from ddetr_edu.viz.recording import HISTORY_FILE, SamplingRecorder

    recorder = SamplingRecorder.from_dataset(build_datasets(data_dir, train_cfg)[1], run_dir / HISTORY_FILE,
                                             keep_existing=resume is not None)
    result = fit(model_cfg, train_cfg, data_dir, run_dir, resume=resume, epoch_callback=recorder)
    if result.interrupted:  # fit said where it stopped; the demo continues from there by itself
        report(f"run the demo again (same options) to continue from {run_dir / INTERRUPTED}")
        return DemoResult(run_dir, {}, "", interrupted=True, stop_signal=result.stop_signal)
    _, val_set = build_datasets(data_dir, train_cfg)
    metrics, detections = evaluate_model(result.model, val_set, train_cfg, device=torch.device("cpu"))
    figures = save_curves(run_dir / "log.jsonl", run_dir)
    picture = detection_figure(val_set, detections, list(range(min(num_pictures, len(val_set)))),
                               score_threshold=0.3)
    picture.savefig(run_dir / "detections.png", dpi=110)
    figures.append(run_dir / "detections.png")
    (run_dir / "metrics.json").write_text(metrics.stats_json(), encoding="utf-8")  # strict JSON: NaN is null
    from ddetr_edu.viz.pipeline import visualize_dataset

    shown = list(range(min(num_visualized, len(val_set))))
    visualizations = visualize_dataset(result.model, val_set, shown, run_dir / "visualize",
                                       history=recorder.path)
    return DemoResult(run_dir, metrics.stats, metrics.table, figures, visualizations)


__all__ = ["DEMO_SHAPES", "QUICK_EPOCHS", "demo_train_config", "DemoResult", "shapes_dataset_is_ready",
           "detection_figure", "check_demo_folders", "run_demo"]
