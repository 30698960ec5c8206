"""From files to pictures: what ``ddetr-edu visualize`` and ``make demo`` write.

For an image ``<stem>.<ext>`` four PNG files are written into the output folder:

* ``<stem>_decoder.png``: the detections' sampling points (:func:`plot_decoder_sampling`);
* ``<stem>_encoder.png``: the encoder sampling of the detections' centres (:func:`plot_encoder_sampling`);
* ``<stem>_refinement.png``: the reference box after each decoder layer (:func:`plot_refinement`);
* ``<stem>_summary.png``: the four views in one picture (:func:`plot_summary`).

With a sampling history (``sampling_history.pt``, see ``recording.py``) also
``sampling_evolution.gif``.

The detections are those of :func:`ddetr_edu.viz.detections.select_detections`: score at least
``score_threshold`` (default 0.3), duplicates of the same class (IoU > 0.7) dropped, at most
``top_k``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

from ddetr_edu.config import ModelConfig
from ddetr_edu.data.images import IMAGE_SUFFIXES
from ddetr_edu.paths import folder_given_for_file
from ddetr_edu.viz.attention import ImageAttention, compute_attention
from ddetr_edu.viz.decoder_figures import plot_decoder_sampling
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, DUPLICATE_IOU
from ddetr_edu.viz.encoder_figures import plot_encoder_sampling
from ddetr_edu.viz.loading import (LoadedDetector, check_short_side, load_detector, load_reference_detector,
                                   prepare_image)
from ddetr_edu.viz.refinement_figures import plot_refinement
from ddetr_edu.viz.summary import plot_summary

FIGURE_KINDS = ("decoder", "encoder", "refinement", "summary")


@dataclass(frozen=True)
class VisualizeOptions:
    """What to draw."""

    layer: int = -1  # decoder layer, 0-based; -1 = last
    head: int | None = None  # None = all heads together
    top_k: int = 5  # detections shown, at most
    score_threshold: float = DEFAULT_SCORE_THRESHOLD  # only detections scoring at least this
    duplicate_iou: float = DUPLICATE_IOU  # a detection overlapping a better one of its class more: dropped
    query_level: int = 0  # the encoder pixels are taken on this level (0 = finest)
    dpi: int = 110

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k: expected >= 1, got {self.top_k}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a probability in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou: expected an IoU in [0, 1], got {self.duplicate_iou}")
        if self.head is not None and self.head < 0:
            raise ValueError(f"head: expected None (all heads) or >= 0, got {self.head}")


def figures_for_image(image, attention: ImageAttention, options: VisualizeOptions = VisualizeOptions(),
                      class_names: Sequence[str] | None = None) -> dict[str, Figure]:
    """The four figures of one image, keyed by :data:`FIGURE_KINDS`."""
    o = options
    common = dict(top_k=o.top_k, score_threshold=o.score_threshold, duplicate_iou=o.duplicate_iou)
    return {
        "decoder": plot_decoder_sampling(image, attention, layer=o.layer, head=o.head,
                                         class_names=class_names, **common),
        "encoder": plot_encoder_sampling(image, attention, head=o.head, query_level=o.query_level,
                                         class_names=class_names, **common),
        "refinement": plot_refinement(image, attention, class_names=class_names, **common),
        "summary": plot_summary(image, attention, layer=o.layer, head=o.head, query_level=o.query_level,
                                class_names=class_names, **common),
    }


def save_figures(figures: dict[str, Figure], out_dir: str | os.PathLike, stem: str, dpi: int = 110) -> list[Path]:
    """Write ``<stem>_<kind>.png`` for every figure; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, figure in figures.items():
        path = out_dir / f"{stem}_{kind}.png"
        figure.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def check_options(options: VisualizeOptions, cfg: ModelConfig) -> None:
    """ValueError when ``options`` name a decoder layer, head or level the model of ``cfg`` lacks."""
    t = cfg.transformer
    if not -t.dec_layers <= options.layer < t.dec_layers:
        raise ValueError(f"layer: expected a decoder layer in {-t.dec_layers}..{t.dec_layers - 1} "
                         f"(-1 = last), got {options.layer}")
    if options.head is not None and not 0 <= options.head < t.n_heads:
        raise ValueError(f"head: expected None (all heads) or 0..{t.n_heads - 1}, got {options.head}")
    if not 0 <= options.query_level < t.num_feature_levels:
        raise ValueError(f"query_level: expected 0..{t.num_feature_levels - 1}, got {options.query_level}")


@dataclass
class Visualization:
    """Everything checked and read, ready to draw: the detector and each image's
    (path, original picture, model input (3, h, w))."""

    detector: LoadedDetector
    options: VisualizeOptions
    images: list[tuple[Path, Image.Image, Tensor]]


def prepare_visualization(checkpoint: str | os.PathLike | None, images: Sequence[str | os.PathLike],
                          options: VisualizeOptions = VisualizeOptions(), device: str = "cpu",
                          short_side: int | None = None) -> Visualization:
    """Check the image files, load ``checkpoint`` (ours or official; None: the shipped reference
    model), check ``options`` against the model and read the images. Every bad input is a
    ValueError or FileNotFoundError raised here, before anything is drawn."""
    if not images:
        raise ValueError("images: expected at least one image file")
    check_short_side(short_side)
    for image in images:
        folder = folder_given_for_file(image, "an image", IMAGE_SUFFIXES)
        if folder is not None:
            raise ValueError(folder)
    missing = [str(image) for image in images if not Path(image).is_file()]
    if missing:  # before the (slow) model is built
        raise FileNotFoundError(f"image file not found: {', '.join(missing)}")
    detector = load_reference_detector(device) if checkpoint is None else load_detector(checkpoint, device)
    check_options(options, detector.model.cfg)
    read = [(Path(image), *prepare_image(image, detector.transforms, short_side)) for image in images]
    return Visualization(detector, options, read)


def draw_visualization(visualization: Visualization, out_dir: str | os.PathLike) -> list[Path]:
    """Run the model on each prepared image and write its PNG files; returns the paths."""
    detector, options = visualization.detector, visualization.options
    device = next(detector.model.parameters()).device
    written = []
    for path, picture, tensor in visualization.images:
        attention = compute_attention(detector.model, tensor[None].to(device))[0]
        figures = figures_for_image(picture, attention, options, detector.class_names)
        written += save_figures(figures, out_dir, path.stem, options.dpi)
    return written


def visualize_files(checkpoint: str | os.PathLike | None, images: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike, options: VisualizeOptions = VisualizeOptions(),
                    device: str = "cpu", short_side: int | None = None) -> list[Path]:
    """Load ``checkpoint`` (ours or official; None: the reference model), run it on each image
    file, write the PNG files."""
    return draw_visualization(prepare_visualization(checkpoint, images, options, device, short_side), out_dir)


def visualize_dataset(model: nn.Module, dataset, indices: Sequence[int], out_dir: str | os.PathLike,
                      options: VisualizeOptions = VisualizeOptions(),
                      history: str | os.PathLike | None = None) -> list[Path]:
    """The figures of ``dataset`` images ``indices`` (a ``CocoDetection`` with evaluation transforms),
    named ``<file stem>_<kind>.png``; plus ``sampling_evolution.gif`` from ``history`` if it exists."""
    from ddetr_edu.viz.evolution import save_evolution_gif
    from ddetr_edu.viz.recording import load_sampling_history

    written = []
    device = next(model.parameters()).device
    for index in indices:
        picture, _ = dataset.load_raw(index)
        tensor, _ = dataset[index]
        attention = compute_attention(model, tensor[None].to(device))[0]
        stem = Path(dataset.coco.imgs[dataset.image_ids[index]]["file_name"]).stem
        figures = figures_for_image(picture, attention, options, dataset.class_names)
        written += save_figures(figures, out_dir, stem, options.dpi)
    if history is not None and Path(history).is_file():
        written.append(save_evolution_gif(load_sampling_history(history), Path(out_dir) / "sampling_evolution.gif",
                                          class_names=dataset.class_names))
    return written


__all__ = ["FIGURE_KINDS", "VisualizeOptions", "Visualization", "check_options", "draw_visualization",
           "figures_for_image", "prepare_visualization", "save_figures", "visualize_dataset", "visualize_files"]
