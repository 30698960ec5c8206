"""From files to pictures: what ``ddetr-edu visualize`` and ``make demo`` write.

For an image ``<stem>.<ext>`` four PNG files are written into the output folder:

* ``<stem>_decoder.png``: the top detections' sampling points (:func:`plot_decoder_sampling`);
* ``<stem>_encoder.png``: the encoder sampling of the detections' centres (:func:`plot_encoder_sampling`);
* ``<stem>_refinement.png``: the reference box after each decoder layer (:func:`plot_refinement`);
* ``<stem>_summary.png``: the four views in one picture (:func:`plot_summary`).

With a sampling history (``sampling_history.pt``, see ``recording.py``) also
``sampling_evolution.gif``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from torch import nn

from ddetr_edu.viz.attention import ImageAttention, compute_attention
from ddetr_edu.viz.decoder_figures import plot_decoder_sampling
from ddetr_edu.viz.encoder_figures import plot_encoder_sampling
from ddetr_edu.viz.loading import load_detector, prepare_image
from ddetr_edu.viz.refinement_figures import plot_refinement
from ddetr_edu.viz.summary import plot_summary

FIGURE_KINDS = ("decoder", "encoder", "refinement", "summary")


@dataclass(frozen=True)
class VisualizeOptions:
    """What to draw."""

    layer: int = -1  # decoder layer, 0-based; -1 = last
    head: int | None = None  # None = all heads together
    top_k: int = 5  # detections shown
    score_threshold: float = 0.0  # only detections scoring at least this
    query_level: int = 0  # the encoder pixels are taken on this level (0 = finest)
    dpi: int = 110

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k: expected >= 1, got {self.top_k}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a probability in [0, 1], got {self.score_threshold}")
        if self.head is not None and self.head < 0:
            raise ValueError(f"head: expected None (all heads) or >= 0, got {self.head}")


def figures_for_image(image, attention: ImageAttention, options: VisualizeOptions = VisualizeOptions(),
                      class_names: Sequence[str] | None = None) -> dict[str, Figure]:
    """The four figures of one image, keyed by :data:`FIGURE_KINDS`."""
    o = options
    common = dict(top_k=o.top_k, score_threshold=o.score_threshold)
    return {
        "decoder": plot_decoder_sampling(image, attention, layer=o.layer, head=o.head,
                                         class_names=class_names, **common),
        "encoder": plot_encoder_sampling(image, attention, head=o.head, query_level=o.query_level, **common),
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


def visualize_files(checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike, options: VisualizeOptions = VisualizeOptions(),
                    device: str = "cpu", short_side: int | None = None) -> list[Path]:
    """Load ``checkpoint`` (ours or official), run it on each image file, write the PNG files."""
    if not images:
        raise ValueError("images: expected at least one image file")
    for image in images:  # fail on a bad path before the (slow) model is built
        if not Path(image).is_file():
            raise FileNotFoundError(f"image file not found: {image}")
    detector = load_detector(checkpoint, device)
    written = []
    for image_path in images:
        picture, tensor = prepare_image(image_path, detector.transforms, short_side)
        attention = compute_attention(detector.model, tensor[None])[0]
        figures = figures_for_image(picture, attention, options, detector.class_names)
        written += save_figures(figures, out_dir, Path(image_path).stem, options.dpi)
    return written


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
        written.append(save_evolution_gif(load_sampling_history(history), Path(out_dir) / "sampling_evolution.gif"))
    return written


__all__ = ["FIGURE_KINDS", "VisualizeOptions", "figures_for_image", "save_figures", "visualize_files",
           "visualize_dataset"]
